"""Server-side commands: run the server, bootstrap, migrate, rotate keys, verify the audit chain.

These act on the database directly (configured by ``STRONGROOM_*`` variables), so they run on
the server host, not from an operator's laptop.
"""

from __future__ import annotations

import atexit
import ipaddress
import json
import os
import ssl
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from strongroom.errors import ConfigurationError, ConflictError

if TYPE_CHECKING:  # the server stack is imported only by the commands that use it
    from strongroom.config import Settings
    from strongroom.db.engine import Database
    from strongroom.db.keys import Keys
    from strongroom.serving.supervisor import Supervisor

err = Console(stderr=True)
out = Console()

DEV_DATA_DIR = Path("strongroom-data")


def _fail(message: str, code: int = 1) -> typer.Exit:
    # One line whatever the terminal's width: scripts and log collectors read it whole.
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)
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
    # The command's audit chain is closed when it ends (audit/store.py): its events are then
    # protected like those of any stopped server. Nothing is written if it appended nothing.
    atexit.register(writer.close_chains)
    return database, master, keys, writer


def _load_settings() -> Settings:
    from strongroom.config import Settings

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


def _check_sts_settings(settings: Settings) -> None:
    """Refuse a bad STRONGROOM_STS_CONNECT_TO at start (ConfigurationError), not at a login."""
    from strongroom.auth.aws_iam.endpoint import parse_connect_to

    parse_connect_to(settings.sts_connect_to)


def _check_audit_journal(database: Database) -> None:
    """Fail at start, with a message, rather than in every worker: each writes a journal."""
    from strongroom.audit.journal import AuditJournal, journal_directory

    directory = journal_directory(database)
    if directory is not None:
        AuditJournal.create(directory).close(remove=True)


def server(
    dev: bool = typer.Option(False, "--dev", help="Zero set-up: SQLite and a generated key."),
    host: str | None = typer.Option(
        None, "--host", help="Address to listen on [default: STRONGROOM_HOST, else 127.0.0.1]."
    ),
    port: int | None = typer.Option(
        None, "--port", help="Port to listen on [default: STRONGROOM_PORT, else 8300]."
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        min=1,
        help="Worker processes [default: STRONGROOM_WORKERS, else the CPUs the container or "
        "machine allows, at most 4].",
    ),
) -> None:
    """Run the Strongroom server."""
    from strongroom.serving.startup import StartupError, one_line

    # Several processes serve (workers, login processes): /metrics must add up what each one
    # counted. Set before anything imports prometheus_client, which reads it at import.
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="strongroom-metrics-")
    if dev:
        _prepare_dev_environment()
    # Every start-up problem is one line and exit 1 (SPEC section 1), never a traceback.
    try:
        supervisor = _prepare_server(dev, host, port, workers)
    except StartupError as exc:
        raise _fail(str(exc)) from None
    except ConfigurationError as exc:
        raise _fail(one_line(str(exc))) from None
    except Exception as exc:
        raise _fail(f"start-up failed: {one_line(repr(exc))}") from None
    raise typer.Exit(supervisor.run())


def _prepare_server(
    dev: bool, host: str | None, port: int | None, workers: int | None
) -> Supervisor:
    """Check and prepare everything the workers need; the supervisor that will fork them."""
    from strongroom.audit.store import seal_anchor
    from strongroom.crypto import load_master_key_provider
    from strongroom.db import migrate
    from strongroom.db.engine import Database
    from strongroom.db.keys import load_or_create_keys
    from strongroom.kit.logging import configure_logging
    from strongroom.serving import startup
    from strongroom.serving.handoff import LoginPool
    from strongroom.serving.supervisor import Supervisor, log, preload
    from strongroom.serving.tls import server_context

    settings = startup.load_settings()
    configure_logging(settings.log_level, settings.log_format)
    _check_sts_settings(settings)
    startup.warn_unknown_variables(
        os.environ, lambda line: log.warning("unknown_setting", message=line)
    )
    tls = server_context(settings.tls_cert_file, settings.tls_key_file)
    startup.check_data_folder(settings.database_url)
    startup.check_audit_file(settings.audit_file)
    startup.wait_for_database(settings.database_url, settings.db_start_wait_seconds)
    master = load_master_key_provider(settings)
    database = Database.from_url(settings.database_url)
    try:
        # Under the migration lock, so that replicas starting together on one new database
        # migrate and create its data keys one after the other.
        with migrate.migration_lock(database):
            if not migrate.is_up_to_date(database):
                migrate.upgrade(database, lock=False)
            keys = load_or_create_keys(database, master)
            # The keyed chain's anchor, sealed before any child appends (audit/chain.py): the
            # workers then only read it, and start even when nothing can be written.
            seal_anchor(database, keys.audit)
        if dev:
            _bootstrap_dev(
                database, settings, keys, f"http://{host or settings.host}:{port or settings.port}"
            )
        try:
            _check_audit_journal(database)
        except (ConfigurationError, OSError) as exc:
            raise startup.StartupError(f"audit journal: {exc}") from None
    finally:
        database.dispose()  # nothing open crosses the fork
    host = host or settings.host
    port = port or settings.port
    count = workers or settings.worker_count
    logins = settings.login_process_count(count)
    if tls is not None and settings.login_processes:
        log.warning(
            "login_processes_unused",
            message="under TLS the workers serve logins themselves: no login process starts "
            "(serving/placement.py)",
        )
    listener = startup.listen(host, port)
    preload()
    scheme = "https" if tls is not None else "http"
    log.info(
        "server_listening",
        url=f"{scheme}://{host}:{port}",
        workers=count,
        login_processes=logins,
        database=startup.database_label(settings.database_url),
        message=f"Strongroom listening on {scheme}://{host}:{port} with {count} worker(s) and "
        f"{logins} login process(es)",
    )
    return Supervisor(settings, listener, count, LoginPool(logins) if logins else None, tls=tls)


def _bootstrap_dev(database: Database, settings: Settings, keys: Keys, url: str) -> None:
    from strongroom.audit.writer import AuditFileSink, AuditWriter
    from strongroom.bootstrap import bootstrap, is_bootstrapped

    if is_bootstrapped(database):
        return
    sink = AuditFileSink(settings.audit_file) if settings.audit_file else None
    writer = AuditWriter(database, keys.audit, sink)
    try:
        creds = bootstrap(database, keys, writer)
    finally:
        writer.close_chains()  # the workers append to chains of their own
        if sink is not None:
            sink.close()  # the workers open their own: no descriptor crosses the fork
    # Plain writes: a terminal-width wrap must not split the command in two.
    sys.stderr.write(
        "Admin credentials (shown once):\n"
        f"  access ID:  {creds.access_id}\n  access key: {creds.access_key}\n"
        "Configure the CLI (in this checkout: .venv/bin/strongroom); it asks for the key:\n"
        f"  strongroom configure --profile default --access-id {creds.access_id} "
        "--access-type access_key\n"
        f"The console: {url}/ui/ (sign in with the same two values)\n"
    )


def bootstrap_command(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    create_master_key: bool = typer.Option(
        False,
        "--create-master-key",
        help="First start only: create STRONGROOM_MASTER_KEY_FILE (mode 0600) if it does not "
        "exist and no master key has wrapped data keys in the database yet.",
    ),
    recover: bool = typer.Option(
        False,
        "--recover",
        help="Every admin key is lost: make a new admin API key (needs the master key).",
    ),
) -> None:
    """Migrate the database, then create the admin role and an admin API key (shown once).

    Idempotent: on a database that has its admin already, it says so, changes nothing and
    exits 0 (a container's one-shot set-up runs it on every start). With --recover, on a
    database that has its admin: a new admin API key, audited, for when every other is lost.
    """
    from strongroom.bootstrap import bootstrap, is_bootstrapped

    if recover:
        if create_master_key:
            raise _fail("--recover needs the master key the database has: not a new one", 2)
        _recover_admin(as_json)
        return
    settings = _load_settings()
    try:
        if create_master_key:
            _create_master_key_file(settings)
        database, _master, keys, writer = _services(settings)
        creds = None if is_bootstrapped(database) else bootstrap(database, keys, writer)
    except ConflictError:  # another bootstrap won the race: the admin exists now
        creds = None
    except ConfigurationError as exc:
        raise _fail(str(exc)) from None
    if creds is None:
        message = (
            "Already bootstrapped: the admin role exists; nothing changed. "
            "(Create more admin keys with an admin key: strongroom create-auth-method-api-key.)"
        )
        if as_json:
            print(json.dumps({"already_bootstrapped": True, "message": message}))
        else:
            err.print(message)
        return
    if as_json:
        print(json.dumps({"access_id": creds.access_id, "access_key": creds.access_key}))
    else:
        out.print(f"Access ID:  {creds.access_id}\nAccess key: {creds.access_key}")
        err.print("Store the access key now: it is not shown again.")


def _recover_admin(as_json: bool) -> None:
    """``bootstrap --recover``: a new admin API key, printed once (strongroom.bootstrap)."""
    from strongroom.bootstrap import NotBootstrappedError, recover

    try:
        database, _master, keys, writer = _services(_load_settings())
        recovered = recover(database, keys, writer)
    except ConfigurationError as exc:
        # No master key, or not the one this database's data keys are wrapped under: nobody
        # without it may mint an admin.
        raise _fail(f"cannot recover the admin: {exc}") from None
    except NotBootstrappedError as exc:
        raise _fail(str(exc)) from None
    creds = recovered.credentials
    others = [{"name": n, "access_id": a} for n, a in recovered.other_admin_methods]
    if as_json:
        print(
            json.dumps(
                {
                    "access_id": creds.access_id,
                    "access_key": creds.access_key,
                    "auth_method": creds.auth_method,
                    "role_recreated": recovered.role_recreated,
                    "rules_restored": recovered.rules_restored,
                    "other_admin_auth_methods": others,
                }
            )
        )
        return
    out.print(f"Access ID:  {creds.access_id}\nAccess key: {creds.access_key}", highlight=False)
    err.print(
        f"New admin auth method {creds.auth_method}. Store the access key now: it is not shown "
        "again.",
        highlight=False,
    )
    if recovered.role_recreated:
        err.print("The admin role was missing: it was created again.", highlight=False)
    if recovered.rules_restored:
        err.print(
            "The admin role's rules were changed: they are back to every capability on /*.",
            highlight=False,
        )
    for other in others:
        err.print(
            f"Still tied to the admin role: {other['name']} ({other['access_id']}). If its key "
            f"is lost, delete it: strongroom delete-auth-method --name {other['name']}",
            highlight=False,
            soft_wrap=True,
        )


def _create_master_key_file(settings: Settings) -> None:
    """Create the master key file that STRONGROOM_MASTER_KEY_FILE names, if it is missing.

    Refuses (ConfigurationError) when the database already holds data keys: they are wrapped
    by the key that used to be there, and a new one would make every stored value unreadable
    (restore the lost file instead).
    """
    from strongroom.crypto import generate_master_key_file
    from strongroom.db import migrate
    from strongroom.db.engine import Database
    from strongroom.db.keys import has_data_keys

    path = settings.master_key_file
    if path is None:
        raise ConfigurationError("--create-master-key needs STRONGROOM_MASTER_KEY_FILE: where to")
    if path.exists():
        return
    database = Database.from_url(settings.database_url)
    try:
        migrate.upgrade(database)
        if has_data_keys(database):
            raise ConfigurationError(
                f"the master key file {path} does not exist, but this database already holds "
                "data keys wrapped by a master key: restore that key file (a new key would "
                "leave every stored value unreadable)"
            )
    finally:
        database.dispose()
    try:
        generate_master_key_file(path)
    except FileExistsError:  # created meanwhile by a concurrent run: use that one
        return
    err.print(
        f"Created the master key file {path} (mode 0600). Back it up now: without it nobody "
        "can read what this database stores."
    )


def _local_address(listening_on: str) -> str:
    """Where to reach a server listening on ``listening_on``: loopback for "every address"."""
    try:
        ip = ipaddress.ip_address(listening_on)
    except ValueError:
        return listening_on or "127.0.0.1"  # a host name
    if ip.is_unspecified:
        return "::1" if ip.version == 6 else "127.0.0.1"
    return listening_on


def _probe_tls() -> ssl.SSLContext:
    """TLS for the health probe of this host's own server: the certificate names the service
    (not the loopback address the probe connects to), and the probe sends nothing secret and
    believes nothing but a status code, so it is not verified."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def healthcheck(
    host: str | None = typer.Option(
        None, "--host", help="The server's address [default: STRONGROOM_HOST, else 127.0.0.1]."
    ),
    port: int | None = typer.Option(
        None, "--port", help="The server's port [default: STRONGROOM_PORT, else 8300]."
    ),
    timeout: float = typer.Option(3.0, "--timeout", min=0.1, help="Seconds to wait."),
) -> None:
    """Exit 0 if the local server answers GET /v1/sys/health, else 1 (a container's HEALTHCHECK).

    Over HTTPS when the server serves it (STRONGROOM_TLS_CERT_FILE is set).
    """
    import http.client

    settings = _load_settings()
    address = _local_address(host or settings.host)
    port = port or settings.port
    connection = (
        http.client.HTTPSConnection(address, port, timeout=timeout, context=_probe_tls())
        if settings.tls_cert_file is not None
        else http.client.HTTPConnection(address, port, timeout=timeout)
    )
    try:
        connection.request("GET", "/v1/sys/health")
        status = connection.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        raise _fail(f"no answer from {address} port {port}: {exc}") from None
    finally:
        connection.close()
    if status != 200:
        raise _fail(f"{address} port {port} answered /v1/sys/health with {status}")


db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)
keys_app = typer.Typer(
    help="Data keys: add a new one, re-encrypt values under it, change the master key.",
    no_args_is_help=True,
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


@keys_app.command("change-master")
def keys_change_master(
    new_master_key_file: Path | None = typer.Option(
        None,
        "--new-master-key-file",
        help="A file holding the new key (base64 of 32 bytes, mode 0600).",
    ),
    new_master_key_env: str | None = typer.Option(
        None,
        "--new-master-key-env",
        metavar="VARIABLE",
        help="The name of an environment variable holding the new key (base64 of 32 bytes).",
    ),
    new_kms_key_id: str | None = typer.Option(
        None, "--new-kms-key-id", help="An AWS KMS key (id, alias or ARN) as the new master key."
    ),
    new_kms_region: str | None = typer.Option(
        None, "--new-kms-region", help="Its region [default: STRONGROOM_KMS_REGION]."
    ),
    new_kms_endpoint_url: str | None = typer.Option(
        None, "--new-kms-endpoint-url", help="Its endpoint [default: STRONGROOM_KMS_ENDPOINT_URL]."
    ),
) -> None:
    """Re-wrap the data keys under a new master key (the current one: STRONGROOM_MASTER_KEY*).

    Running servers keep working; every server started afterwards needs the new key.
    """
    from strongroom.ops.master_key import change_master, new_master_key

    settings = _load_settings()
    try:
        new = new_master_key(
            key_file=new_master_key_file,
            key_env=new_master_key_env,
            kms_key_id=new_kms_key_id,
            kms_region=new_kms_region or settings.kms_region,
            kms_endpoint_url=new_kms_endpoint_url or settings.kms_endpoint_url,
        )
        database, master, _keys, writer = _services(settings)
        count = change_master(database, writer, master, new.provider)
    except ConfigurationError as exc:
        raise _fail(str(exc)) from None
    out.print(
        f"Re-wrapped {count} data key(s) under the new master key ({new.provider.describe()}).",
        highlight=False,
    )
    err.print(
        "Running servers keep working: they hold the data keys since they started. Before any "
        f"server or server command starts again, give it {new.setting} in place of the old "
        "master key setting: the old key no longer opens this database. Keep the old key only "
        "as long as you keep backups made before now (they are still wrapped under it).",
        highlight=False,
        soft_wrap=True,
    )


@contextmanager
def _copy_progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr (a terminal only) for a copy of pages; yields its update."""
    with Progress(
        TextColumn(label),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=not err.is_terminal,
    ) as progress:
        task = progress.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


def backup_command(
    target: Path = typer.Option(
        ..., "--to", metavar="FILE", help="The backup file to write (created 0600)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace FILE if it exists."),
) -> None:
    """Copy the SQLite store to FILE, consistently, while servers run (PostgreSQL: pg_dump).

    The backup holds the data keys wrapped by the master key, never the master key itself:
    without that key (or KMS key) nobody can read it. Keep the key apart, as long as the backups.
    """
    from strongroom.ops.backup import BackupError, backup, sqlite_file
    from strongroom.serving.startup import database_label

    settings = _load_settings()
    try:
        sqlite_file(settings.database_url)  # PostgreSQL: pg_dump, said before anything else
        database, _master, _keys, writer = _services(settings)
        with _copy_progress("backing up") as update:
            result = backup(database, target, writer=writer, force=force, progress=update)
    except (BackupError, ConfigurationError) as exc:
        raise _fail(str(exc)) from None
    out.print(
        f"Backed up {database_label(settings.database_url)} to {result.path} "
        f"({result.size} bytes).",
        highlight=False,
        soft_wrap=True,
    )
    err.print(
        "The backup is readable only with this store's master key: keep the key, apart from "
        "the backups, for as long as them.",
        highlight=False,
        soft_wrap=True,
    )


def restore_command(
    source: Path = typer.Option(..., "--from", metavar="FILE", help="The backup to restore."),
    force: bool = typer.Option(
        False, "--force", help="Replace the store that exists (it is kept beside it)."
    ),
) -> None:
    """Put a backup back as the SQLite store, once checked (servers must be stopped).

    Checks first: the file's integrity, its schema (an older one is migrated), that the master
    key configured here opens its data keys, and its audit chain.
    """
    from strongroom.audit.writer import AuditFileSink, AuditWriter
    from strongroom.crypto import load_master_key_provider
    from strongroom.ops.backup import BackupError, restore, sqlite_file

    settings = _load_settings()
    sink = AuditFileSink(settings.audit_file) if settings.audit_file else None
    try:
        sqlite_file(settings.database_url)
        master = load_master_key_provider(settings)
        with _copy_progress("restoring") as update:
            result = restore(
                settings.database_url,
                source,
                master,
                lambda database, keys: AuditWriter(database, keys.audit, sink),
                force=force,
                progress=update,
            )
    except (BackupError, ConfigurationError) as exc:
        raise _fail(str(exc)) from None
    out.print(
        f"Restored {result.path} from {source}: {result.items} secret(s), "
        f"{result.events} audit event(s) verified.",
        highlight=False,
        soft_wrap=True,
    )
    if result.migrated_from is not None:
        err.print(f"Its schema was migrated from revision {result.migrated_from}.")
    if result.kept is not None:
        err.print(
            f"The store it replaced is kept as {result.kept}.", highlight=False, soft_wrap=True
        )


@audit_app.command("verify")
def audit_verify(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Check the audit chains end to end, in one consistent snapshot, changing nothing.

    Every writer's chain (one or more per server process) and the registry that anchors them
    together (audit/chain.py says what is and is not detected). Needs the master key (or KMS
    key): the links are keyed. Events that server processes have journaled but not chained yet
    (SQLite) are counted as pending, not chained here; their processes chain them, or the next
    server start if those have stopped.
    """
    from sqlalchemy.exc import OperationalError

    from strongroom.audit.journal import journal_directory, pending_events
    from strongroom.audit.verification import verify_chain
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
                    "writer": result.broken.writer if result.broken else None,
                    "problem": result.broken.problem if result.broken else None,
                    "unkeyed": result.unkeyed,
                    "anchored_at": result.anchored_at,
                    "writers": result.writers,
                    "open_writers": result.open_writers,
                    "registry_entries": result.entries,
                    "pending": pending.events,
                    "unreadable_journals": pending.unreadable,
                }
            )
        )
    elif result.broken is None:
        keyed = result.checked - result.unkeyed
        out.print(f"Audit chain intact: {result.checked} event(s) verified.")
        if result.writers:
            out.print(
                f"{result.writers} writer chain(s) in a registry of {result.entries} "
                f"entr{'y' if result.entries == 1 else 'ies'}; {result.open_writers} still open "
                "(their processes run, or stopped without closing them)."
            )
        if result.unkeyed:
            out.print(
                f"Keyed since {result.anchored_at}: {keyed} keyed event(s), anchored on the "
                f"{result.unkeyed} unkeyed event(s) an older version wrote before it."
            )
        elif result.anchored_at is not None:
            out.print(f"Keyed since {result.anchored_at}: every event is keyed.")
    else:
        where = f" at event {result.broken.seq}" if result.broken.seq else ""
        err.print(
            f"[bold red]Audit chain broken[/]{where}: {escape(result.broken.problem)} "
            f"({result.checked} event(s) verified before it)."
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
