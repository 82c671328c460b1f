"""Server settings, read once from ``STRONGROOM_*`` environment variables and passed down.

Nothing reads the environment after start-up: ``create_app(settings)`` receives this object and
hands the parts each component needs to it.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from strongroom.kit.cpu_quota import available_cpus, whole_cpus
from strongroom.kit.forwarded import TrustedProxies

ENV_PREFIX = "STRONGROOM_"
# Read by the client side (CLI, `run`, `agent`), not by Settings: known, so never warned about.
OTHER_KNOWN_VARIABLES = frozenset({"URL", "HOME", "PROFILE"})
# The default worker count stops here: past four, a server of this kind gains little from more
# processes (each holds its own caches and connections), and a quota-less machine with many
# cores should not get one per core by surprise.
DEFAULT_WORKERS_AT_MOST = 4


def default_workers() -> int:
    """Worker processes when STRONGROOM_WORKERS is not set: the CPUs this process may use (the
    container's CPU quota, the machine's, or its CPU affinity, whichever is least), at most 4."""
    return whole_cpus(available_cpus(), DEFAULT_WORKERS_AT_MOST)


class Settings(BaseSettings):
    """Configuration of one server process (SPEC section 1)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    database_url: str = "sqlite:///./strongroom-data/strongroom.db"
    # Where `strongroom server` listens (its --host/--port win) and `strongroom healthcheck`
    # asks: a container sets these once for both.
    host: str = "127.0.0.1"
    port: int = Field(default=8300, ge=1, le=65535)
    # Server worker processes (None: the CPU quota of the container or machine, at most 4).
    workers: int | None = Field(default=None, ge=1, le=64)
    master_key: SecretStr | None = None
    master_key_file: Path | None = None
    kms_key_id: str | None = None
    kms_endpoint_url: str | None = None
    kms_region: str = "us-east-1"
    server_id: str | None = None
    sts_extra_endpoints: Annotated[list[str], NoDecode] = Field(default_factory=list)
    sts_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # host=URL pairs: replays of requests signed for host connect to URL's address instead
    # (SPEC section 3); parsed and checked by auth.aws_iam.parse_connect_to at start-up.
    sts_connect_to: Annotated[list[str], NoDecode] = Field(default_factory=list)
    default_token_ttl_minutes: int = Field(default=30, ge=1, le=720)
    audit_file: Path | None = None
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    # Failed logins tolerated in one window before 429, per (source address, access ID) and
    # per source address (default: five times the first), never per access ID alone: access
    # IDs are not secret, and failing logins in someone's name must not lock them out.
    login_failure_limit: int = Field(default=20, ge=1)
    login_source_failure_limit: int | None = Field(default=None, ge=1)
    login_failure_window_seconds: int = Field(default=60, ge=1)
    # Allowed clock difference for a signed STS request's X-Amz-Date (SPEC section 3, check 4).
    sts_max_clock_skew_seconds: int = Field(default=900, ge=1, le=900)
    # Serve HTTPS: a PEM certificate (its chain may follow it) and its unencrypted PEM key,
    # both or neither, read once at start (serving/tls.py).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # The console's cookies are Secure when a request came over TLS, directly or as
    # X-Forwarded-Proto: https from a trusted proxy. True: always, whatever the request says
    # (TLS ends at a proxy that sends no X-Forwarded-Proto, or is not in TRUSTED_PROXIES).
    behind_https: bool = False
    # Where work runs (strongroom.serving.placement has the whole picture). Login processes of
    # the server, shared by its workers (0: logins are served in the workers; None: one per
    # worker), and how they yield the CPU to reads: "idle" (Linux's SCHED_IDLE, in the workers'
    # CPU group: a worker that wakes up takes the CPU from them at once) or "nice"
    # (login_process_nice steps lower, in a CPU group of their own). "idle" falls back to
    # "nice" where refused.
    login_processes: int | None = Field(default=None, ge=0, le=32)
    login_process_scheduling: Literal["idle", "nice"] = "idle"
    login_process_nice: int = Field(default=10, ge=0, le=19)
    # A worker serving no other request runs a login itself, on its event loop (the fastest
    # path); a busy one hands it to a login process. False: always hand off (if one is ready).
    login_inline_when_idle: bool = True
    # A process that serves reads runs logins on a loop thread of its own (False: on its event
    # loop, between the reads).
    login_thread: bool = True
    # SQLite: WAL checkpoints in a background thread of each worker (False: SQLite's automatic
    # checkpoints, inside whichever commit crosses the threshold).
    wal_checkpoint_thread: bool = True
    # SQLite: reads' and denials' audit events are durable in a per-process journal and reach
    # the chain shortly after (False: each batch commits to the chain before the answer).
    audit_journal: bool = True
    # A database unreachable at start is tried again for this long (each attempt logged).
    db_start_wait_seconds: float = Field(default=30.0, ge=0, le=3600)
    # The longest a request waits for the database (connecting, a pool checkout, a statement):
    # a database that does not answer in time gives 503, never a hang (SPEC sections 1, 11).
    db_timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    # PostgreSQL: reads' and denials' audit events are group-committed as asynchronous I/O on
    # the worker's loop, up to this many batches at once, each on a writer and connection of
    # its own (audit/pg_append.py). 0: one batch at a time, committed in a thread.
    audit_batches_in_flight: int = Field(default=4, ge=0, le=32)
    # The request path's mechanisms, each switched off by False (what each does, and what
    # off means: the list under serving/placement.py's table, and the modules it names).
    direct_routes: bool = True  # api/direct_routes.py
    coalesced_writes: bool = True  # serving/coalesced_writes.py
    balanced_accept: bool = True  # serving/balanced_accept.py
    # PostgreSQL: each worker learns of token, role and rule changes from LISTEN/NOTIFY, proven
    # complete by a heartbeat on the same connection (db/change_feed.py), instead of reading
    # the generation counter on every request. False: one generation read per request.
    change_feed: bool = True
    # PostgreSQL, with the change feed: each worker keeps up to this many MiB of the item
    # versions it read (ciphertexts, as stored) for as long as the feed vouches that no item
    # changed (db/hot.py). 0: every read reads its row from the database.
    read_cache_mb: int = Field(default=32, ge=0, le=4096)
    # No-escalation checks of role and auth method changes run on a thread of their own, so
    # that a costly one (bounded by its budget) never holds up the event loop. False: inline.
    rbac_check_thread: bool = True
    # Trust X-Forwarded-For from these proxy addresses only (empty: never); CIDRs or addresses.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("sts_extra_endpoints", "sts_connect_to", "trusted_proxies", mode="before")
    @classmethod
    def _split_comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("tls_cert_file", "tls_key_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # VAR= in a compose file or a shell means "not set", not the current directory.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_proxies(cls, value: list[str]) -> list[str]:
        TrustedProxies.from_cidrs(value)  # ValueError names the bad entry
        return value

    @property
    def source_failure_limit(self) -> int:
        """Failed logins tolerated per source address in one window."""
        return self.login_source_failure_limit or 5 * self.login_failure_limit

    @property
    def worker_count(self) -> int:
        """Workers to run: the setting, else the CPU quota (at most DEFAULT_WORKERS_AT_MOST)."""
        return self.workers or default_workers()

    @property
    def tls(self) -> bool:
        """Whether the server serves HTTPS itself (both files set; serving/tls.py checks them)."""
        return self.tls_cert_file is not None and self.tls_key_file is not None

    def login_process_count(self, workers: int) -> int:
        """Login processes of a server with ``workers`` workers; none under TLS, where a
        connection's TLS session lives in the worker that accepted it (serving/placement.py)."""
        if self.tls:
            return 0
        return workers if self.login_processes is None else self.login_processes

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def unknown_variables(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """``STRONGROOM_*`` variables that no setting reads, each with the closest known name
    (None when nothing is close): a misspelt setting would otherwise be silently ignored."""
    known = {name.upper() for name in Settings.model_fields} | OTHER_KNOWN_VARIABLES
    found = []
    for variable in sorted(environ):
        if not variable.startswith(ENV_PREFIX):
            continue
        name = variable[len(ENV_PREFIX) :]
        if name in known:
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
        found.append((variable, ENV_PREFIX + close[0] if close else None))
    return found
