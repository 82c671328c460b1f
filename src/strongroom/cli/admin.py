"""Server-side commands: run the server, bootstrap, migrate, rotate keys, verify the audit chain.

These act on the database directly (configured by ``STRONGROOM_*`` variables), so they run on
the server host, not from an operator's laptop.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from strongroom.config import Settings
from strongroom.errors import ConfigurationError, ConflictError

if TYPE_CHECKING:  # the CLI imports SQLAlchemy only for the commands that use it
    from strongroom.db.engine import Database

err = Console(stderr=True)
out = Console()

DEV_DATA_DIR = Path("strongroom-data")


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def _services(settings: Settings):  # type: ignore[no-untyped-def]
    """Database, keys and audit writer for offline commands."""
    from strongroom.audit.store import seal_anchor
    from strongroom.audit.writer import AuditFileSink, AuditWriter
    from strongroom.crypto import load_master_key_provider
    from strongroom.db import migrate
    from strongroom.db.engine import Database
    from strongroom.db.keys import load_or_create_keys
    from strongroom.kit.logging import configure_logging

    # Logs (a migration's, an anchoring's) go to stderr: stdout is the command's output.
    configure_logging(settings.log_level, settings.log_format)
    database = Database.from_url(settings.database_url)
    migrate.upgrade(database)
    master = load_master_key_provider(settings)
    keys = load_or_create_keys(database, master)
    seal_anchor(database, keys.audit)
    writer = AuditWriter(
        database,
        keys.audit,
        AuditFileSink(settings.audit_file) if settings.audit_file else None,
    )
    return database, master, keys, writer


def _load_settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # pydantic's message names the variable and the problem
        raise _fail(f"invalid STRONGROOM_* configuration: {exc}") from None


def _prepare_dev_environment() -> None:
    """--dev: SQLite under ./strongroom-data and a generated master key file."""
    from strongroom.crypto import generate_master_key_file

    os.environ.setdefault(
        "STRONGROOM_DATABASE_URL", f"sqlite:///{(DEV_DATA_DIR / 'strongroom.db').resolve()}"
    )
    if not any(
        os.environ.get(name)
        for name in ("STRONGROOM_MASTER_KEY", "STRONGROOM_MASTER_KEY_FILE", "STRONGROOM_KMS_KEY_ID")
    ):
        key_file = (DEV_DATA_DIR / "master.key").resolve()
        if not key_file.exists():
            generate_master_key_file(key_file)
            err.print(
                f"[bold yellow]WARNING:[/] dev mode generated a master key at {key_file}. "
                "Anyone with this file and the database can read every secret. "
                "Never use --dev in production."
            )
        os.environ["STRONGROOM_MASTER_KEY_FILE"] = str(key_file)
    os.environ.setdefault("STRONGROOM_LOG_FORMAT", "console")


def _check_audit_journal(database: Database) -> None:
    """Fail at start, with a message, rather than in every worker: each writes a journal."""
    from strongroom.audit.journal import AuditJournal, journal_directory

    directory = journal_directory(database)
    if directory is not None:
        AuditJournal.create(directory).close(remove=True)


def server(
    dev: bool = typer.Option(False, "--dev", help="Zero set-up: SQLite and a generated key."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8300, "--port", help="Port to listen on."),
    workers: int = typer.Option(0, "--workers", help="Worker processes (0: one per core)."),
) -> None:
    """Run the Strongroom server."""
    import uvicorn

    from strongroom.kit.logging import configure_logging

    # Several processes serve (workers, login processes): /metrics must add up what each one
    # counted. Set before anything imports prometheus_client, which reads it at import.
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="strongroom-metrics-")
    if dev:
        _prepare_dev_environment()
    settings = _load_settings()
    configure_logging(settings.log_level, settings.log_format)
    try:
        database, _master, keys, writer = _services(settings)
    except ConfigurationError as exc:
        raise _fail(str(exc)) from None
    if dev:
        from strongroom.bootstrap import bootstrap, is_bootstrapped

        if not is_bootstrapped(database):
            creds = bootstrap(database, keys, writer)
            err.print(
                "[bold green]Admin credentials (shown once):[/]\n"
                f"  access ID:  {creds.access_id}\n  access key: {creds.access_key}\n"
                f"Configure the CLI: strongroom configure --profile admin "
                f"--access-id {creds.access_id} --access-type access_key --access-key …"
            )
    try:
        _check_audit_journal(database)
    except (ConfigurationError, OSError) as exc:
        raise _fail(f"audit journal: {exc}") from None
    database.dispose()
    count = workers or os.cpu_count() or 1
    err.print(f"Strongroom listening on http://{host}:{port} with {count} worker(s)")
    uvicorn.run(
        "strongroom.api.asgi:make_app",
        factory=True,
        host=host,
        port=port,
        workers=count,
        access_log=False,
        log_level="warning",
        server_header=False,
        # The app judges X-Forwarded-For itself, from STRONGROOM_TRUSTED_PROXIES only.
        # uvicorn's own handling would trust it from 127.0.0.1 and rewrite the client address
        # before the app sees it (source IP spoofing into the audit trail and bound_ips).
        proxy_headers=False,
        # Passes new login connections to the login processes (strongroom.serving).
        http="strongroom.serving.protocol:LoginRoutingProtocol",
    )


def bootstrap_command(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Create the admin role and an admin API key (shown once)."""
    from strongroom.bootstrap import bootstrap

    settings = _load_settings()
    try:
        database, _master, keys, writer = _services(settings)
        creds = bootstrap(database, keys, writer)
    except (ConfigurationError, ConflictError) as exc:
        raise _fail(getattr(exc, "message", str(exc))) from None
    if as_json:
        print(json.dumps({"access_id": creds.access_id, "access_key": creds.access_key}))
    else:
        out.print(f"Access ID:  {creds.access_id}\nAccess key: {creds.access_key}")
        err.print("Store the access key now: it is not shown again.")


db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)
keys_app = typer.Typer(
    help="Data keys: add a new one, re-encrypt values under it.", no_args_is_help=True
)
audit_app = typer.Typer(help="The audit trail: verify its keyed chain.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending schema migrations."""
    from strongroom.db import migrate
    from strongroom.db.engine import Database

    database = Database.from_url(_load_settings().database_url)
    migrate.upgrade(database)
    out.print(f"Database at revision {migrate.current_revision(database)}")


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Add a new data key; new values use it, old ones stay readable."""
    from strongroom.db.keys import rotate

    try:
        database, master, _keys, _writer = _services(_load_settings())
    except ConfigurationError as exc:
        raise _fail(str(exc)) from None
    key_id = rotate(database, master)
    out.print(
        f"Data key {key_id} is now the newest. "
        "Run `strongroom keys rewrap` to re-encrypt old values."
    )


@keys_app.command("rewrap")
def keys_rewrap() -> None:
    """Re-encrypt every stored value under the newest data key."""
    from strongroom.crypto import item_context
    from strongroom.db.keys import count_stale_values, rewrap_values

    try:
        database, _master, keys, _writer = _services(_load_settings())
    except ConfigurationError as exc:
        raise _fail(str(exc)) from None
    total = count_stale_values(database, keys.keyring)
    with Progress(
        TextColumn("re-encrypting"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=not sys.stderr.isatty() and total == 0,
    ) as progress:
        task = progress.add_task("rewrap", total=total)
        done = rewrap_values(
            database, keys.keyring, item_context, progress=lambda n: progress.advance(task, n)
        )
    out.print(f"Re-encrypted {done} value(s) under data key {keys.keyring.newest_id}.")


@audit_app.command("verify")
def audit_verify(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Check the audit chain end to end, in one consistent snapshot, changing nothing.

    Needs the master key (or KMS key): the chain's links are keyed. Events that server
    processes have journaled but not chained yet (SQLite) are counted as pending, not chained
    here; their processes chain them, or the next server start if those have stopped.
    """
    from sqlalchemy.exc import OperationalError

    from strongroom.audit.journal import journal_directory, pending_events
    from strongroom.audit.store import verify_chain
    from strongroom.crypto import load_master_key_provider
    from strongroom.db import migrate
    from strongroom.db.engine import Database
    from strongroom.db.keys import load_keys
    from strongroom.errors import ServiceUnavailableError

    settings = _load_settings()
    database = Database.from_url(settings.database_url)
    try:
        # Verify never migrates (a write): an older schema is verified by the version that
        # wrote it, or after `strongroom db upgrade`.
        if not migrate.is_up_to_date(database):
            raise _fail(
                "the database schema is not this version's: run `strongroom db upgrade` (or "
                "start the server), then verify again"
            )
        master = load_master_key_provider(settings)
        with database.snapshot() as connection:
            keys = load_keys(connection, master)
            result = verify_chain(connection, keys.audit if keys is not None else None)
            pending = pending_events(connection, journal_directory(database))
    except ConfigurationError as exc:
        raise _fail(str(exc)) from None
    except (OperationalError, ServiceUnavailableError) as exc:
        raise _fail(f"cannot read the database: {getattr(exc, 'reason', None) or exc}") from None
    finally:
        database.dispose()
    if as_json:
        print(
            json.dumps(
                {
                    "checked": result.checked,
                    "ok": result.broken is None,
                    "broken_at": result.broken.seq if result.broken else None,
                    "problem": result.broken.problem if result.broken else None,
                    "unkeyed": result.unkeyed,
                    "anchored_at": result.anchored_at,
                    "pending": pending.events,
                    "unreadable_journals": pending.unreadable,
                }
            )
        )
    elif result.broken is None:
        keyed = result.checked - result.unkeyed
        out.print(f"Audit chain intact: {result.checked} event(s) verified.")
        if result.unkeyed:
            out.print(
                f"Keyed since {result.anchored_at}: {keyed} keyed event(s), anchored on the "
                f"{result.unkeyed} unkeyed event(s) an older version wrote before it."
            )
        elif result.anchored_at is not None:
            out.print(f"Keyed since {result.anchored_at}: every event is keyed.")
    else:
        err.print(
            f"[bold red]Audit chain broken[/] at event {result.broken.seq}: "
            f"{result.broken.problem} ({result.checked} event(s) verified before it)."
        )
    if not as_json and pending.events:
        out.print(
            f"Pending: {pending.events} journaled event(s) not chained yet, in "
            f"{pending.journals} journal(s); they join the chain shortly (a stopped server's at "
            "the next start)."
        )
    if not as_json and pending.unreadable:
        err.print(
            f"[yellow]{pending.unreadable} audit journal(s) hold lines that are not events[/] "
            f"(kept aside as *.unreadable in {journal_directory(database)})."
        )
    if result.broken is not None:
        raise typer.Exit(1)
