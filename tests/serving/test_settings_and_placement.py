"""What the server decides from its settings before it forks: the number of workers (the CPU
quota), the settings it warns about, and where each kind of process runs its work."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from pydantic import ValidationError

from strongroom.config import Settings, cpu_quota, unknown_variables
from strongroom.serving.placement import Placement, Role
from strongroom.serving.supervisor import describe_exit


def cgroup(tmp_path: Path, cpu_max: str | None = None, v1: tuple[str, str] | None = None) -> Path:
    if cpu_max is not None:
        (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    if v1 is not None:
        (tmp_path / "cpu").mkdir()
        (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(v1[0] + "\n")
        (tmp_path / "cpu" / "cpu.cfs_period_us").write_text(v1[1] + "\n")
    return tmp_path


def test_the_cpu_quota_caps_the_cpus_this_process_may_use(tmp_path: Path) -> None:
    cpus = len(os.sched_getaffinity(0))
    assert cpu_quota(cgroup(tmp_path / "none")) == cpus  # no cgroup files: the affinity
    assert cpu_quota(cgroup(tmp_path, "max 100000")) == cpus  # v2 without a quota
    (tmp_path / "half").mkdir()
    assert cpu_quota(cgroup(tmp_path / "half", "50000 100000")) == 1  # never below one
    (tmp_path / "v1").mkdir()
    assert cpu_quota(cgroup(tmp_path / "v1", v1=("-1", "100000"))) == cpus
    (tmp_path / "many").mkdir()
    # A quota above the CPUs there are: the CPUs.
    assert cpu_quota(cgroup(tmp_path / "many", f"{(cpus + 8) * 100000} 100000")) == cpus


def test_workers_default_to_the_cpu_quota_at_most_four(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("strongroom.config.cpu_quota", lambda: 16)
    assert Settings(workers=None).worker_count == 4
    monkeypatch.setattr("strongroom.config.cpu_quota", lambda: 1)
    assert Settings(workers=None).worker_count == 1
    assert Settings(workers=6).worker_count == 6  # set explicitly: as asked
    assert Settings().login_process_count(3) == 3  # one per worker by default
    assert Settings(login_processes=0).login_process_count(3) == 0


def test_a_bad_trusted_proxy_is_refused_with_the_setting() -> None:
    with pytest.raises(ValidationError, match=r"'10\.0\.0\.0/33' is not an IP address or CIDR"):
        Settings(trusted_proxies="10.0.0.0/8, 10.0.0.0/33")  # type: ignore[arg-type]
    assert Settings(trusted_proxies="10.0.0.1, 2001:db8::/32").trusted_proxies == [  # type: ignore[arg-type]
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
    assert default.role is Role.WORKER
    assert (default.login_thread, default.login_inline_when_idle, default.login_handoff) == (
        True,
        True,
        True,
    )
    assert default.wal_checkpoints
    assert default.audit_journal
    assert not default.migrate  # the supervisor migrated, under the lock
    off = Placement.server_worker(
        Settings(
            login_thread=False,
            login_inline_when_idle=True,
            wal_checkpoint_thread=False,
            audit_journal=False,
        )
    )
    # Inline-when-idle is a choice between the login thread and the caller's loop: without the
    # thread every login runs on the caller's loop anyway.
    assert (off.login_thread, off.login_inline_when_idle) == (False, False)
    assert not off.wal_checkpoints
    assert not off.audit_journal
    login = Placement.login_process(Settings())
    assert (login.login_thread, login.login_handoff, login.wal_checkpoints) == (False,) * 3
    assert login.audit_journal
    assert Placement.in_process().migrate


def test_exits_are_described_by_code_or_signal() -> None:
    assert describe_exit(0) == {"exit_code": 0}
    assert describe_exit(3 << 8) == {"exit_code": 3}
    assert describe_exit(signal.SIGBUS) == {"signal": "SIGBUS"}
