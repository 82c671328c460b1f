"""The keyed audit chain and ``strongroom audit verify`` (SPEC section 7), against real
``strongroom server`` processes on SQLite and PostgreSQL.

The attacker here has write access to the database and nothing else: not the master key. They
know the code (the link formats are documented in audit/chain.py), so they can recompute any
SHA-256 link, but no keyed one.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, create_engine, insert, select, text, update

from strongroom.audit.event import AuditEvent, isoformat_micro
from strongroom.audit.journal import AuditJournal, encode_events
from strongroom.db import migrate
from strongroom.db.engine import Database
from strongroom.db.tables import audit_events
from tests.e2e.server_process import STRONGROOM, ServerProcess

pytestmark = pytest.mark.slow

GENESIS = "0" * 64
RECORD_FIELDS = (
    "request_id",
    "source_ip",
    "access_id",
    "auth_method",
    "identity_arn",
    "token_digest",
    "action",
    "path",
    "status",
    "outcome",
    "reason",
)


def event(number: int, when: datetime | None = None) -> AuditEvent:
    """A read's event, as any version wrote it."""
    made = AuditEvent(
        time=when or datetime.now(UTC),
        request_id=f"req-{number:04d}",
        source_ip="203.0.113.7",
        action="secret.read",
        path="/old/db",
        access_id="p-abc123def456",
        token_digest="d" * 64,
    )
    made.finish(200)
    return made


# -- the attacker's tools: SQL and SHA-256, no key ------------------------------------------


def sha256_link(prev_hash: str, seq: int, record: dict[str, Any]) -> str:
    """The unkeyed link format (audit/chain.py), which anyone can compute."""
    body = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(b"%s\x00%d\x00%s" % (prev_hash.encode(), seq, body)).hexdigest()


def record_of(row: Any) -> dict[str, Any]:
    return {
        **{name: getattr(row, name) for name in RECORD_FIELDS},
        "time": isoformat_micro(row.time),
    }


def relink_rows(
    connection: Connection, rows: Sequence[Any], prev: str, *, by_writer_seq: bool
) -> str:
    """Recompute with SHA-256 the links of ``rows`` (in order) from ``prev``, each linked at its
    position in its writer's chain (``by_writer_seq``) or at its global id; return the last."""
    for row in rows:
        link = sha256_link(prev, row.writer_seq if by_writer_seq else row.seq, record_of(row))
        connection.execute(
            update(audit_events)
            .where(audit_events.c.seq == row.seq)
            .values(prev_hash=prev, hash=link)
        )
        prev = link
    return prev


def relink_unkeyed(connection: Connection, from_seq: int) -> str:
    """Recompute with SHA-256 every link of event ``from_seq``'s writer from that event on, and
    the writer's head: what an attacker does after changing event ``from_seq`` so that its
    chain looks whole again."""
    start = connection.execute(
        select(audit_events.c.writer, audit_events.c.writer_seq, audit_events.c.prev_hash).where(
            audit_events.c.seq == from_seq
        )
    ).one()
    prev = start.prev_hash
    rows = connection.execute(
        select(audit_events)
        .where(audit_events.c.writer == start.writer)
        .where(audit_events.c.writer_seq >= start.writer_seq)
        .order_by(audit_events.c.writer_seq)
    ).all()
    prev = relink_rows(connection, rows, prev, by_writer_seq=True)
    connection.execute(
        text("UPDATE audit_heads SET hash = :h WHERE id = :w"), {"h": prev, "w": start.writer}
    )
    return prev


def relink_all_as_one_unkeyed_chain(connection: Connection) -> str:
    """Every event into one SHA-256 chain in the order of its ids, as writer 1 (the legacy
    chain), as if all of it had been written before the key existed."""
    connection.execute(text("UPDATE audit_events SET writer = 1, writer_seq = -seq"))
    connection.execute(text("UPDATE audit_events SET writer_seq = seq"))
    rows = connection.execute(select(audit_events).order_by(audit_events.c.seq)).all()
    return relink_rows(connection, rows, GENESIS, by_writer_seq=False)


def schema_at(database_url: str, revision: str) -> None:
    """Bring a database's schema to ``revision``, up or down (PostgreSQL's test databases
    start at the newest)."""
    config = Config()
    config.set_main_option("script_location", str(Path(migrate.__file__).parent / "migrations"))
    database = Database.from_url(database_url)
    try:
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            current = MigrationContext.configure(connection).get_current_revision()
            if current is None:
                command.upgrade(config, revision)
            else:
                command.downgrade(config, revision)
    finally:
        database.dispose()


def as_attacker(database_url: str) -> Iterator[Connection]:
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            yield connection
    finally:
        engine.dispose()


def tamper(database_url: str, change: Any) -> None:
    for connection in as_attacker(database_url):
        change(connection)


def verify(server: ServerProcess, **env: str) -> dict[str, Any]:
    result = subprocess.run(
        [STRONGROOM, "audit", "verify", "--json"],
        env={**server.env, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    assert (result.returncode == 0) == report["ok"], result
    return report


def new_server(
    database_url: str, master_key_b64: str, tmp_path: Path, workers: int = 1
) -> ServerProcess:
    return ServerProcess(
        {
            "STRONGROOM_DATABASE_URL": database_url,
            "STRONGROOM_MASTER_KEY": master_key_b64,
            "STRONGROOM_LOG_FORMAT": "json",
            "STRONGROOM_LOGIN_FAILURE_LIMIT": "100000",
        },
        workers=workers,
        cwd=tmp_path,
    )


def some_traffic(server: ServerProcess, credentials: dict[str, str], name: str) -> None:
    with server.client_as(credentials) as admin:
        admin.post("/v1/secrets", json={"name": name, "value": "v"}).raise_for_status()
        assert admin.get("/v1/secrets" + name).status_code == 200
        denied = admin.get("/v1/secrets" + name, headers={"Authorization": "Bearer t-nope"})
        assert denied.status_code == 401


# -- the attacks ----------------------------------------------------------------------------


def test_history_rewritten_with_database_access_alone_is_detected(
    database_url: str, master_key_b64: str, tmp_path: Path
) -> None:
    server = new_server(database_url, master_key_b64, tmp_path)
    credentials = server.bootstrap()
    server.start()
    try:
        some_traffic(server, credentials, "/h/db")
    finally:
        server.stop()
    intact = verify(server)
    assert intact["ok"], intact

    # Attack: the admin's read of /h/db never happened (it was denied), every later SHA-256
    # link recomputed so that the chain looks whole.
    def cover_up(connection: Connection) -> None:
        read = connection.execute(
            select(audit_events.c.seq).where(
                audit_events.c.action == "secret.read", audit_events.c.status == 200
            )
        ).scalar_one()
        connection.execute(
            update(audit_events)
            .where(audit_events.c.seq == read)
            .values(status=403, outcome="denied", reason="not allowed")
        )
        relink_unkeyed(connection, read)

    tamper(database_url, cover_up)
    report = verify(server)
    assert not report["ok"]
    assert report["checked"] < intact["checked"]

    # Attack: relink everything unkeyed and move the anchor to the end, as if the whole chain
    # had been written before the upgrade. The anchor's seal does not cover the new place.
    def move_anchor(connection: Connection) -> None:
        end = relink_all_as_one_unkeyed_chain(connection)
        last = connection.execute(text("SELECT max(seq) FROM audit_events")).scalar_one()
        connection.execute(
            text("UPDATE audit_anchor SET seq = :s, hash = :h"), {"s": last, "h": end}
        )

    tamper(database_url, move_anchor)
    assert verify(server)["problem"] == "the anchor does not match its seal"

    # Attack: remove the seal (as if no server had started since the upgrade).
    tamper(database_url, lambda c: c.execute(text("UPDATE audit_anchor SET seal = NULL")))
    assert "not anchored yet" in verify(server)["problem"]

    # Attack: remove the anchor (as if the chain had always been keyed: it was not).
    tamper(database_url, lambda c: c.execute(text("DELETE FROM audit_anchor")))
    assert verify(server)["problem"] == "the anchor of the keyed chain is missing"


def test_an_unkeyed_chain_keeps_verifying_after_the_upgrade_and_is_protected(
    database_url: str, master_key_b64: str, tmp_path: Path
) -> None:
    """A chain written before the key existed is kept: verified as it was, with the keyed
    chain anchored on its head. From then on its old events cannot be changed either."""
    schema_at(database_url, "0002")  # as the last version left it
    old_events = [event(n, datetime.now(UTC) - timedelta(days=30, seconds=-n)) for n in range(1, 6)]

    def write_old_chain(connection: Connection) -> None:
        prev = GENESIS
        for seq, old in enumerate(old_events, start=1):
            record = old.record()
            link = sha256_link(prev, seq, record)
            values = {name: record[name] for name in RECORD_FIELDS}
            connection.execute(
                insert(audit_events).values(
                    seq=seq, time=old.time, prev_hash=prev, hash=link, **values
                )
            )
            prev = link
        connection.execute(text("UPDATE audit_head SET seq = 5, hash = :h"), {"h": prev})

    tamper(database_url, write_old_chain)
    server = new_server(database_url, master_key_b64, tmp_path)
    credentials = server.bootstrap()  # migrates, anchors, appends its own (keyed) event
    server.start()
    try:
        some_traffic(server, credentials, "/u/db")
    finally:
        server.stop()
    report = verify(server)
    assert report["ok"], report
    assert report["unkeyed"] == 5
    assert report["checked"] > 5 + 3

    # Attack: change an old event and recompute the old SHA-256 links after it, up to where
    # the keyed chain begins (whose links cannot be recomputed without the key).
    def rewrite_old(connection: Connection) -> None:
        connection.execute(
            update(audit_events).where(audit_events.c.seq == 2).values(source_ip="10.9.9.9")
        )
        prev = connection.execute(
            select(audit_events.c.hash).where(audit_events.c.seq == 1)
        ).scalar_one()
        rows = connection.execute(
            select(audit_events)
            .where(audit_events.c.seq.between(2, 5))
            .order_by(audit_events.c.seq)
        ).all()
        prev = relink_rows(connection, rows, prev, by_writer_seq=False)
        connection.execute(
            update(audit_events).where(audit_events.c.seq == 6).values(prev_hash=prev)
        )

    tamper(database_url, rewrite_old)
    broken = verify(server)
    assert not broken["ok"]
    assert broken["broken_at"] <= 6


# -- verify: one snapshot, no writes, no false alarms ---------------------------------------


def test_audit_verify_never_reports_a_break_while_servers_write(
    database_url: str, master_key_b64: str, tmp_path: Path
) -> None:
    server = new_server(database_url, master_key_b64, tmp_path, workers=2)
    credentials = server.bootstrap()
    server.start()
    stop = threading.Event()
    errors: list[str] = []

    def load(worker: int) -> None:
        """Writes, reads and denials (events through both of the writer's paths)."""
        try:
            with server.client_as(credentials) as admin:
                n = 0
                while not stop.is_set():
                    n += 1
                    name = f"/load/{worker}/{n}"
                    statuses = (
                        admin.post("/v1/secrets", json={"name": name, "value": "v"}).status_code,
                        admin.get("/v1/secrets" + name).status_code,
                        admin.get(
                            "/v1/secrets" + name, headers={"Authorization": "Bearer t-x"}
                        ).status_code,
                    )
                    if statuses != (201, 200, 401):
                        errors.append(repr(statuses))
        except Exception as exc:  # reported by the test
            errors.append(repr(exc))

    threads = [threading.Thread(target=load, args=(w,)) for w in range(3)]
    reports = []
    try:
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        for _ in range(4):
            reports.append(verify(server))
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        server.stop()
    assert errors == []
    assert [r["problem"] for r in reports] == [None] * len(reports)
    assert reports[-1]["checked"] > reports[0]["checked"] > 0  # it did verify a growing chain
    final = verify(server)
    assert final["ok"]
    # The legacy chain, bootstrap's and each worker's: chains of several processes verified.
    assert final["writers"] >= 4
    assert final["open_writers"] == 0  # the server closed its chains when it stopped


def _journal_files(database_url: str) -> dict[str, bytes]:
    """The audit journals beside a SQLite database, byte for byte."""
    if not database_url.startswith("sqlite"):
        return {}
    directory = Path(database_url.removeprefix("sqlite:///") + ".audit-journal")
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*"))}


def _dump(database_url: str) -> list[Any]:
    dump: list[Any] = []
    for connection in as_attacker(database_url):
        for table in (
            "audit_events",
            "audit_heads",
            "audit_registry",
            "audit_journal_progress",
            "data_keys",
            "tokens",
        ):
            dump += connection.execute(text(f"SELECT * FROM {table} ORDER BY 1")).all()  # noqa: S608
    return dump


def test_audit_verify_changes_nothing(
    database_url: str, master_key_b64: str, tmp_path: Path
) -> None:
    """Verify is the auditor's tool: it must run on a read-only copy or role, and must not
    chain (nor delete) the journal a server left behind: that is the server's job, and a
    verify that writes can neither prove nor be trusted to have verified what it found."""
    server = new_server(database_url, master_key_b64, tmp_path)
    credentials = server.bootstrap()
    server.start()
    try:
        some_traffic(server, credentials, "/n/db")
    finally:
        server.stop()
    env: dict[str, str] = {}
    role = "auditor_" + secrets.token_hex(4)
    if database_url.startswith("sqlite"):
        # What a server process killed before chaining its journal leaves behind.
        orphan = AuditJournal.create(
            Path(database_url.removeprefix("sqlite:///") + ".audit-journal")
        )
        orphan.append(encode_events([event(1), event(2)]))
        orphan.close(remove=False)
    else:
        # An auditor's role that can read and nothing else: any write would fail.
        for connection in as_attacker(database_url):
            connection.execute(text(f"CREATE ROLE {role} LOGIN"))
            connection.execute(text(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"))
        env["STRONGROOM_DATABASE_URL"] = database_url.replace("//postgres@", f"//{role}@")
    try:
        before, journals = _dump(database_url), _journal_files(database_url)
        report = verify(server, **env)
        assert report["ok"], report
        # The same rows, the same journals (a SQLite reader's closing checkpoint may move
        # pages between the WAL and the database file: that changes no row).
        assert _dump(database_url) == before
        assert _journal_files(database_url) == journals
        if database_url.startswith("sqlite"):
            assert orphan.path.exists()
            assert report["pending"] == 2  # reported, left for the next server start
    finally:
        if not database_url.startswith("sqlite"):
            for connection in as_attacker(database_url):
                connection.execute(text(f"DROP OWNED BY {role}"))
                connection.execute(text(f"DROP ROLE {role}"))
