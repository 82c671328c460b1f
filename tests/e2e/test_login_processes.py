"""Login processes end to end: a real ``strongroom server --workers 2`` on SQLite, its workers
passing new login connections (SCM_RIGHTS) to the server's login pool (strongroom.serving).

Which process serves a connection is observed, not guessed: ``/proc/net/tcp`` gives the inode of
the server side of a test's TCP connection and ``/proc/<pid>/fd`` tells which process of the
server holds it. That also lets a test pick the worker that accepts its connection (connect,
see who accepted it, keep it or try again) before it sends a byte, so "this worker's login
process" is a deterministic target even though the kernel spreads accepts unevenly.

One module-scoped server serves most tests; the tests with another configuration (no login
processes, ``--workers 1``) and the one that stops a server start others on the same database.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import resource
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from strongroom.db.engine import Database
from strongroom.serving.descriptors import DESCRIPTOR_TABLE_SLOTS
from strongroom.serving.handoff import BURST_WINDOW_SECONDS
from tests.e2e.server_process import ServerProcess
from tests.support.concurrency import HeldLock
from tests.support.moto_world import MotoWorld
from tests.support.signing import sign_get_caller_identity

pytestmark = pytest.mark.slow

LOGIN_MARK = ": login process "  # the process titles the supervisor gives its children
WORKER_MARK = ": worker "
LOGIN_PATH = "/v1/auth/login"
FORWARDED = "203.0.113.9"
HANDOFF_METRIC = re.compile(r'^strongroom_login_handoffs_total\{outcome="(\w+)"\} (\S+)$', re.M)


# -- processes, from /proc ------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of ``pid``, or None when it does not exist."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1])


def nice(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[16])


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """Any of its threads still running.

    Not just the process's own state: after SIGKILL the main thread can be a zombie while the
    other threads still exit, and the descriptors (a login process's socket pair) close only
    when the last one has.
    """
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for thread in threads:
        try:
            with open(f"/proc/{pid}/task/{thread}/stat") as stat:
                state = stat.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X"):
            return True
    return False


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None and stat[1] == pid and alive(int(entry)):
                found.append(int(entry))
    return found


def descendants(pid: int) -> list[int]:
    found = []
    for child in children(pid):
        found += [child, *descendants(child)]
    return found


def wait_until(condition: Any, timeout: float, message: str, interval: float = 0.05) -> Any:
    """Poll ``condition()`` until it returns something truthy (returned) or fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} (after {timeout} s)")
        time.sleep(interval)


# -- the server -----------------------------------------------------------------------------


class Server(ServerProcess):
    """``strongroom server`` with its output in a file, not a pipe: a login process that outlived
    its server would hold the pipe open and hang ``ServerProcess.stop`` in ``communicate()``.

    Every process seen in its tree is remembered, so :meth:`kill_leftovers` can clean up even
    after a failed test (by pid, only processes this server started).
    """

    def __init__(self, env: Mapping[str, str], *, workers: int, cwd: Path) -> None:
        super().__init__(env, workers=workers, cwd=cwd)
        # Only the settings given here (no STRONGROOM_TRUSTED_PROXIES from the caller's shell),
        # and each server its own metrics directory.
        self.env = {
            k: v
            for k, v in self.env.items()
            if k in env or not k.startswith(("STRONGROOM_", "PROMETHEUS_"))
        }
        self.log_path = cwd / f"server-{self.port}.log"
        self.seen: set[int] = set()

    @property
    def pid(self) -> int:
        assert self.process is not None, "server not running"
        return self.process.pid

    def _output_sink(self) -> AbstractContextManager[IO[bytes]]:
        return self.log_path.open("ab")

    def _started(self) -> None:
        self.tree()

    def output(self) -> str:
        return self.log()

    def stop(self) -> str:
        """SIGTERM, as ServerProcess does; the output so far."""
        process, self.process = self.process, None
        if process is not None:
            self.tree_of(process.pid)
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return self.log()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tree_of(self, pid: int) -> list[int]:
        found = descendants(pid)
        self.seen.update(found)
        return found

    def tree(self) -> list[int]:
        return [self.pid, *self.tree_of(self.pid)]

    def workers_pids(self) -> list[int]:
        return [pid for pid in children(self.pid) if WORKER_MARK in _cmdline(pid)]

    def login_processes(self) -> dict[int, int]:
        """{login process pid: its parent's pid (the supervisor)}."""
        found = {}
        for pid in self.tree():
            stat = _stat(pid)
            if stat is not None and LOGIN_MARK in _cmdline(pid):
                found[pid] = stat[1]
        return found

    def kill_leftovers(self) -> list[int]:
        """SIGKILL what is left of this server's processes; the pids that were still running."""
        left = [pid for pid in self.seen if alive(pid) and "strongroom" in _cmdline(pid)]
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return left


# -- raw HTTP/1.1 over a socket ------------------------------------------------------------


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class RawConnection:
    """One TCP connection, bytes in and out, and a tiny HTTP/1.x response reader."""

    sock: socket.socket
    buffer: bytes = field(default=b"")

    @classmethod
    def open(cls, port: int, timeout: float = 15) -> RawConnection:
        return cls(socket.create_connection(("127.0.0.1", port), timeout=timeout))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def response(self) -> RawResponse:
        """The next response (a ``100 Continue`` too); the socket timeout bounds the wait."""
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                raise AssertionError(f"connection closed before a response: {self.buffer!r}")
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if status < 200:
            return RawResponse(status, headers, b"")
        if "content-length" in headers:
            length = int(headers["content-length"])
            while len(self.buffer) < length:
                if not self._fill():
                    raise AssertionError("connection closed in the middle of a response body")
            body, self.buffer = self.buffer[:length], self.buffer[length:]
        else:
            while self._fill():
                pass
            body, self.buffer = self.buffer, b""
        return RawResponse(status, headers, body)

    def closed_by_server(self) -> bool:
        """True when the server closed the connection (EOF within the socket timeout)."""
        try:
            return not self.buffer and not self._fill()
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


def request_bytes(
    path: str,
    body: bytes,
    *,
    method: str = "POST",
    version: str = "1.1",
    headers: Mapping[str, str] | None = None,
) -> tuple[bytes, bytes]:
    """(request line and headers, body) of one request."""
    lines = [
        f"{method} {path} HTTP/{version}",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), body


def server_side_inode(connection: RawConnection, server_port: int) -> int:
    """The inode of the server's socket of ``connection`` (0 while it waits to be accepted)."""
    client_port = connection.sock.getsockname()[1]
    with open("/proc/net/tcp") as table:
        for line in table.read().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if local_port == server_port and remote_port == client_port:
                return int(fields[9])
    return 0


def holders(server: Server, connection: RawConnection) -> set[int]:
    """The server's processes that hold the server side of ``connection``."""
    inode = server_side_inode(connection, server.port)
    if not inode:
        return set()
    target = f"socket:[{inode}]"
    return socket_holders(server, target)


def socket_holders(server: Server, target: str) -> set[int]:
    """The server's processes with a descriptor on ``target`` (``socket:[inode]``)."""
    found = set()
    for pid in server.tree():
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                        found.add(pid)
    return found


def wait_handed_over(server: Server, connection: RawConnection) -> int:
    """Until one login process, and no worker, holds the connection; that login process."""
    logins = set(server.login_processes())

    def holder() -> int | None:
        found = holders(server, connection)
        return found.pop() if len(found) == 1 and found <= logins else None

    pid: int = wait_until(holder, 10, "connection not handed over to a login process")
    return pid


def listening_holders(server: Server) -> set[int]:
    """The server's processes that hold its listening socket."""
    with open("/proc/net/tcp") as table:
        for line in table.read().splitlines()[1:]:
            fields = line.split()
            port = int(fields[1].rsplit(":", 1)[1], 16)
            if port == server.port and fields[3] == "0A":  # TCP_LISTEN
                target = f"socket:[{fields[9]}]"
                break
        else:
            return set()
    return socket_holders(server, target)


def connect_to_worker(server: Server, worker: int, timeout: float = 15) -> RawConnection:
    """A connection accepted by ``worker`` (nothing sent yet, so no routing decided yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        connection = RawConnection.open(server.port)
        accepted_by = wait_until(
            lambda c=connection: holders(server, c), 5, "connection never accepted", 0.005
        )
        if worker in accepted_by:
            return connection
        connection.close()
    raise AssertionError(f"no connection accepted by worker {worker} in {timeout} s")


# -- the API --------------------------------------------------------------------------------


def handoffs(url: str) -> dict[str, float]:
    """strongroom_login_handoffs_total by outcome, from /metrics (all workers)."""
    response = httpx.get(url + "/metrics", timeout=10)
    assert response.status_code == 200, response.text
    counts = dict.fromkeys(
        (
            "login_process",
            "login_process_queued",
            "worker_idle",
            "worker_busy",
            "worker_not_ready",
        ),
        0.0,
    )
    counts.update({k: float(v) for k, v in HANDOFF_METRIC.findall(response.text)})
    return counts


def settled_login_requests(url: str) -> float:
    """login_requests once it stays put: a process counts a request after its response has
    left, so a login answered a moment ago may not be counted yet."""
    last = login_requests(url)
    while True:
        time.sleep(0.2)
        now = login_requests(url)
        if now == last:
            return now
        last = now


def wait_login_requests(url: str, expected: float) -> None:
    wait_until(lambda: login_requests(url) == expected, 5, f"logins counted != {expected}")
    assert settled_login_requests(url) == expected


def login_requests(url: str) -> float:
    """strongroom_http_requests_total of successful logins, from /metrics."""
    text = httpx.get(url + "/metrics", timeout=10).text
    pattern = r'^strongroom_http_requests_total\{route="/v1/auth/login",status="200"\} (\S+)$'
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else 0.0


def sts_round_trips(url: str) -> float:
    """STS round trips that got an answer (strongroom_sts_request_seconds), from /metrics."""
    text = httpx.get(url + "/metrics", timeout=10).text
    pattern = r'^strongroom_sts_request_seconds_count\{outcome="answered"\} (\S+)$'
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else 0.0


def key_login_body(access_id: str, access_key: str) -> bytes:
    return json.dumps(
        {"access_id": access_id, "access_type": "access_key", "access_key": access_key}
    ).encode()


def fresh_login(url: str, body: bytes, **headers: str) -> httpx.Response:
    """POST /v1/auth/login on a connection of its own (httpx.post opens a new one)."""
    return httpx.post(
        url + LOGIN_PATH,
        content=body,
        headers={"Content-Type": "application/json", **headers},
        timeout=15,
    )


def login_via_worker(server: Server, worker: int, body: bytes) -> RawResponse:
    """A login on a new connection accepted by ``worker``."""
    connection = connect_to_worker(server, worker)
    try:
        head, payload = request_bytes(LOGIN_PATH, body)
        connection.send(head + payload)
        return connection.response()
    finally:
        connection.close()


def login_taken_by(server: Server, worker: int, body: bytes) -> tuple[RawResponse, int | None]:
    """A login on a new connection accepted by ``worker``; the login process that took it
    (None: the worker served it, or it could not be told which process did)."""
    logins = set(server.login_processes())
    connection = connect_to_worker(server, worker)
    try:
        head, payload = request_bytes(LOGIN_PATH, body)
        connection.send(head)
        taken_by = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = holders(server, connection)
            if len(found) == 1 and found <= logins:
                taken_by = found.pop()
                break
            if found == {worker} and time.monotonic() > deadline - 9.5:
                break  # still the worker's after 0.5 s: it serves this one itself
            time.sleep(0.005)  # (nobody holds it while it is in flight on the socket pair)
        connection.send(payload)
        response = connection.response()
    finally:
        connection.close()
    if response.headers.get("connection") != "close":
        taken_by = None
    return response, taken_by


def wait_for_handoffs(server: Server, body: bytes, timeout: float = 20) -> None:
    """Until every login process of the server has taken a login connection from a worker.

    A login process announces itself ready shortly after the workers are. Each worker passes
    logins round robin over the pool, so logins through the workers in turn reach every login
    process. Then the counter: a fresh login raises ``outcome="login_process"``.
    """
    deadline = time.monotonic() + timeout
    processes = server.login_processes()
    assert processes, "no login process"
    workers = server.workers_pids()
    taken: set[int] = set()
    attempt = 0
    while waiting := [pid for pid in processes if pid not in taken]:
        assert time.monotonic() < deadline, f"login processes {waiting} took no login"
        attempt += 1
        response, taken_by = login_taken_by(server, workers[attempt % len(workers)], body)
        assert response.status == 200, response.body
        if taken_by is None:
            time.sleep(0.1)
        else:
            taken.add(taken_by)
    before = handoffs(server.url)["login_process"]
    while True:
        assert fresh_login(server.url, body).status_code == 200
        if handoffs(server.url)["login_process"] > before:
            return
        assert time.monotonic() < deadline, f"counter did not move in {timeout} s"
        time.sleep(0.1)


@dataclass
class Stack:
    server: Server
    env: dict[str, str]
    root: Path
    admin_body: bytes
    admin: httpx.Client  # keep-alive, bearer token of the bootstrap admin

    @property
    def url(self) -> str:
        return self.server.url

    def audit_event(self, request_id: str) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            events = self.admin.get("/v1/audit", params={"limit": 1000}).json()["events"]
            return next((e for e in events if e["request_id"] == request_id), None)

        event: dict[str, Any] = wait_until(find, 10, f"no audit event {request_id}", 0.1)
        return event


@pytest.fixture(scope="module")
def stack(moto: MotoWorld, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("login-processes")
    env = {
        "STRONGROOM_DATABASE_URL": f"sqlite:///{root / 'strongroom.db'}",
        "STRONGROOM_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "STRONGROOM_STS_EXTRA_ENDPOINTS": moto.server.url,
        "STRONGROOM_LOG_FORMAT": "json",
        "STRONGROOM_LOGIN_PROCESSES": "1",
        # These tests are about the handoff itself: every fresh login goes to a login process,
        # even on an idle worker (the idle-worker path has tests of its own, at the end).
        "STRONGROOM_LOGIN_INLINE_WHEN_IDLE": "false",
        # A few tests fail logins from 127.0.0.1 on purpose; keep the 429 brake out of the way.
        "STRONGROOM_LOGIN_FAILURE_LIMIT": "100000",
    }
    server = Server(env, workers=2, cwd=root)
    credentials = server.bootstrap()
    admin_body = key_login_body(credentials["access_id"], credentials["access_key"])
    server.start()
    try:
        with server.client_as(credentials) as admin:
            wait_for_handoffs(server, admin_body)
            yield Stack(server, env, root, admin_body, admin)
    finally:
        log = server.stop()
        left = server.kill_leftovers()
        assert not left, f"processes left running after the server stopped: {left}"
        assert "Traceback" not in log, log
        assert credentials["access_key"] not in log


def descriptor_slots(pid: int) -> int:
    """The size of a process's descriptor table (FDSize in /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("FDSize:"):
            return int(line.split()[1])
    raise AssertionError(f"no FDSize for {pid}")


def open_files_limit() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return DESCRIPTOR_TABLE_SLOTS if soft == resource.RLIM_INFINITY else soft


def other_server(stack: Stack, workers: int, **env: str) -> Server:
    """Another server on the same database (already bootstrapped), not started."""
    return Server({**stack.env, **env}, workers=workers, cwd=stack.root)


# -- the tests ------------------------------------------------------------------------------


def test_one_login_pool_per_server_at_a_lower_priority(stack: Stack) -> None:
    processes = stack.server.login_processes()
    workers = stack.server.workers_pids()
    assert len(workers) == 2
    # STRONGROOM_LOGIN_PROCESSES=1: one for the server, forked by the supervisor as the
    # workers are.
    assert list(processes.values()) == [stack.server.pid]
    for pid in processes:
        # STRONGROOM_LOGIN_PROCESS_SCHEDULING=idle (the default): SCHED_IDLE, in the workers'
        # session (hence CPU group), where a waking worker preempts it at once.
        assert os.sched_getscheduler(pid) == os.SCHED_IDLE
        for worker in workers:
            assert os.sched_getscheduler(worker) == os.SCHED_OTHER
            assert os.getsid(pid) == os.getsid(worker)
        # All sized their descriptor tables at start-up (serving/descriptors.py).
        for process in (pid, *workers):
            assert descriptor_slots(process) >= min(DESCRIPTOR_TABLE_SLOTS, open_files_limit())


def assert_nice_in_a_session_of_its_own(pid: int, worker: int) -> None:
    """STRONGROOM_LOGIN_PROCESS_SCHEDULING=nice: STRONGROOM_LOGIN_PROCESS_NICE (10) steps
    lower, in a session, hence a CPU group ("autogroup"), of its own at that priority."""
    assert os.sched_getscheduler(pid) == os.SCHED_OTHER
    assert nice(pid) == min(19, nice(worker) + 10)
    assert os.getsid(pid) == pid != os.getsid(worker)
    autogroup = Path(f"/proc/{pid}/autogroup")
    if autogroup.exists():  # kernels built with autogroup
        assert autogroup.read_text().split()[-1] == "10"
        assert autogroup.read_text() != Path(f"/proc/{worker}/autogroup").read_text()


def test_kept_connections_are_spread_evenly_over_the_workers(stack: Stack) -> None:
    """A client pool's (or a load balancer's) kept connections, opened one after the other:
    each worker takes its share (serving/balanced_accept.py). Left to the event loop, the
    worker that woke first took whatever was waiting: sixteen landed 11 and 5, or 10 and 6."""
    server = stack.server
    workers = server.workers_pids()
    connections: list[RawConnection] = []
    try:
        for _ in range(16):
            connection = RawConnection.open(server.port)
            connections.append(connection)
            connection.send(b"GET /v1/sys/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert connection.response().status == 200
        held = [sum(1 for c in connections if holders(server, c) == {worker}) for worker in workers]
        assert sum(held) == 16
        # Even, give or take a connection: the module's other kept connections (the admin's)
        # count towards the shares too.
        assert max(held) - min(held) <= 2, held
    finally:
        for connection in connections:
            connection.close()


def test_fresh_login_is_served_by_a_login_process(stack: Stack) -> None:
    before = handoffs(stack.url)
    requests_before = settled_login_requests(stack.url)
    with httpx.Client(base_url=stack.url, timeout=15) as client:
        login = client.post(
            LOGIN_PATH, content=stack.admin_body, headers={"Content-Type": "application/json"}
        )
        assert login.status_code == 200, login.text
        assert login.headers["connection"] == "close"
        assert login.json()["token"].startswith("t-")
        # The same client, a new connection (the last one was closed): a worker serves it.
        described = client.get(
            "/v1/auth/token", headers={"Authorization": f"Bearer {login.json()['token']}"}
        )
        assert described.status_code == 200, described.text
        assert "connection" not in described.headers
    after = handoffs(stack.url)
    assert after["login_process"] == before["login_process"] + 1
    assert after["worker_not_ready"] == before["worker_not_ready"]
    assert after["worker_busy"] == before["worker_busy"]
    # The login process's own metrics reach /metrics too (the workers' multiprocess directory).
    wait_login_requests(stack.url, requests_before + 1)


def test_aws_iam_login_through_a_login_process(stack: Stack, moto: MotoWorld) -> None:
    admin = stack.admin

    def call(method: str, path: str, **kwargs: Any) -> Any:
        response = admin.request(method, path, **kwargs)
        assert response.status_code < 400, response.text
        return response.json() if response.content else None

    method = call(
        "POST",
        "/v1/auth-methods",
        json={
            "type": "aws_iam",
            "name": "iamHandoff",
            "bound_aws_account_id": ["123456789012"],
            "bound_role_name": ["app-role"],
            "sts_url": moto.server.url,
        },
    )
    call("POST", "/v1/roles", json={"name": "handoffApps"})
    call(
        "PUT",
        "/v1/roles/handoffApps/rules",
        json={"path": "/handoff/{{role_name}}/*", "capabilities": ["read"]},
    )
    call(
        "POST",
        "/v1/roles/handoffApps/associations",
        json={"auth_method": "iamHandoff", "sub_claims": {"role_name": ["app-*"]}},
    )
    for name in ("/handoff/app-role/db", "/handoff/other-role/db"):
        call("POST", "/v1/secrets", json={"name": name, "value": f"value of {name}"})

    before = handoffs(stack.url)["login_process"]
    sts_before = sts_round_trips(stack.url)
    signed = sign_get_caller_identity(moto.app.credentials, url=moto.server.url + "/")
    body = {"access_id": method["access_id"], "access_type": "aws_iam"}
    login = fresh_login(stack.url, json.dumps({**body, "cloud_id": signed["cloud_id"]}).encode())
    assert login.status_code == 200, login.text
    assert login.headers["connection"] == "close"
    assert handoffs(stack.url)["login_process"] == before + 1
    # Its STS round trip is timed in the login process and shows in the workers' /metrics.
    assert sts_round_trips(stack.url) == sts_before + 1
    answer = login.json()
    assert answer["roles"] == ["handoffApps"]
    assert answer["identity"] == {
        "account_id": "123456789012",
        "arn": moto.app.arn,
        "role_name": "app-role",
        "role_id": moto.app.user_id.split(":")[0],
        "resource_id": "i-0abc1234567890def",
    }
    token = {"Authorization": f"Bearer {answer['token']}"}
    read = httpx.get(stack.url + "/v1/secrets/handoff/app-role/db", headers=token, timeout=15)
    assert read.status_code == 200, read.text
    assert read.json()["value"] == "value of /handoff/app-role/db"
    other = httpx.get(stack.url + "/v1/secrets/handoff/other-role/db", headers=token, timeout=15)
    assert other.status_code == 403

    # The same signed request again: the login process refuses the replay like a worker would.
    replay = fresh_login(stack.url, json.dumps({**body, "cloud_id": signed["cloud_id"]}).encode())
    assert replay.status_code == 401, replay.text


def test_login_body_sent_later_is_read_by_the_login_process(stack: Stack) -> None:
    head, body = request_bytes(LOGIN_PATH, stack.admin_body)
    connection = RawConnection.open(stack.server.port)
    try:
        connection.send(head)  # request line and headers; the body follows later
        # The connection moves to a login process, and the worker lets go of it.
        wait_handed_over(stack.server, connection)
        time.sleep(0.2)
        connection.send(body)
        response = connection.response()
        assert response.status == 200, response.body
        assert response.headers["connection"] == "close"
        assert response.json()["token"].startswith("t-")
        assert connection.closed_by_server()
    finally:
        connection.close()


def test_body_in_several_pieces_and_expect_100_continue(stack: Stack) -> None:
    # curl sends "Expect: 100-continue" for bodies over 1 KiB (AWS IAM logins are bigger).
    head, body = request_bytes(LOGIN_PATH, stack.admin_body, headers={"Expect": "100-continue"})
    connection = RawConnection.open(stack.server.port)
    try:
        connection.send(head)
        interim = connection.response()
        assert interim.status == 100
        for start in range(0, len(body), 16):
            connection.send(body[start : start + 16])
            time.sleep(0.01)
        response = connection.response()
        assert response.status == 200, response.body
        assert response.headers["connection"] == "close"
    finally:
        connection.close()


def test_http_1_0_login_is_served_by_a_login_process(stack: Stack) -> None:
    before = handoffs(stack.url)["login_process"]
    head, body = request_bytes(LOGIN_PATH, stack.admin_body, version="1.0")
    connection = RawConnection.open(stack.server.port)
    try:
        connection.send(head + body)
        response = connection.response()
        assert response.status == 200, response.body
        assert response.headers["connection"] == "close"
        assert connection.closed_by_server()
    finally:
        connection.close()
    assert handoffs(stack.url)["login_process"] == before + 1


def test_login_on_a_keep_alive_connection_is_served_by_the_worker(stack: Stack) -> None:
    before = handoffs(stack.url)
    with httpx.Client(base_url=stack.url, timeout=15) as client:
        assert client.get("/v1/sys/health").status_code == 200
        login = client.post(
            LOGIN_PATH, content=stack.admin_body, headers={"Content-Type": "application/json"}
        )
        assert login.status_code == 200, login.text
        assert "connection" not in login.headers
        # Still the same connection: one more request on it.
        assert client.get("/v1/sys/health").status_code == 200
    after = handoffs(stack.url)
    assert after == before  # not a new connection's first request: no routing decision


@pytest.mark.parametrize(
    ("request_data", "expected"),
    [
        pytest.param(b"POST /v1/auth/login HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400, id="cl"),
        pytest.param(
            b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400, id="header"
        ),
        pytest.param(
            b"POST /v1/auth/login HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            400,
            id="chunk-size",
        ),
        pytest.param(
            b"POST /v1/auth/login HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            400,
            id="two-content-lengths",
        ),
        pytest.param(
            b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n{not json",
            400,
            id="body-not-json",
        ),
        pytest.param(
            b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
            400,
            id="body-empty-object",
        ),
        pytest.param(
            b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 9999999\r\n\r\n{",
            413,
            id="body-too-large",
        ),
    ],
)
def test_malformed_login_requests_get_a_4xx(
    stack: Stack, request_data: bytes, expected: int
) -> None:
    before = handoffs(stack.url)["login_process"]
    connection = RawConnection.open(stack.server.port, timeout=10)
    try:
        connection.send(request_data)
        response = connection.response()
        assert response.status == expected, (response.status, response.body)
        assert connection.closed_by_server()
    finally:
        connection.close()
    assert handoffs(stack.url)["login_process"] == before + 1
    assert httpx.get(stack.url + "/v1/sys/health", timeout=10).status_code == 200


@pytest.mark.parametrize("served_by", ["login_process", "worker"])
def test_client_gone_mid_body_is_audited_as_499(stack: Stack, served_by: str) -> None:
    """A client that sends a login's headers and part of its body, then hangs up (a client
    timeout, a dropped link), is not a server error: audited as 499, no error log."""
    server = stack.server
    last_seq = stack.admin.get("/v1/audit", params={"limit": 1}).json()["events"][0]["seq"]
    log_before = len(server.log())
    head, body = request_bytes(LOGIN_PATH, stack.admin_body)
    connection = RawConnection.open(server.port)
    try:
        if served_by == "worker":
            connection.send(b"GET /v1/sys/health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert connection.response().status == 200
            connection.send(head + body[:10])
            time.sleep(0.2)
            assert holders(server, connection) <= set(server.workers_pids())
        else:
            connection.send(head + body[:10])
            wait_handed_over(server, connection)
        time.sleep(0.1)  # the app is waiting for the rest of the body
    finally:
        connection.close()

    def login_events() -> list[tuple[int, str]]:
        events = stack.admin.get("/v1/audit", params={"limit": 100}).json()["events"]
        return [
            (e["status"], e["reason"])
            for e in events
            if e["seq"] > last_seq and e["action"] == "auth.login"
        ]

    wait_until(login_events, 10, "no audit event for the abandoned login", 0.1)
    assert [status for status, _ in login_events()] == [499]
    assert "unhandled error" not in server.log()[log_before:]


def test_forwarded_for_from_loopback_is_not_trusted(stack: Stack) -> None:
    spoofed = {"X-Forwarded-For": FORWARDED}
    # Served by a worker (a keep-alive connection's request that is not a login).
    described = stack.admin.get("/v1/auth/token", headers=spoofed)
    assert described.status_code == 200
    assert "connection" not in described.headers
    event = stack.audit_event(described.headers["x-request-id"])
    assert event["source_ip"] == "127.0.0.1"

    # Served by a login process.
    login = fresh_login(stack.url, stack.admin_body, **spoofed)
    assert login.status_code == 200, login.text
    assert login.headers["connection"] == "close"
    event = stack.audit_event(login.headers["x-request-id"])
    assert event["action"] == "auth.login"
    assert event["source_ip"] == "127.0.0.1"

    # A login process does not let the header unlock bound_ips either.
    created = stack.admin.post(
        "/v1/auth-methods",
        json={"type": "api_key", "name": "boundToDocNet", "bound_ips": ["203.0.113.0/24"]},
    ).json()
    bound = key_login_body(created["access_id"], created["access_key"])
    refused = fresh_login(stack.url, bound, **spoofed)
    assert refused.status_code == 401, refused.text
    assert refused.headers["connection"] == "close"
    event = stack.audit_event(refused.headers["x-request-id"])
    assert event["source_ip"] == "127.0.0.1"
    assert "bound_ips" in event["reason"]


def test_killed_login_process_is_restarted(stack: Stack) -> None:
    server = stack.server
    processes = server.login_processes()
    assert len(processes) == 1
    victim = next(iter(processes))
    worker = server.workers_pids()[0]
    before = handoffs(stack.url)

    os.kill(victim, signal.SIGKILL)
    # Wait until the supervisor has reaped it (and so marked it not ready): a connection
    # passed to a login process that is still exiting is lost with it. Then at once: the
    # worker serves the login itself (the restart waits 0.5 s, and the new process takes a
    # moment to build its app).
    wait_until(
        lambda: not Path(f"/proc/{victim}").exists(),
        10,
        "the killed login process not reaped",
        0.001,
    )
    response = login_via_worker(server, worker, stack.admin_body)
    assert response.status == 200, response.body
    assert "connection" not in response.headers
    assert handoffs(stack.url)["worker_not_ready"] > before["worker_not_ready"]

    deadline = time.monotonic() + 30
    while True:  # logins keep working throughout, until the new login process takes them
        response = login_via_worker(server, worker, stack.admin_body)
        assert response.status == 200, response.body
        if response.headers.get("connection") == "close":
            break
        assert time.monotonic() < deadline, "no handoff from the restarted login process"
        time.sleep(0.1)
    new = next(iter(server.login_processes()))
    assert new != victim
    assert not alive(victim)
    # And a fresh login's connection ends up in the new process when it lands on that worker.
    connection = connect_to_worker(server, worker)
    try:
        head, body = request_bytes(LOGIN_PATH, stack.admin_body)
        connection.send(head)
        wait_until(lambda: holders(server, connection) == {new}, 10, "not in the new process")
        connection.send(body)
        response = connection.response()
        assert response.status == 200, response.body
        assert response.headers["connection"] == "close"
    finally:
        connection.close()
    exited = [line for line in server.log().splitlines() if "login_process_exited" in line]
    assert exited
    assert json.loads(exited[-1])["signal"] == "SIGKILL"


def test_a_killed_worker_is_replaced_and_the_login_pool_stays(stack: Stack) -> None:
    server = stack.server
    processes = server.login_processes()
    worker = server.workers_pids()[0]
    os.kill(worker, signal.SIGKILL)
    # The supervisor forks a new worker, which hands logins to the same pool.
    wait_until(
        lambda: len(server.workers_pids()) == 2 and worker not in server.workers_pids(),
        30,
        "no new worker",
    )
    assert server.login_processes() == processes
    wait_for_handoffs(server, stack.admin_body)
    exited = [line for line in server.log().splitlines() if "worker_exited" in line]
    assert exited
    assert json.loads(exited[-1])["signal"] == "SIGKILL"
    assert json.loads(exited[-1])["pid"] == worker


def test_a_worker_killed_before_chaining_its_journal_loses_no_audit_event(
    stack: Stack,
) -> None:
    """Reads are answered while another writer holds SQLite's write lock (their events wait in
    the worker's audit journal); the worker then dies before it could chain them. The worker
    uvicorn starts in its place chains them: none is lost, and the chain verifies."""
    server = stack.server
    worker = server.workers_pids()[0]
    token = stack.admin.headers["Authorization"]
    database = Database.from_url(stack.env["STRONGROOM_DATABASE_URL"])
    request_ids = []
    try:
        with HeldLock(database):
            for _ in range(3):
                connection = connect_to_worker(server, worker)
                head, body = request_bytes(
                    "/v1/auth-methods", b"", method="GET", headers={"Authorization": token}
                )
                connection.send(head + body)
                answer = connection.response()
                connection.close()
                assert answer.status == 200, answer.body
                request_ids.append(answer.headers["x-request-id"])
            journals = list(Path(stack.root / "strongroom.db.audit-journal").glob("*.jsonl"))
            assert any(f"{worker}-" in path.name for path in journals)
            os.kill(worker, signal.SIGKILL)
            wait_until(lambda: not alive(worker), 15, "the worker outlived SIGKILL")
    finally:
        database.dispose()
    wait_until(lambda: len(server.workers_pids()) == 2, 30, "no new worker")
    for request_id in request_ids:
        assert stack.audit_event(request_id)["outcome"] == "success"
    assert not any(
        f"{worker}-" in path.name
        for path in Path(stack.root / "strongroom.db.audit-journal").iterdir()
    )
    verify = server.run_cli("audit", "verify", "--json")
    assert json.loads(verify.stdout)["ok"] is True
    wait_for_handoffs(server, stack.admin_body)


def test_no_login_processes_when_disabled(stack: Stack) -> None:
    server = other_server(stack, workers=2, STRONGROOM_LOGIN_PROCESSES="0")
    server.start()
    try:
        assert len(server.workers_pids()) == 2
        assert server.login_processes() == {}
        for _ in range(3):
            login = fresh_login(server.url, stack.admin_body)
            assert login.status_code == 200, login.text
            assert "connection" not in login.headers
        assert server.login_processes() == {}
        assert set(handoffs(server.url).values()) == {0.0}
    finally:
        log = server.stop()
        assert not server.kill_leftovers()
    assert "Traceback" not in log, log


@pytest.mark.parametrize(
    ("scheduling", "every_process"),
    [
        # Told through the main process only, login processes in sessions of their own.
        ("nice", False),
        # SIGTERM to every process at once, as systemd's stop (KillMode=control-group) does.
        ("idle", True),
    ],
)
def test_stopping_the_server_stops_its_login_processes(
    stack: Stack, scheduling: str, every_process: bool
) -> None:
    server = other_server(
        stack,
        workers=2,
        STRONGROOM_LOGIN_PROCESSES="2",
        STRONGROOM_LOGIN_PROCESS_SCHEDULING=scheduling,
    )
    server.start()
    try:
        wait_for_handoffs(server, stack.admin_body)
        processes = server.login_processes()
        workers = server.workers_pids()
        assert len(processes) == 2  # STRONGROOM_LOGIN_PROCESSES: the server's, not per worker
        if scheduling == "nice":
            for pid in processes:
                assert_nice_in_a_session_of_its_own(pid, workers[0])

        # A login that a login process holds when the server is told to stop is still answered.
        head, body = request_bytes(LOGIN_PATH, stack.admin_body)
        connection = RawConnection.open(server.port)
        try:
            connection.send(head)
            holder = wait_handed_over(server, connection)
            assert server.process is not None
            main = server.process
            main.terminate()
            if every_process:
                for pid in [*workers, *processes]:
                    os.kill(pid, signal.SIGTERM)
            # The workers stop listening and exit; then the supervisor closes the pool's
            # sockets: the login processes are draining when the body arrives.
            wait_until(
                lambda: not listening_holders(server) & set(workers), 15, "workers still listen"
            )
            time.sleep(0.2)
            assert alive(holder)
            connection.send(body)
            response = connection.response()
            assert response.status == 200, response.body
            assert response.headers["connection"] == "close"
        finally:
            connection.close()

        assert main.wait(timeout=20) == 0
        log = server.stop()
        wait_until(
            lambda: not any(alive(pid) for pid in [*processes, *workers]),
            15,
            f"still running: {[p for p in [*processes, *workers] if alive(p)]}",
        )
    finally:
        server.stop()
        left = server.kill_leftovers()
    assert not left, left
    assert "Traceback" not in log, log


def test_stopping_while_login_processes_start_is_quiet(stack: Stack) -> None:
    server = other_server(stack, workers=1)
    server.start()
    try:
        # Started in the worker's lifespan, before it is ready; a login process needs a couple
        # of seconds more (imports, its own app): stopped now, it is still starting.
        processes = server.login_processes()
        assert processes
        log = server.stop()
        wait_until(lambda: not any(alive(pid) for pid in processes), 15, "still running")
    finally:
        server.stop()
        left = server.kill_leftovers()
    assert not left, left
    assert "Traceback" not in log, log


@contextlib.contextmanager
def started(server: Server, until_ready: Callable[[], None]) -> Iterator[Server]:
    """Start ``server``, wait with ``until_ready``; at the end stop it and check that it left
    no process and no traceback behind."""
    server.start()
    try:
        until_ready()
        yield server
    finally:
        log = server.stop()
        left = server.kill_leftovers()
        assert not left, left
        assert "Traceback" not in log, log


@pytest.fixture(scope="module")
def single(stack: Stack) -> Iterator[Server]:
    """``--workers 1``: one worker and one login process, both forked by the supervisor;
    stopped (and checked for leftovers) at the end of the module."""
    server = other_server(stack, workers=1)
    with started(server, lambda: wait_for_handoffs(server, stack.admin_body)):
        yield server


def test_single_worker_hands_logins_over(single: Server, stack: Stack) -> None:
    assert len(single.workers_pids()) == 1
    assert list(single.login_processes().values()) == [single.pid]
    before = handoffs(single.url)["login_process"]
    login = fresh_login(single.url, stack.admin_body)
    assert login.status_code == 200, login.text
    assert login.headers["connection"] == "close"
    assert handoffs(single.url)["login_process"] == before + 1


def test_single_worker_metrics_count_logins_served_by_login_processes(
    single: Server, stack: Stack
) -> None:
    before = settled_login_requests(single.url)
    login = fresh_login(single.url, stack.admin_body)
    assert login.status_code == 200, login.text
    assert login.headers["connection"] == "close"
    wait_login_requests(single.url, before + 1)


# -- an idle worker serves a login itself (STRONGROOM_LOGIN_INLINE_WHEN_IDLE, the default) ----


@pytest.fixture(scope="module")
def inline(stack: Stack) -> Iterator[Server]:
    """``--workers 1`` with the default policy: an idle worker keeps a fresh login."""
    server = other_server(stack, workers=1, STRONGROOM_LOGIN_INLINE_WHEN_IDLE="true")

    def handed_over() -> bool:
        response = fresh_login_while_busy(server, stack.admin_body)
        return bool(response.headers.get("connection") == "close")

    def ready() -> None:
        wait_until(handed_over, 30, "the login process never took a login", 0.2)
        # That handoff began a burst, during which an idle worker hands logins over too.
        time.sleep(2 * BURST_WINDOW_SECONDS)

    with started(server, ready):
        yield server


def test_an_idle_worker_serves_a_fresh_login_itself(inline: Server, stack: Stack) -> None:
    before = handoffs(inline.url)
    login = fresh_login(inline.url, stack.admin_body)
    assert login.status_code == 200, login.text
    # A login process always closes; the worker keeps the connection alive.
    assert "connection" not in login.headers
    after = handoffs(inline.url)
    assert after["worker_idle"] == before["worker_idle"] + 1
    assert after["login_process"] == before["login_process"]
    described = httpx.get(
        inline.url + "/v1/auth/token",
        headers={"Authorization": f"Bearer {login.json()['token']}"},
        timeout=15,
    )
    assert described.status_code == 200, described.text


def test_an_idle_worker_serves_an_aws_login_with_its_own_sts_client(
    inline: Server, stack: Stack, moto: MotoWorld
) -> None:
    """The inline path's own STS client, reads and non-blocking mint, against moto with
    signatures on; a replay of the same signed request is refused there too."""
    created = stack.admin.post(
        "/v1/auth-methods",
        json={
            "type": "aws_iam",
            "name": "iamInline",
            "bound_aws_account_id": ["123456789012"],
            "bound_role_name": ["app-role"],
            "sts_url": moto.server.url,
        },
    )
    assert created.status_code < 400, created.text
    signed = sign_get_caller_identity(moto.app.credentials, url=moto.server.url + "/")
    body = json.dumps(
        {
            "access_id": created.json()["access_id"],
            "access_type": "aws_iam",
            "cloud_id": signed["cloud_id"],
        }
    ).encode()
    before = handoffs(inline.url)["worker_idle"]
    first = fresh_login(inline.url, body)
    assert first.status_code == 200, first.text
    assert "connection" not in first.headers
    assert first.json()["identity"]["role_name"] == "app-role"
    assert handoffs(inline.url)["worker_idle"] == before + 1
    replay = fresh_login(inline.url, body)
    assert replay.status_code == 401, replay.text


def fresh_login_while_busy(server: Server, body: bytes) -> httpx.Response:
    """A fresh login while a request is in progress on the (only) worker: a login on a
    kept-alive connection (so the worker serves it), its body still awaited."""
    pending = RawConnection.open(server.port)
    try:
        pending.send(b"GET /v1/sys/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert pending.response().status == 200
        head, rest = request_bytes(LOGIN_PATH, body)
        pending.send(head + rest[:5])
        time.sleep(0.1)
        return fresh_login(server.url, body)
    finally:
        pending.close()


def test_a_busy_worker_hands_a_fresh_login_over(inline: Server, stack: Stack) -> None:
    before = handoffs(inline.url)
    login = fresh_login_while_busy(inline, stack.admin_body)
    assert login.status_code == 200, login.text
    assert login.headers["connection"] == "close"
    after = handoffs(inline.url)
    assert after["login_process"] == before["login_process"] + 1
    assert after["worker_idle"] == before["worker_idle"]
