"""Where one AWS IAM login spends its time, step by step, in-process (companion of login.py).

    .venv/bin/python bench/login_steps.py [--iterations 300]

Builds the real app (``create_app``) on SQLite in a temp dir, with moto's STS on loopback
(signature checks on, a role assumed), and drives the real ``LoginService`` of that app one
step at a time on a uvloop event loop, as a uvicorn worker does: each iteration logs in with a
freshly signed request and times every step separately, plus the cost of one thread hop
(``asyncio.to_thread`` of a no-op) and the same GetCallerIdentity POSTed to moto with the same
pooled httpx client (the STS round trip alone). The database steps alternate between a thread
hop (as the service does) and an inline call, so the hop's share shows. Then a batch of full
``LoginService.login`` calls for the total.

Prints a table of p50/p99 per step (ms); writes bench/results/login_steps-<timestamp>.json.
Traffic goes to 127.0.0.1 only; moto is stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import secrets
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from aws_sts import MotoSts, sign_get_caller_identity
from processes import Processes

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"


class _Steps:
    """Times consecutive steps of one iteration."""

    def __init__(self, *, hop: bool) -> None:
        self.hop = hop
        self.suffix = " (to_thread)" if hop else " (inline)"
        self.marks: list[tuple[str, float]] = []
        self._t = time.perf_counter()

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.marks.append((name, now - self._t))
        self._t = now

    async def db(self, name: str, fn: Any, *args: Any) -> Any:
        result = await asyncio.to_thread(fn, *args) if self.hop else fn(*args)
        self.mark(name + self.suffix)
        return result


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


async def measure(iterations: int, moto_url: str, credentials: Any, tmp: Path) -> dict[str, Any]:
    from strongroom.api.app import create_app
    from strongroom.api.services import json_response
    from strongroom.audit.event import AuditEvent
    from strongroom.auth.aws_iam import (
        check_bounds,
        claims_from_identity,
        decode_cloud_id,
        vet_sts_request,
    )
    from strongroom.auth.schemas import LoginRequest
    from strongroom.auth.service import SignatureSpend, _bounds_of
    from strongroom.auth_methods.schemas import AwsIamAuthMethodCreate
    from strongroom.config import Settings
    from strongroom.kit.clock import utc_now
    from strongroom.request_context import RequestContext
    from strongroom.serving.placement import Placement

    settings = Settings(
        database_url=f"sqlite:///{tmp / 'db.sqlite'}",
        master_key=base64.b64encode(secrets.token_bytes(32)).decode(),
        sts_extra_endpoints=[moto_url],
        log_level="WARNING",
    )
    # As in a login process: logins run on the caller's loop (no login thread).
    app = create_app(settings, placement=Placement.in_process(login_thread=False))
    services = app.state.services
    event = AuditEvent(time=utc_now(), request_id="r-setup", source_ip="127.0.0.1", action="x")
    created = services.auth_methods.create(
        None,
        AwsIamAuthMethodCreate(
            type="aws_iam",
            name="steps-iam",
            bound_aws_account_id=["123456789012"],
            bound_role_name=["bench-role"],
            sts_url=moto_url,
        ),
        RequestContext(event, utc_now()),
    )
    access_id = created.access_id
    login = services.login
    sts = login._parts.sts
    sts_http: httpx.AsyncClient = sts._http

    total = iterations * 3 + 20
    if total > 840:
        raise SystemExit("--iterations too large for the 15-minute X-Amz-Date window")
    now0 = datetime.now(UTC).replace(microsecond=0)
    signed = [
        sign_get_caller_identity(
            credentials, url=moto_url + "/", amz_date=now0 - timedelta(seconds=i + 1)
        )
        for i in range(total)
    ]
    payloads = [
        json.dumps(
            {"access_id": access_id, "access_type": "aws_iam", "cloud_id": s["cloud_id"]}
        ).encode()
        for s in signed
    ]
    times: dict[str, list[float]] = defaultdict(list)
    clock = time.perf_counter

    def noop() -> None:
        return None

    for i in range(iterations + 10):
        record = i >= 10
        # Database steps: a thread hop on even iterations, inline on odd ones.
        steps = _Steps(hop=i % 2 == 0)
        mark, db, marks = steps.mark, steps.db, steps.marks

        await asyncio.to_thread(noop)
        mark("thread hop alone (to_thread no-op)")
        body = LoginRequest.model_validate_json(payloads[i])
        now = utc_now()
        ev = AuditEvent(time=now, request_id=f"r-{i}", source_ip="127.0.0.1", action="auth.login")
        mark("parse body (pydantic)")
        keys = ("ip:127.0.0.1", f"id:{access_id}")
        await db("rate-limit check (read)", login._check_rate_limit, login._parts.reads, keys, now)
        method = await db("load auth method (read)", login._parts.reads.auth_method, access_id)
        assert body.cloud_id is not None
        unverified = decode_cloud_id(body.cloud_id)
        vetted = vet_sts_request(
            unverified,
            sts_url=str(method.config["sts_url"]),
            server_id=None,
            now=now,
            max_skew=login._policy.max_clock_skew,
        )
        mark("decode + vet")
        spend = SignatureSpend(
            digest=hashlib.sha256(vetted.signature.encode("ascii")).hexdigest(),
            expires_at=max(vetted.amz_date, now) + login._policy.max_clock_skew,
        )
        await db("replay check (read)", login._parts.reads.signature_spent, spend.digest)
        identity = await sts.get_caller_identity(vetted)
        mark("STS via StsClient")
        request = httpx.Request(
            "POST", vetted.endpoint + vetted.path, headers=list(vetted.headers), content=vetted.body
        )
        response = await sts_http.send(request)
        assert response.status_code == 200
        mark("STS alone (same httpx client)")
        claims = claims_from_identity(identity)
        check_bounds(_bounds_of(method), claims, "127.0.0.1")
        claims_dict = claims.as_dict()
        mark("claims + bounds")
        result = await db(
            "replay mark + token + audit (one write)",
            login._mint,
            method,
            claims_dict,
            ev,
            now,
            spend,
        )
        json_response(result)
        mark("response JSON")
        if record:
            for name, seconds in marks:
                times[name].append(seconds)
            times["sum of steps (excl. hop alone, STS alone)"].append(
                sum(s for n, s in marks if not n.startswith(("thread hop alone", "STS alone")))
            )

    for i in range(iterations):
        index = iterations + 10 + i
        body = LoginRequest.model_validate_json(payloads[index])
        now = utc_now()
        ev = AuditEvent(time=now, request_id=f"f-{i}", source_ip="127.0.0.1", action="auth.login")
        started = clock()
        await login.login(body, RequestContext.of(ev))
        times["LoginService.login total"].append(clock() - started)

    # The same login through the whole app, called as uvicorn calls it (middleware, routing,
    # audit envelope, metrics): what the app adds over the service, without any HTTP parsing.
    async with app.router.lifespan_context(app):
        for i in range(iterations):
            index = 2 * iterations + 10 + i
            started = clock()
            status = await call_asgi(app, "POST", "/v1/auth/login", payloads[index])
            times["whole app (ASGI call), login"].append(clock() - started)
            assert status == 200, status
        for _ in range(iterations):
            started = clock()
            await call_asgi(app, "GET", "/v1/sys/health")
            times["whole app (ASGI call), health check"].append(clock() - started)

    await sts_http.aclose()
    services.database.dispose()
    return {
        name: {
            "n": len(values),
            "p50_ms": round(percentile(values, 50) * 1000, 3),
            "p99_ms": round(percentile(values, 99) * 1000, 3),
        }
        for name, values in times.items()
    }


async def call_asgi(app: Any, method: str, path: str, body: bytes = b"") -> int:
    """Call ``app`` with one HTTP request as an ASGI server would; return the status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8200),
        "state": {},
    }
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:  # the body was read: wait for the disconnect that never comes
            await asyncio.Event().wait()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    return statuses[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=300)
    args = parser.parse_args()
    import uvloop

    procs = Processes()
    with tempfile.TemporaryDirectory(prefix="login-steps-") as tmp:
        try:
            moto = MotoSts(procs, Path(tmp) / "moto.log")
            principal = moto.assume_new_role("bench-role", "i-0bench000000000001")
            uvloop.install()
            steps = asyncio.run(
                measure(args.iterations, moto.url, principal.credentials, Path(tmp))
            )
        finally:
            procs.stop_all()
    width = max(len(name) for name in steps)
    print(f"{'step'.ljust(width)}  {'p50 ms':>8}  {'p99 ms':>8}")
    for name, row in steps.items():
        print(f"{name.ljust(width)}  {row['p50_ms']:8.3f}  {row['p99_ms']:8.3f}")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS_DIR / f"login_steps-{stamp}.json"
    out.write_text(
        json.dumps({"benchmark": "login_steps", "args": vars(args), "steps": steps}, indent=1)
        + "\n"
    )
    print(f"results: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
