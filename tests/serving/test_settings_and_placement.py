"""What the server decides from its settings before it forks: the number of workers (the CPU
quota), the settings it warns about, and where each kind of process runs its work."""

from __future__ import annotations

import signal

import pytest
from pydantic import ValidationError

from strongroom.config import Settings, unknown_variables
from strongroom.serving.placement import Placement, ProcessRole, database_work_in_threads
from strongroom.serving.supervisor import describe_exit


def test_workers_default_to_the_cpu_quota_at_most_four(monkeypatch: pytest.MonkeyPatch) -> None:
    # The quota itself is read by strongroom.kit.cpu_quota (tests/kit/test_cpu_quota.py).
    monkeypatch.setattr("strongroom.config.available_cpus", lambda: 16.0)
    assert Settings(workers=None).worker_count == 4
    monkeypatch.setattr("strongroom.config.available_cpus", lambda: 1.0)
    assert Settings(workers=None).worker_count == 1
    assert Settings(workers=6).worker_count == 6  # set explicitly: as asked
    assert Settings().login_process_count(3) == 3  # one per worker by default
    assert Settings(login_processes=0).login_process_count(3) == 0


def test_a_bad_trusted_proxy_is_refused_with_the_setting() -> None:
    with pytest.raises(ValidationError, match=r"'10\.0\.0\.0/33' is not an IP address or CIDR"):
        Settings(trusted_proxies="10.0.0.0/8, 10.0.0.0/33")
    assert Settings(trusted_proxies="10.0.0.1, 2001:db8::/32").trusted_proxies == [
        "10.0.0.1",
        "2001:db8::/32",
    ]


def test_unknown_variables_are_named_with_the_closest_setting() -> None:
    environ = {
        "STRONGROOM_WORKRES": "2",
        "STRONGROOM_DATABASE_URL": "sqlite:///x",
        "STRONGROOM_URL": "https://vault.example",  # the CLI's
        "STRONGROOM_SOMETHING_ELSE": "1",
        "PATH": "/usr/bin",
    }
    assert unknown_variables(environ) == [
        ("STRONGROOM_SOMETHING_ELSE", None),
        ("STRONGROOM_WORKRES", "STRONGROOM_WORKERS"),
    ]


def test_each_placement_switch_is_a_setting() -> None:
    default = Placement.server_worker(Settings())
    assert default.role is ProcessRole.WORKER
    assert (default.login_thread, default.login_inline_when_idle, default.login_handoff) == (
        True,
        True,
        True,
    )
    assert default.wal_checkpoints
    assert default.audit_journal
    assert default.change_feed
    assert not default.migrate  # the supervisor migrated, under the lock
    off = Placement.server_worker(
        Settings(
            login_thread=False,
            login_inline_when_idle=True,
            wal_checkpoint_thread=False,
            audit_journal=False,
            change_feed=False,
        )
    )
    # Inline-when-idle is a choice between the login thread and the caller's loop: without the
    # thread every login runs on the caller's loop anyway.
    assert (off.login_thread, off.login_inline_when_idle) == (False, False)
    assert not off.wal_checkpoints
    assert not off.audit_journal
    assert not off.change_feed
    login = Placement.login_process(Settings())
    assert (login.login_thread, login.login_handoff, login.wal_checkpoints) == (False,) * 3
    assert not login.change_feed
    assert login.audit_journal
    assert Placement.in_process().migrate


def test_database_work_leaves_the_loop_on_postgresql_only() -> None:
    assert not database_work_in_threads(Settings(database_url="sqlite:///x.db"))
    assert database_work_in_threads(Settings(database_url="postgresql+psycopg://u@db/strongroom"))


@pytest.mark.parametrize("bad", ["0", "-1", "301", "soon"])
def test_the_database_timeout_is_checked(bad: str) -> None:
    with pytest.raises(ValidationError, match="db_timeout_seconds"):
        Settings(db_timeout_seconds=bad)
    assert Settings().db_timeout_seconds == 5


def test_exits_are_described_by_code_or_signal() -> None:
    assert describe_exit(0) == {"exit_code": 0}
    assert describe_exit(3 << 8) == {"exit_code": 3}
    assert describe_exit(signal.SIGBUS) == {"signal": "SIGBUS"}
