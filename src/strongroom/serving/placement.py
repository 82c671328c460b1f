"""Where work runs: the one place that decides it, for each kind of process.

A server is a supervisor (``serving/supervisor.py``) that forks workers and one pool of login
processes. What each of them does besides serving requests, and where a login runs, is decided
here from the settings, and ``create_app`` takes the result instead of a set of flags:

=====================  ==========  =============  ==========  ==========================
decision               worker      login process  in-process  switched off by
=====================  ==========  =============  ==========  ==========================
migrate at create_app  no (1)      no (1)         yes         (the supervisor migrates)
login thread           yes         no (2)         yes         ``LOGIN_THREAD=false``
login inline if idle   yes         no (2)         no (3)      ``LOGIN_INLINE_WHEN_IDLE=false``
login handoff          yes (5)     no             no          ``LOGIN_PROCESSES=0``
WAL checkpoint thread  yes         no (4)         yes         ``WAL_CHECKPOINT_THREAD=false``
audit journal          yes         yes            no (3)      ``AUDIT_JOURNAL=false``
database work          (6)         (6)            (6)         (SQLite: always inline)
change feed            yes (7)     no             yes (7)     ``CHANGE_FEED=false``
kept version rows      yes (8)     no             yes (8)     ``READ_CACHE_MB=0``
=====================  ==========  =============  ==========  ==========================

1. The supervisor brings the schema up to date once, under the migration lock
   (``db/migrate.py``), before it forks anything: replicas may start together.
2. A login process serves logins only; they run on its own event loop.
3. Tests and the CLI choose with :meth:`Placement.in_process`'s arguments.
4. The workers run them already; one thread per process would repeat the same work.
5. Not under TLS (``TLS_CERT_FILE``): the server then starts no login processes. A TLS
   session lives in the process that accepted the connection (its keys, sequence numbers and
   buffers are OpenSSL's state there), and the worker must decrypt the first bytes to see a
   login at all, so the socket cannot be passed on. The worker serves the login itself, on
   its login thread or inline when idle, exactly as it does when no login process is ready.
   Relaying the decrypted bytes to a login process instead would leave the costly part on the
   worker anyway (the TLS handshake, done before the first byte is read) and add a copy of
   every byte in both directions. Where login bursts must not slow reads, end TLS at a load
   balancer in front (``TRUSTED_PROXIES``, ``X-Forwarded-Proto``): the handoff works again.

6. By the database (:func:`database_work_in_threads`). SQLite: inline, on the loop that asks.
   PostgreSQL: never on an event loop. The hot reads (the generation counter, the item-version
   row) are asynchronous I/O on a pool (``db/hot.py``, ``db/pg_async.py``); every other call
   (services of routes and the console, a token cache miss, a login's reads and writes) runs
   on a thread of the process (``db/work.py``). Either way the caller waits at most
   ``DB_TIMEOUT_SECONDS`` and then answers 503. The audit writer's group commits of reads
   and denials are asynchronous I/O too, up to ``AUDIT_BATCHES_IN_FLIGHT`` at once
   (``audit/pg_append.py``; 0: one at a time in a thread), bounded the same.
7. PostgreSQL only. A login process resolves no token worth caching.
8. PostgreSQL, with the change feed: each process keeps the item-version rows its reads
   read for as long as the feed vouches for the ``secrets`` counter (``db/hot.py``).

- **login thread**: a process that serves reads runs logins on a second event loop in a
  thread (``auth/login_loop.py``): a burst of logins would otherwise queue the reads.
- **login inline if idle**: a login that finds no other request in progress runs on the
  caller's own loop (no thread hop; nothing there to slow down). Also decides whether a worker
  keeps such a login rather than hand it over (``serving/handoff.py``).
- **login handoff**: a worker passes new connections whose first request is a login to the
  server's login processes (``serving/protocol.py``, ``serving/handoff.py``); they yield the
  CPU to the workers (``LOGIN_PROCESS_SCHEDULING``, ``LOGIN_PROCESS_NICE``).
- **WAL checkpoint thread** (SQLite): checkpoints run in a background thread, never inside a
  request's commit (``db/engine.py``, ``Checkpointer``).
- **audit journal** (SQLite): reads' and denials' audit events are durable once appended to
  the process's journal and reach the hash chain shortly after (``audit/journal.py``);
  without it each batch of events commits to the chain before the answers leave.
- **database work** (PostgreSQL): see note 6.
- **change feed** (PostgreSQL): each process listens for the generation counter's
  notifications on one connection, proven complete by a heartbeat, instead of reading the
  counter on every request (``db/change_feed.py``); while it cannot vouch for the counter,
  requests read it themselves.

Three mechanisms of the request path move no work between processes or threads, so they are
settings rather than placements, each switched off the same way: ``DIRECT_ROUTES=false``
(every request through FastAPI's routing, ``api/direct_routes.py``), ``COALESCED_WRITES=false``
(uvicorn's two writes per response, ``serving/coalesced_writes.py``) and
``BALANCED_ACCEPT=false`` (the worker that wakes first accepts every waiting connection,
``serving/balanced_accept.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from strongroom.config import Settings


class ProcessRole(StrEnum):
    """Which kind of process an app serves in (not an access role: those are roles/)."""

    WORKER = "worker"
    LOGIN_PROCESS = "login process"
    IN_PROCESS = "in-process"


@dataclass(frozen=True, slots=True)
class Placement:
    """What one process's app does where; build it with one of the class methods."""

    role: ProcessRole
    migrate: bool
    login_thread: bool
    login_inline_when_idle: bool
    login_handoff: bool
    wal_checkpoints: bool
    audit_journal: bool
    change_feed: bool

    @classmethod
    def server_worker(cls, settings: Settings) -> Placement:
        """A worker of ``strongroom server``: serves every request, reads first."""
        return cls(
            role=ProcessRole.WORKER,
            migrate=False,
            login_thread=settings.login_thread,
            login_inline_when_idle=settings.login_thread and settings.login_inline_when_idle,
            login_handoff=not settings.tls,
            wal_checkpoints=settings.wal_checkpoint_thread,
            audit_journal=settings.audit_journal,
            change_feed=settings.change_feed,
        )

    @classmethod
    def login_process(cls, settings: Settings) -> Placement:
        """A login process of ``strongroom server``: the logins its workers pass over."""
        return cls(
            role=ProcessRole.LOGIN_PROCESS,
            migrate=False,
            login_thread=False,
            login_inline_when_idle=False,
            login_handoff=False,
            wal_checkpoints=False,
            audit_journal=settings.audit_journal,
            change_feed=False,
        )

    @classmethod
    def in_process(
        cls,
        *,
        login_thread: bool = True,
        login_inline_when_idle: bool = False,
        audit_journal: bool = False,
        change_feed: bool = True,
    ) -> Placement:
        """The app in the caller's process (tests, tools): it migrates the schema itself."""
        return cls(
            role=ProcessRole.IN_PROCESS,
            migrate=True,
            login_thread=login_thread,
            login_inline_when_idle=login_thread and login_inline_when_idle,
            login_handoff=False,
            wal_checkpoints=True,
            audit_journal=audit_journal,
            change_feed=change_feed,
        )


def database_work_in_threads(settings: Settings) -> bool:
    """Whether synchronous database work runs on threads (PostgreSQL) or inline (SQLite): note
    6 of the table above."""
    return not settings.is_sqlite
