"""Each domain's SQL lives in its repository (docs/architecture.md, "The data layer"): no
other module imports the tables, builds statements or writes SQL text. A statement that
creeps into a route, a service or the CLI fails here with the file and line to move."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import strongroom

PACKAGE = Path(strongroom.__file__).parent

# The modules that may hold SQL, and why.
HOMES = {
    "roles/repository.py",
    "auth_methods/repository.py",
    "auth/token_repository.py",
    "auth/login_repository.py",
    "secrets/repository.py",
    "db/key_repository.py",
    "db/readiness.py",  # the readiness probe's one read
}
HOME_FOLDERS = (
    "audit/",  # the audit chain's statements (store, journal)
    "db/",  # tables, engine, migrations, held connections and the hot reads
)
ELSEWHERE = {
    "serving/startup.py": "SELECT 1: the start-up check that the database answers",
    "ops/backup.py": "SQLite file checks on a backup copy (PRAGMA, sqlite_master)",
}

STATEMENT_BUILDERS = {"select", "insert", "update", "delete", "text", "func"}
# SQL as this code base writes it: keywords in capitals.
SQL_TEXT = re.compile(r"^\s*(SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM|PRAGMA|LOCK TABLE)\b")


def _may_hold_sql(relative: str) -> bool:
    return relative in HOMES or relative in ELSEWHERE or relative.startswith(HOME_FOLDERS)


def _sql_in(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module is not None:
            if node.module == "strongroom.db.tables":
                found.append((node.lineno, "imports the tables"))
            elif node.module == "sqlalchemy":
                built = sorted({alias.name for alias in node.names} & STATEMENT_BUILDERS)
                if built:
                    found.append((node.lineno, f"imports sqlalchemy's {', '.join(built)}"))
        elif isinstance(node, ast.Attribute) and node.attr in ("exec_driver_sql", "cursor"):
            found.append((node.lineno, f"calls {node.attr}"))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and SQL_TEXT.match(node.value)
        ):
            found.append((node.lineno, f"holds SQL text {node.value[:40]!r}"))
    return sorted(found)


def test_sql_lives_only_in_repositories() -> None:
    misplaced = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if _may_hold_sql(relative):
            continue
        for line, what in _sql_in(ast.parse(path.read_text(encoding="utf-8"))):
            misplaced.append(f"{relative}:{line}: {what}")
    assert not misplaced, "SQL outside the repositories:\n" + "\n".join(misplaced)


def test_the_check_sees_sql() -> None:
    """The check itself: each kind of statement it looks for is found."""
    source = (
        "from sqlalchemy import select\n"
        "from strongroom.db.tables import items\n"
        "connection.exec_driver_sql('x')\n"
        "QUERY = 'SELECT 1 FROM items'\n"
    )
    assert [line for line, _ in _sql_in(ast.parse(source))] == [1, 2, 3, 4]
