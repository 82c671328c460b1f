# Strongroom developer commands. `make run` and `make test` work from a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-fast lint fmt typecheck unit bench bench-read bench-login bench-replicas clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[server,dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/strongroom server --dev

lint: $(STAMP)
	$(BIN)/ruff check src tests bench alembic
	$(BIN)/ruff format --check src tests bench alembic

# Fixes what ruff can fix, formats, then reports what is left to fix by hand.
fmt: $(STAMP)
	$(BIN)/ruff check --fix-only --quiet src tests bench alembic
	$(BIN)/ruff format src tests bench alembic
	$(BIN)/ruff check src tests bench alembic

typecheck: $(STAMP)
	$(BIN)/mypy

# Two pytest processes (pytest-xdist): much of the suite waits on server processes, moto,
# PostgreSQL and Chromium rather than computing, so two workers on 2 cores take about 40% less
# time than one. worksteal: each worker starts on one contiguous half of the tests (so module-
# and session-wide servers are made about once per worker) and takes tests from the other's
# remaining half when it runs out. Each worker has its own PostgreSQL databases (named after its
# pid), ports (from the kernel) and temporary folders.
unit: $(STAMP)
	$(BIN)/pytest -q -n 2 --dist worksteal

test: lint typecheck unit

# The quick loop while working: SQLite only (the PostgreSQL half of each database test is
# marked postgres), no browser, no container, no slow tests (real server processes, fuzzing).
# `make test` before pushing runs everything but the container tests.
test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not postgres and not browser and not container and not slow"

bench: bench-read bench-login bench-replicas

bench-read: $(STAMP)
	$(BIN)/python bench/read_path.py

bench-login: $(STAMP)
	$(BIN)/python bench/login.py

bench-replicas: $(STAMP)
	$(BIN)/python bench/replicas.py
	$(BIN)/python bench/replicas.py --delay-ms 1

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache strongroom-data

.PHONY: test-container lock lock-upgrade

# Builds the server image from the Dockerfile and runs it (tests/container/test_image.py): needs
# root, podman, buildah and debootstrap (Debian's), and PostgreSQL on 127.0.0.1.
test-container: $(STAMP)
	$(BIN)/pytest -q -m container tests/container

# requirements/*.lock from pyproject.toml, with hashes: the image installs exactly these.
# `lock` keeps the pins it can and adds what pyproject.toml now asks for; `lock-upgrade` moves
# every pin to the newest release allowed.
UV_COMPILE := $(BIN)/uv pip compile --quiet --generate-hashes --universal --python-version 3.11
lock: $(STAMP)
	$(UV_COMPILE) $(UPGRADE) --extra server pyproject.toml -o requirements/server.lock
	$(UV_COMPILE) $(UPGRADE) requirements/build.in -o requirements/build.lock

lock-upgrade:
	$(MAKE) lock UPGRADE=--upgrade
