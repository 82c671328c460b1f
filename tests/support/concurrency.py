"""Run one function in several threads at once, for race tests."""

from __future__ import annotations

import threading
from collections.abc import Callable


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
