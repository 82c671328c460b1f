# Strongroom developer commands. `make run` and `make test` work from a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck unit bench bench-read bench-login clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/strongroom server --dev

lint: $(STAMP)
	$(BIN)/ruff check src tests bench alembic
	$(BIN)/ruff format --check src tests bench alembic

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck unit

bench: bench-read bench-login

bench-read: $(STAMP)
	$(BIN)/python bench/read_path.py

bench-login: $(STAMP)
	$(BIN)/python bench/login.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache strongroom-data
