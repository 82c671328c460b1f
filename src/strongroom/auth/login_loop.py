"""A second event loop, in its own thread, where logins run.

A login costs milliseconds of CPU (request vetting, the STS round trip through httpx, token
minting); reads cost tens of microseconds. On one loop, a burst of logins queues every read
behind it: 200 logins at once held reads up for ~150 ms. On their own loop thread, the
interpreter hands the reads' loop the GIL at least every switch interval (5 ms), so reads keep
flowing while logins are worked off. Login database work can block this loop directly: only
other logins wait for it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed (as uvicorn uses), else asyncio's."""
    try:
        import uvloop
    except ImportError:  # uvloop is optional (uvicorn[standard] brings it)
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class LoginLoop:
    """Runs coroutines on a dedicated loop thread; started on first use, restartable."""

    def __init__(self, name: str = "login-loop") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=self._name, daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    async def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the login loop and wait for it from the caller's loop.

        Cancelling the caller (a client that went away) cancels the login too.
        """
        future = asyncio.run_coroutine_threadsafe(coroutine, self._running_loop())
        return await asyncio.wrap_future(future)

    def close(self, final: Coroutine[Any, Any, None] | None = None, timeout: float = 5) -> None:
        """Run ``final`` (e.g. closing an HTTP client) on the loop, then stop its thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            if final is not None:
                final.close()
            return
        if final is not None:
            asyncio.run_coroutine_threadsafe(final, loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        loop.close()
