"""The CPU quota behind the default worker count (STRONGROOM_WORKERS), read from the texts of
/proc/self/cgroup, /proc/self/mountinfo and the cgroup files of the layouts met in practice."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePosixPath

import pytest

from strongroom.config import Settings
from strongroom.kit.cpu_quota import (
    CpuControl,
    available_cpus,
    cpu_controls,
    parse_cfs_quota,
    parse_cpu_max,
    whole_cpus,
)

V2_MOUNT = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw\n"
# cgroup v1 as Docker without a cgroup namespace shows it: the container's own cgroup is the
# mount's root, while /proc/self/cgroup names its full path.
V1_DOCKER_MOUNTS = (
    "1263 1262 0:29 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro - cgroup cgroup rw,cpu,cpuacct\n"
    "1264 1262 0:30 /docker/abc /sys/fs/cgroup/cpuset ro,nosuid - cgroup cgroup rw,cpuset\n"
)
# A hybrid host (v1 controllers, v2 mounted beside them with no controller), as on this CI.
HYBRID_MOUNTS = (
    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
)
HYBRID_CGROUP = "4:memory:/job/1\n3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/\n"


@pytest.mark.parametrize(
    ("text", "cpus"),
    [
        ("max 100000\n", None),
        ("200000 100000\n", 2.0),
        ("150000 100000", 1.5),
        ("50000 100000", 0.5),
        ("0 100000", None),
        ("200000 0", None),
        ("garbage", None),
        ("", None),
    ],
)
def test_cpu_max(text: str, cpus: float | None) -> None:
    assert parse_cpu_max(text) == cpus


@pytest.mark.parametrize(
    ("quota", "period", "cpus"),
    [("-1\n", "100000\n", None), ("300000\n", "100000\n", 3.0), ("x", "100000", None)],
)
def test_cfs_quota(quota: str, period: str, cpus: float | None) -> None:
    assert parse_cfs_quota(quota, period) == cpus


def test_a_container_with_its_own_cgroup_namespace_reads_the_mount_top() -> None:
    assert cpu_controls("0::/\n", V2_MOUNT) == [CpuControl(2, PurePosixPath("/sys/fs/cgroup"))]


def test_a_service_on_a_v2_host_reads_its_cgroup_and_every_ancestor() -> None:
    controls = cpu_controls("0::/system.slice/strongroom.service\n", V2_MOUNT)
    assert [str(control.directory) for control in controls] == [
        "/sys/fs/cgroup/system.slice/strongroom.service",
        "/sys/fs/cgroup/system.slice",
        "/sys/fs/cgroup",
    ]


def test_v1_without_a_cgroup_namespace_reads_the_containers_own_cgroup() -> None:
    controls = cpu_controls("5:cpu,cpuacct:/docker/abc\n3:cpuset:/docker/abc\n", V1_DOCKER_MOUNTS)
    assert controls == [CpuControl(1, PurePosixPath("/sys/fs/cgroup/cpu,cpuacct"))]


def test_a_hybrid_host_reads_the_v1_cpu_controller_and_the_bare_v2_tree() -> None:
    assert cpu_controls(HYBRID_CGROUP, HYBRID_MOUNTS) == [
        CpuControl(1, PurePosixPath("/sys/fs/cgroup/cpu")),
        CpuControl(2, PurePosixPath("/sys/fs/cgroup/unified")),
    ]


def test_escaped_mount_points_and_unmounted_hierarchies() -> None:
    mount = r"30 23 0:26 / /mnt/with\040space rw - cgroup2 cgroup2 rw" + "\n"
    assert cpu_controls("0::/\n", mount) == [CpuControl(2, PurePosixPath("/mnt/with space"))]
    assert cpu_controls("0::/\n1:cpu:/\n", "") == []


def _reader(files: dict[str, str]) -> Callable[[str], str | None]:
    return files.get


def test_the_tightest_quota_of_the_cgroup_and_its_ancestors_wins() -> None:
    files = {
        "/proc/self/cgroup": "0::/kubepods/pod1/ctr\n",
        "/proc/self/mountinfo": V2_MOUNT,
        "/sys/fs/cgroup/kubepods/pod1/ctr/cpu.max": "max 100000\n",
        "/sys/fs/cgroup/kubepods/pod1/cpu.max": "250000 100000\n",
        "/sys/fs/cgroup/kubepods/cpu.max": "max 100000\n",
    }
    assert available_cpus(_reader(files), affinity=lambda: 16) == 2.5


def test_affinity_bounds_a_larger_quota_and_no_quota_at_all() -> None:
    files = {
        "/proc/self/cgroup": "0::/\n",
        "/proc/self/mountinfo": V2_MOUNT,
        "/sys/fs/cgroup/cpu.max": "800000 100000\n",
    }
    assert available_cpus(_reader(files), affinity=lambda: 3) == 3
    assert available_cpus(_reader({}), affinity=lambda: 6) == 6


def test_v1_quota_in_a_container() -> None:
    files = {
        "/proc/self/cgroup": "5:cpu,cpuacct:/docker/abc\n",
        "/proc/self/mountinfo": V1_DOCKER_MOUNTS,
        "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "150000\n",
        "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
    }
    assert available_cpus(_reader(files), affinity=lambda: 8) == 1.5


@pytest.mark.parametrize(
    ("cpus", "workers"), [(0.5, 1), (1.0, 1), (1.5, 1), (2.0, 2), (3.99, 3), (4.0, 4), (64.0, 4)]
)
def test_whole_cpus_round_down_between_one_and_the_cap(cpus: float, workers: int) -> None:
    assert whole_cpus(cpus, 4) == workers


def test_strongroom_workers_wins_over_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRONGROOM_WORKERS", "7")
    assert Settings().worker_count == 7
    monkeypatch.delenv("STRONGROOM_WORKERS")
    assert Settings().workers is None  # unset: the default comes from the CPU quota
    assert 1 <= Settings().worker_count <= 4
    with pytest.raises(ValueError, match="workers"):
        Settings(workers=0)
