"""The ``strongroom`` command: server administration and the client commands of SPEC section 8.

The client commands need only the plain install; the server commands (``server``,
``bootstrap``, ``db``, ``keys``, ``audit``) need ``strongroom[server]`` and say so without it.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Annotated, Any

import typer
import typer.core

from strongroom import __version__
from strongroom.cli import admin, commands

# typer shows a flag's type as "<bool>" beside it; a flag takes no value, so show none. The
# method is typer's (bounded in pyproject.toml; tests/test_dependency_contracts.py names it when
# it changes). Looked up, not assumed: were it renamed, help would only show "<bool>" again.
_display_type = getattr(typer.core.TyperOption, "display_type_rich", None)


def _display_type_of_value(self: typer.core.TyperOption, ctx: Any) -> str | None:
    if self.is_flag or _display_type is None:
        return None
    result: str | None = _display_type(self, ctx)
    return result


if _display_type is not None:
    typer.core.TyperOption.display_type_rich = _display_type_of_value  # type: ignore[method-assign]

app = typer.Typer(
    name="strongroom",
    help="Strongroom: secrets for AWS workloads.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(wanted: bool) -> None:
    if wanted:
        print(f"strongroom {__version__}")
        raise typer.Exit()


SERVER_COMMANDS = frozenset({"server", "bootstrap", "db", "keys", "audit"})
SERVER_MODULES = ("fastapi", "uvicorn", "sqlalchemy", "alembic", "pydantic_settings", "psycopg")


def require_server_extra() -> None:
    """Exit 1 with what to install when the server stack is missing (a client-only install)."""
    missing = [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        sys.stderr.write(
            f"error: this is a server command; the server stack is not installed ({missing[0]} "
            "is missing)\nhint: pip install 'strongroom[server]'\n"
        )
        raise typer.Exit(1)


@app.callback()
def main(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Strongroom: secrets for AWS workloads."""
    if ctx.invoked_subcommand in SERVER_COMMANDS:
        require_server_extra()


SERVER_PANEL = "Server administration (run on the server host)"
app.command("server", rich_help_panel=SERVER_PANEL)(admin.server)
app.command("bootstrap", rich_help_panel=SERVER_PANEL)(admin.bootstrap_command)
app.command("healthcheck", rich_help_panel=SERVER_PANEL)(admin.healthcheck)
app.command("backup", rich_help_panel=SERVER_PANEL)(admin.backup_command)
app.command("restore", rich_help_panel=SERVER_PANEL)(admin.restore_command)
app.add_typer(admin.db_app, name="db", rich_help_panel=SERVER_PANEL)
app.add_typer(admin.keys_app, name="keys", rich_help_panel=SERVER_PANEL)
app.add_typer(admin.audit_app, name="audit", rich_help_panel=SERVER_PANEL)
commands.register(app)


def run() -> None:
    app()
