"""The body of ``GET /metrics``: every process's counters, and what is read at the scrape.

In a server (``PROMETHEUS_MULTIPROC_DIR`` set) the counters of all its processes, living and
ended, are added up from that folder; otherwise (an app in its caller's process) they are this
process's own. Either way the build and the server's processes are added
(``strongroom.metrics`` lists everything).
"""

from __future__ import annotations

import contextlib
import glob
import os
import platform
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from strongroom import __version__
from strongroom.metrics.processes import ServerProcesses


class BuildInfo(Collector):
    """``strongroom_build_info{version, python} 1``: which version answers (one series)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        info = GaugeMetricFamily(
            "strongroom_build_info",
            "The running Strongroom: its version and Python's",
            labels=["version", "python"],
        )
        info.add_metric([__version__, platform.python_version()], 1)
        yield info


class SettledMetricFiles(multiprocess.MultiProcessCollector):
    """prometheus_client's collector of every process's metric files, less those still empty.

    A process creates its file and only then sizes it (``MmapedDict``); a scrape that met one
    at 0 bytes failed whole with ``struct.error`` (client_python issue 1199): a 500 from
    /metrics whenever a worker or login process was starting, or for good if one was killed
    just then. An empty file holds nothing yet, and a file is never emptied once sized.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)  # type: ignore[no-untyped-call]

    def collect(self) -> Iterable[Metric]:
        files = []
        for path in glob.glob(os.path.join(self._path, "*.db")):
            with contextlib.suppress(FileNotFoundError):
                if os.path.getsize(path) > 0:
                    files.append(path)
        return self.merge(files, accumulate=True)  # type: ignore[no-untyped-call,no-any-return]


class Exposition:
    """Renders ``/metrics`` for one process; ``supervisor``: the pid of the server's supervisor
    (a worker's or a login process's parent), None for an app in its caller's process."""

    def __init__(self, supervisor: int | None) -> None:
        self._live: tuple[Collector, ...] = (BuildInfo(), ServerProcesses(supervisor))

    def render(self) -> bytes:
        if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
            registry = CollectorRegistry()
            SettledMetricFiles(registry)
        else:
            # This process's counters; the default registry's own process and platform
            # collectors are left out (ours describe every process of the server).
            registry = CollectorRegistry()
            registry.register(_Counters())
        for collector in self._live:
            registry.register(collector)
        return generate_latest(registry)


class _Counters(Collector):
    """The default registry's metrics defined by this package (what its modules count)."""

    def collect(self) -> Iterator[Metric]:
        for family in REGISTRY.collect():
            if family.name.startswith("strongroom_"):
                yield family
