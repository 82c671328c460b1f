"""A TCP proxy that puts a database (or any TCP server) a chosen round trip away, or freezes it.

    python bench/tcp_proxy.py --target 127.0.0.1:5432 [--listen 127.0.0.1:0] [--delay-ms 1.0]
                              [--loop auto|asyncio|uvloop]

A runnable script with no imports from the project (the standard library; uvloop if it is
installed), meant to be started as a process of its own by benchmarks and end-to-end tests.

- Once it listens it prints ONE JSON line on stdout and flushes it:
  ``{"listen": "127.0.0.1:PORT", "target": "127.0.0.1:5432", "delay_ms": 1.0, "timer": ...}``
  (``--listen 127.0.0.1:0`` picks a free port; read the line to learn it).
- ``--delay-ms D``: every chunk the client sends is held D ms before it goes to the target;
  what the target sends back passes at once. A request/response exchange (every PostgreSQL
  query) thus takes D ms more, as if the target were D ms of round trip away, and the proxy
  arms one timer per request chunk instead of two per exchange. Not modelled: a new
  connection's TCP handshake costs nothing extra (the proxy accepts locally), and messages
  the target starts itself (NOTIFY, an error on a timeout) arrive without their half of D.
- Timing: deadlines are kept on a timerfd (``CLOCK_MONOTONIC``, nanoseconds, through ctypes),
  because asyncio's and libuv's own timers round every wait up to a whole millisecond, which
  would turn 1 ms into 1 to 2 ms. Where timerfd is missing the loop's timers are used
  (``"timer": "loop"`` in the first line).
- Signals: SIGSTOP / SIGCONT freeze and thaw it, which is how a test freezes a database:
  connections stay open, new connects still complete in the kernel's accept queue, and no byte
  moves either way until SIGCONT. SIGUSR1 prints one JSON line of counters on stdout
  (connections, chunks and bytes each way). SIGTERM or SIGINT stop it; exit status 0.
- Flow control: a side whose peer cannot take more stops being read until it can.

One thread, one event loop: a chunk costs a few microseconds of CPU (benchmarks measure it as
the proxy's CPU time per request, see bench/read_path.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any, cast

Sink = Callable[[bytes | None], None]  # writes a chunk; None: end of stream


# -- timers --------------------------------------------------------------------------------


class _TimeSpec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _ITimerSpec(ctypes.Structure):
    _fields_ = [("it_interval", _TimeSpec), ("it_value", _TimeSpec)]


_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = 0o2000000
_TFD_TIMER_ABSTIME = 1


class TimerFd:
    """A one-shot timer at an absolute ``time.monotonic()`` deadline, on a Linux timerfd."""

    name = "timerfd"

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._settime = libc.timerfd_settime
        self._fd = int(libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC))
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        self._callback = callback
        loop.add_reader(self._fd, self._expired)

    def arm(self, deadline: float) -> None:
        seconds = int(deadline)
        spec = _ITimerSpec(_TimeSpec(0, 0), _TimeSpec(seconds, int((deadline - seconds) * 1e9)))
        if self._settime(self._fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None) != 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")

    def _expired(self) -> None:
        try:
            os.read(self._fd, 8)
        except BlockingIOError:  # re-armed after it fired: not due yet
            return
        self._callback()


class LoopTimer:
    """The same on the event loop's own timers (whole milliseconds: a fallback)."""

    name = "loop"

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self._loop = loop
        self._callback = callback
        self._handle: asyncio.TimerHandle | None = None

    def arm(self, deadline: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        delay = max(0.0, deadline - time.monotonic())
        self._handle = self._loop.call_at(self._loop.time() + delay, self._callback)


class DelayLine:
    """Chunks held ``delay`` seconds, then handed to their sink in arrival order.

    Every chunk waits the same time, so the queue stays sorted by deadline: one FIFO and one
    timer, armed for the head, serve every connection.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        self.delay = delay
        self._queue: deque[tuple[float, Sink, bytes | None]] = deque()
        try:
            self._timer: TimerFd | LoopTimer = TimerFd(loop, self._due)
        except (OSError, AttributeError):  # not Linux, or no timerfd in this libc
            self._timer = LoopTimer(loop, self._due)

    @property
    def timer_name(self) -> str:
        return self._timer.name

    def push(self, sink: Sink, data: bytes | None) -> None:
        if not self.delay:
            sink(data)
            return
        deadline = time.monotonic() + self.delay
        self._queue.append((deadline, sink, data))
        if len(self._queue) == 1:
            self._timer.arm(deadline)

    def _due(self) -> None:
        queue = self._queue
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, sink, data = queue.popleft()
            sink(data)
        if queue:
            self._timer.arm(queue[0][0])


# -- connections ---------------------------------------------------------------------------


class Counters:
    def __init__(self) -> None:
        self.connections = 0
        self.open = 0
        self.failed_connects = 0
        self.chunks_up = 0
        self.bytes_up = 0
        self.chunks_down = 0
        self.bytes_down = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


def _no_delay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Side(asyncio.Protocol):
    """One socket of a proxied connection; ``peer`` is the other side."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)
        _no_delay(transport)

    def write(self, data: bytes | None) -> None:
        """A sink: send ``data``, or close after what is buffered (``None``)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if data is None:
            transport.close()
        else:
            transport.write(data)

    # The peer cannot take more: stop reading this side until it can.
    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class ClientSide(_Side):
    """What the proxy accepted: its bytes go through the delay line to the target."""

    def __init__(self, proxy: Proxy) -> None:
        super().__init__()
        self._proxy = proxy
        # What falls due before the target is connected (a delay shorter than the connect;
        # uvloop starts reading before a pause_reading() in connection_made takes hold).
        self._early: list[bytes | None] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._proxy.counters.connections += 1
        self._proxy.counters.open += 1
        task = asyncio.get_running_loop().create_task(self._connect())
        self._proxy.tasks.add(task)
        task.add_done_callback(self._proxy.tasks.discard)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = self._proxy.target
        try:
            _, upstream = await loop.create_connection(
                lambda: TargetSide(self._proxy.counters), host, port
            )
        except OSError:
            self._proxy.counters.failed_connects += 1
            if self.transport is not None:
                self.transport.close()
            return
        upstream.peer, self.peer = self, upstream
        for data in self._early:
            upstream.write(data)
        self._early.clear()

    def _to_target(self, data: bytes | None) -> None:
        """The delay line's sink for this connection."""
        if self.peer is None:
            self._early.append(data)
        else:
            self.peer.write(data)

    def data_received(self, data: bytes) -> None:
        counters = self._proxy.counters
        counters.chunks_up += 1
        counters.bytes_up += len(data)
        self._proxy.line.push(self._to_target, data)

    def eof_received(self) -> bool | None:
        return None  # close our side; the target's side closes after the delay (below)

    def connection_lost(self, exc: Exception | None) -> None:
        self._proxy.counters.open -= 1
        self._proxy.line.push(self._to_target, None)


class TargetSide(_Side):
    """The proxy's connection to the target: its bytes go back to the client at once."""

    def __init__(self, counters: Counters) -> None:
        super().__init__()
        self._counters = counters

    def data_received(self, data: bytes) -> None:
        self._counters.chunks_down += 1
        self._counters.bytes_down += len(data)
        if self.peer is not None:
            self.peer.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None:
            self.peer.write(None)


class Proxy:
    def __init__(self, target: tuple[str, int], delay: float) -> None:
        self.target = target
        self.counters = Counters()
        self.tasks: set[asyncio.Task[None]] = set()
        self.line = DelayLine(asyncio.get_running_loop(), delay)


# -- command line --------------------------------------------------------------------------


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", type=_address, required=True, help="HOST:PORT to forward to")
    parser.add_argument(
        "--listen", type=_address, default=("127.0.0.1", 0), help="HOST:PORT (port 0: any free)"
    )
    parser.add_argument(
        "--delay-ms",
        type=float,
        default=1.0,
        help="round trip added to every exchange, in ms (held on the way to the target)",
    )
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    args = parser.parse_args(argv)
    if args.delay_ms < 0:
        parser.error("--delay-ms must be >= 0")
    return args


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    proxy = Proxy(args.target, args.delay_ms / 1000)
    server = await loop.create_server(
        lambda: ClientSide(proxy), args.listen[0], args.listen[1], backlog=1024
    )
    host, port = server.sockets[0].getsockname()[:2]
    announce: dict[str, Any] = {
        "listen": f"{host}:{port}",
        "target": f"{args.target[0]}:{args.target[1]}",
        "delay_ms": args.delay_ms,
        "timer": proxy.line.timer_name,
        "loop": type(loop).__module__.split(".")[0],
        "pid": os.getpid(),
    }
    print(json.dumps(announce), flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(
        signal.SIGUSR1, lambda: print(json.dumps(proxy.counters.as_dict()), flush=True)
    )
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if args.loop == "uvloop":
                print("uvloop is not installed", file=sys.stderr)
                return 2
        else:
            uvloop.run(serve(args))
            return 0
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
