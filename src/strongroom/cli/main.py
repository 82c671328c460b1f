"""The ``strongroom`` command: server administration and the client commands of SPEC section 8."""

from __future__ import annotations

import typer

from strongroom.cli import admin, commands

app = typer.Typer(
    name="strongroom",
    help="Strongroom: secrets for AWS workloads.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
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
