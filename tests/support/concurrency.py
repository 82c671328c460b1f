"""Threads for race tests: one function run in several at once, and a writer that holds
SQLite's write turn."""

from __future__ import annotations

import threading
from collections.abc import Callable

from strongroom.db.engine import Database


def run_at_once(target: Callable[[], object], count: int) -> list[BaseException]:
    """Start ``count`` threads that each call ``target`` once, released together by a
    barrier; wait for all; return what they raised (empty when none failed)."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            target()
        except BaseException as exc:  # reported to the caller
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


class HeldLock:
    """Another writer (a login's token write, another worker) holding SQLite's write turn."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._taken = threading.Event()
        self._release = threading.Event()
        self._thread = threading.Thread(target=self._hold)

    def _hold(self) -> None:
        with self._database.write():
            self._taken.set()
            self._release.wait(30)

    def __enter__(self) -> HeldLock:
        self._thread.start()
        assert self._taken.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        self._release.set()
        self._thread.join(10)
