"""Login abuse against a real ``strongroom server`` (SQLite and PostgreSQL) with moto's STS
checking signatures: lock-outs, spoofed client addresses behind a proxy, and same-second logins
of one role (SPEC section 3). Each test performs the attack its comment names.

One server per database serves the whole module, configured as a deployment behind one reverse
proxy on 127.0.0.1 (``STRONGROOM_TRUSTED_PROXIES=127.0.0.1``) with a server ID. Clients that
are not the proxy connect from other loopback addresses (127.0.1.x: Linux routes all of
127.0.0.0/8 to the loopback interface), so each test has source addresses of its own and the
failure counters of one test never touch another's. Requests "through the proxy" are written
from 127.0.0.1 with raw sockets: a proxy appends its own ``X-Forwarded-For`` line after the
client's, and httpx would merge the two.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from hvac.aws_utils import SigV4Auth
from sqlalchemy import create_engine, text

from tests.e2e.server_process import STRONGROOM, ServerProcess, free_port
from tests.support.concurrency import run_at_once
from tests.support.databases import fresh_database_url
from tests.support.moto_sts import AwsCredentials, MotoPrincipal
from tests.support.moto_world import MotoWorld
from tests.support.raw_http import RawResponse, raw_request
from tests.support.signing import encode_cloud_id, encode_vault_fields, sign_get_caller_identity

pytestmark = pytest.mark.slow

SERVER_ID = "strongroom.test.example"
PROXY = "127.0.0.1"
PAIR_LIMIT = 5  # failed logins per (source, access ID) in a window
SOURCE_LIMIT = 12  # failed logins per source in a window
NONCE_HEADER = "X-Strongroom-Login-Nonce"
# Credentials no AWS account knows: anyone can sign with them, and STS refuses the result.
STRANGER = AwsCredentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
DENIED = {"error": "AuthenticationFailed", "message": "access authentication failed"}
CSRF_MARK = 'name="csrf" value="'


# -- the server -----------------------------------------------------------------------------


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A fresh database for the module's server (the suite's per-test one, per module)."""
    folder = tmp_path_factory.mktemp("abuse")
    with fresh_database_url(request.param, request, folder) as url:
        yield url


@dataclass
class Stack:
    server: ServerProcess
    database_url: str
    moto: MotoWorld
    admin: httpx.Client  # the bootstrap admin's token, from the proxy's own address

    @property
    def url(self) -> str:
        return self.server.url

    def api_key_method(self, **fields: Any) -> tuple[str, str]:
        """A new api_key auth method: (access ID, access key)."""
        name = f"key-{secrets.token_hex(4)}"
        created = self.admin.post(
            "/v1/auth-methods", json={"type": "api_key", "name": name, **fields}
        )
        assert created.status_code == 201, created.text
        return str(created.json()["access_id"]), str(created.json()["access_key"])

    def aws_method(self, role_name: str) -> str:
        """A new aws_iam auth method for moto's STS, bound to ``role_name``: its access ID."""
        created = self.admin.post(
            "/v1/auth-methods",
            json={
                "type": "aws_iam",
                "name": f"iam-{secrets.token_hex(4)}",
                "bound_aws_account_id": ["123456789012"],
                "bound_role_name": [role_name],
                "sts_url": self.moto.server.url,
            },
        )
        assert created.status_code == 201, created.text
        return str(created.json()["access_id"])

    def login_event(self, request_id: str) -> dict[str, Any]:
        """The audit event of one request (by its X-Request-ID)."""
        deadline = time.monotonic() + 10
        while True:
            events = self.admin.get("/v1/audit", params={"limit": 200}).json()["events"]
            found = [e for e in events if e["request_id"] == request_id]
            if found:
                return dict(found[0])
            assert time.monotonic() < deadline, f"no audit event for {request_id}"
            time.sleep(0.1)

    def failure_rows(self, fragment: str) -> int:
        """Rows of the failed-login table whose key contains ``fragment``."""
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as connection:
                count = connection.execute(
                    text("SELECT count(*) FROM login_failures WHERE key LIKE :k"),
                    {"k": f"%{fragment}%"},
                ).scalar_one()
        finally:
            engine.dispose()
        return int(count)


@pytest.fixture(scope="module")
def stack(
    database_url: str, moto: MotoWorld, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("abuse-server")
    server = ServerProcess(
        {
            "STRONGROOM_DATABASE_URL": database_url,
            "STRONGROOM_MASTER_KEY": "A" * 43 + "=",
            "STRONGROOM_STS_EXTRA_ENDPOINTS": moto.server.url,
            "STRONGROOM_SERVER_ID": SERVER_ID,
            "STRONGROOM_TRUSTED_PROXIES": PROXY,
            "STRONGROOM_LOGIN_FAILURE_LIMIT": str(PAIR_LIMIT),
            "STRONGROOM_LOGIN_SOURCE_FAILURE_LIMIT": str(SOURCE_LIMIT),
            "STRONGROOM_LOG_FORMAT": "json",
        },
        cwd=root,
    )
    credentials = server.bootstrap()
    server.start()
    try:
        with server.client_as(credentials) as admin:
            yield Stack(server, database_url, moto, admin)
    finally:
        server.stop()


def client_from(stack: Stack, address: str) -> httpx.Client:
    """A client whose connections come from ``address`` (a loopback address, not the proxy)."""
    return httpx.Client(
        base_url=stack.url, timeout=15, transport=httpx.HTTPTransport(local_address=address)
    )


def signed_login(principal_credentials: AwsCredentials, stack: Stack, access_id: str) -> Any:
    """An aws_iam login body signed as current clients sign it (server ID, fresh nonce)."""
    signed = sign_get_caller_identity(
        principal_credentials,
        url=stack.moto.server.url + "/",
        server_id=SERVER_ID,
        extra_headers={NONCE_HEADER: secrets.token_urlsafe(24)},
    )
    return {"access_id": access_id, "access_type": "aws_iam", "cloud_id": signed["cloud_id"]}


def key_login(access_id: str, access_key: str) -> dict[str, str]:
    return {"access_id": access_id, "access_type": "access_key", "access_key": access_key}


def assert_limited(response: httpx.Response | RawResponse) -> None:
    """429 with a Retry-After of at least a second."""
    if isinstance(response, RawResponse):
        status, retry_after, text = response.status, response.header("retry-after"), response.body
    else:
        status, retry_after = response.status_code, response.headers.get("retry-after")
        text = response.content
    assert status == 429, text
    assert retry_after is not None
    assert int(retry_after) >= 1


# -- nobody can lock an identity out (per source, never per access ID alone) ----------------


def test_failed_aws_logins_in_someones_name_do_not_lock_them_out(stack: Stack) -> None:
    """Attack: a stranger who knows an aws_iam access ID (not secret) fails logins in its name
    from their own address, signing with credentials no AWS account knows: no secret needed.
    A counter per access ID answered 429 to the owner's genuine logins from everywhere."""
    victim = stack.aws_method("app-role")
    with client_from(stack, "127.0.1.1") as attacker:
        statuses = [
            attacker.post("/v1/auth/login", json=signed_login(STRANGER, stack, victim)).status_code
            for _ in range(PAIR_LIMIT)
        ]
        assert statuses == [401] * PAIR_LIMIT
        # The attacker's own source is what gets limited.
        assert_limited(attacker.post("/v1/auth/login", json=signed_login(STRANGER, stack, victim)))
    with client_from(stack, "127.0.1.2") as owner:
        genuine = owner.post(
            "/v1/auth/login", json=signed_login(stack.moto.app.credentials, stack, victim)
        )
    assert genuine.status_code == 200, genuine.text
    assert genuine.json()["identity"]["role_name"] == "app-role"


def test_failed_key_logins_in_someones_name_do_not_lock_them_out(stack: Stack) -> None:
    """Attack: wrong API keys sent in the name of someone's access ID, from elsewhere."""
    victim, key = stack.api_key_method()
    with client_from(stack, "127.0.1.3") as attacker:
        for _ in range(PAIR_LIMIT):
            wrong = attacker.post("/v1/auth/login", json=key_login(victim, "not-the-key"))
            assert wrong.status_code == 401
        assert_limited(attacker.post("/v1/auth/login", json=key_login(victim, "not-the-key")))
    with client_from(stack, "127.0.1.4") as owner:
        genuine = owner.post("/v1/auth/login", json=key_login(victim, key))
    assert genuine.status_code == 200, genuine.text


def _console_sign_in(client: httpx.Client, access_id: str, access_key: str) -> httpx.Response:
    form = client.get("/ui/login")
    assert form.status_code == 200
    csrf = form.text.split(CSRF_MARK, 1)[1].split('"', 1)[0]
    return client.post(
        "/ui/login",
        data={"csrf": csrf, "access_id": access_id, "access_key": access_key, "next": ""},
        follow_redirects=False,
    )


def test_failed_console_sign_ins_in_someones_name_do_not_lock_them_out(stack: Stack) -> None:
    """Attack: the same lock-out through the console's sign-in form (same login service)."""
    victim, key = stack.api_key_method()
    with client_from(stack, "127.0.1.5") as attacker:
        for _ in range(PAIR_LIMIT):
            assert _console_sign_in(attacker, victim, "not-the-key").status_code == 401
        limited = _console_sign_in(attacker, victim, "not-the-key")
        assert_limited(limited)
        assert "Too many failed attempts" in limited.text
    with client_from(stack, "127.0.1.6") as owner:
        signed_in = _console_sign_in(owner, victim, key)
    assert signed_in.status_code == 303, signed_in.text
    assert "strongroom_session=" in signed_in.headers.get("set-cookie", "")


def test_a_source_failing_for_one_identity_still_logs_in_as_another(stack: Stack) -> None:
    """Attack (on a shared address): one workload behind a NAT fails its own logins over and
    over (a stale key, a guessing client); a counter of the whole address locked out every
    other identity behind it. The pair limit stops that workload for its own access ID."""
    stale, _ = stack.api_key_method()
    other, other_key = stack.api_key_method()
    aws = stack.aws_method("other-role")
    with client_from(stack, "127.0.1.7") as shared:
        for _ in range(PAIR_LIMIT):
            assert shared.post("/v1/auth/login", json=key_login(stale, "stale")).status_code == 401
        assert_limited(shared.post("/v1/auth/login", json=key_login(stale, "stale")))
        assert shared.post("/v1/auth/login", json=key_login(other, other_key)).status_code == 200
        genuine = shared.post(
            "/v1/auth/login", json=signed_login(stack.moto.other.credentials, stack, aws)
        )
        assert genuine.status_code == 200, genuine.text


def test_a_source_spraying_access_ids_is_stopped_with_bounded_state(stack: Stack) -> None:
    """Attack: one address names a new access ID on every attempt, to stay under the per-pair
    limit and to grow the failure table without bound. The per-source limit stops it; once
    stopped it is not counted again, so it holds at most SOURCE_LIMIT + 1 rows."""
    owner, key = stack.api_key_method()
    source = "127.0.1.8"
    with client_from(stack, source) as sprayer:
        statuses = [
            sprayer.post(
                "/v1/auth/login", json=key_login(f"p-{secrets.token_hex(6)}", "x")
            ).status_code
            for _ in range(SOURCE_LIMIT + 20)
        ]
        assert statuses == [401] * SOURCE_LIMIT + [429] * 20
        # Stopped for everyone's access ID, its own genuine one included, while it lasts...
        assert_limited(sprayer.post("/v1/auth/login", json=key_login(owner, key)))
    assert stack.failure_rows(f"{source}|") + stack.failure_rows(f"ip:{source}") <= SOURCE_LIMIT + 1
    # ...and for nobody else.
    with client_from(stack, "127.0.1.9") as elsewhere:
        assert elsewhere.post("/v1/auth/login", json=key_login(owner, key)).status_code == 200


# -- the client address behind a trusted proxy -----------------------------------------------


def through_proxy(
    stack: Stack, body: dict[str, Any], forwarded_for: list[str], path: str = "/v1/auth/login"
) -> RawResponse:
    """``body`` POSTed from the proxy's address, one X-Forwarded-For line per entry given."""
    headers = [("X-Forwarded-For", line) for line in forwarded_for]
    return raw_request(stack.url, "POST", path, headers, json_body=body, local_address=PROXY)


def test_bound_ips_sees_the_address_the_proxy_appended(stack: Stack) -> None:
    """Attack: a client outside bound_ips sends its own ``X-Forwarded-For: <allowed address>``;
    the proxy appends a second line with the client's real address. Reading only the first
    line let the client choose the address bound_ips was checked against."""
    spoofing, key = stack.api_key_method(bound_ips=["198.51.100.0/24"])
    spoofed = through_proxy(stack, key_login(spoofing, key), ["198.51.100.7", "203.0.113.50"])
    assert spoofed.status == 401, spoofed.body
    assert spoofed.json() == DENIED
    assert "not in bound_ips" in str(
        stack.login_event(spoofed.header("x-request-id") or "")["reason"]
    )
    # The real address, however many lines the client sent first, is what counts.
    allowed, allowed_key = stack.api_key_method(bound_ips=["203.0.113.0/24"])
    lines = ["198.51.100.7, 192.0.2.9", "203.0.113.50"]
    assert through_proxy(stack, key_login(allowed, allowed_key), lines).status == 200


def test_the_failure_limit_counts_the_address_the_proxy_appended(stack: Stack) -> None:
    """Attack: behind the proxy, a client changes its own first X-Forwarded-For line on every
    failed attempt (and the access ID it names), so that each failure was counted for another
    made-up source and no limit was ever reached."""
    real = "203.0.113.60"
    statuses = [
        through_proxy(
            stack, key_login(f"p-{secrets.token_hex(6)}", "guess"), [f"198.51.100.{n}", real]
        ).status
        for n in range(SOURCE_LIMIT)
    ]
    assert statuses == [401] * SOURCE_LIMIT
    assert_limited(
        through_proxy(stack, key_login(f"p-{secrets.token_hex(6)}", "guess"), ["192.0.2.1", real])
    )
    # Counted for the real client, not for any of the addresses it made up.
    assert stack.failure_rows(f"ip:{real}") == 1
    assert stack.failure_rows("198.51.100.") == 0


def test_the_audit_trail_records_the_address_the_proxy_appended(stack: Stack) -> None:
    """Attack: the client's chosen first line was written into the audit trail as the source
    of its requests (a false trail). An entry that is not an address ends the walk before it."""
    method, key = stack.api_key_method()
    cases = [
        (["198.51.100.7", "203.0.113.70"], "203.0.113.70"),
        (["198.51.100.7, 203.0.113.71"], "203.0.113.71"),
        (["203.0.113.72, not-an-address"], PROXY),
        (["203.0.113.73", "not-an-address"], PROXY),
        (["not-an-address", "203.0.113.74"], "203.0.113.74"),
    ]
    for lines, source in cases:
        answer = through_proxy(stack, key_login(method, key), lines)
        assert answer.status == 200, answer.body
        event = stack.login_event(answer.header("x-request-id") or "")
        assert (event["action"], event["source_ip"]) == ("auth.login", source), lines


def test_forwarded_for_from_a_client_that_is_not_the_proxy_is_ignored(stack: Stack) -> None:
    """Attack: a client connecting directly writes X-Forwarded-For itself."""
    method, key = stack.api_key_method(bound_ips=["203.0.113.0/24"])
    answer = raw_request(
        stack.url,
        "POST",
        "/v1/auth/login",
        [("X-Forwarded-For", "203.0.113.80"), ("X-Forwarded-For", "203.0.113.81")],
        json_body=key_login(method, key),
        local_address="127.0.1.10",
    )
    assert answer.status == 401
    assert stack.login_event(answer.header("x-request-id") or "")["source_ip"] == "127.0.1.10"


def test_a_bad_trusted_proxies_entry_stops_the_server_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRONGROOM_")}
    result = subprocess.run(
        [STRONGROOM, "server", "--port", str(free_port())],
        env={
            **env,
            "STRONGROOM_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
            "STRONGROOM_MASTER_KEY": "A" * 43 + "=",
            "STRONGROOM_TRUSTED_PROXIES": "127.0.0.1, proxy.internal",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "'proxy.internal' is not an IP address or CIDR" in result.stderr
    assert "Traceback" not in result.stderr


# -- same-second logins of one role ---------------------------------------------------------

# A CLI process that has imported everything, then waits for a moment shared with the others
# and runs ``strongroom <args>``, recording the X-Amz-Date it signed (observation only).
_CLI_AT_A_MOMENT = """
import sys, time
import botocore.auth, botocore.awsrequest, botocore.credentials, botocore.session
from strongroom.cli import client, main

moment, record = float(sys.argv[1]), sys.argv[2]
signing = client.sign_get_caller_identity

def recorded(*args, **kwargs):
    signed = signing(*args, **kwargs)
    with open(record, "w") as out:
        out.write(signed.amz_date)
    return signed

client.sign_get_caller_identity = recorded
time.sleep(max(0.0, moment - time.time()))
sys.argv = ["strongroom", *sys.argv[3:]]
main.run()
"""


def _cli_environ(home: Path, credentials: AwsCredentials) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "STRONGROOM_"))}
    return {
        **env,
        **credentials.environ(),
        "STRONGROOM_HOME": str(home),
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def test_six_cli_processes_of_one_role_log_in_in_the_same_second(
    stack: Stack, tmp_path: Path
) -> None:
    """Six processes on one instance (one instance profile, separate users and token caches)
    log in at once. SigV4 dates have one-second resolution, so without a nonce they signed
    identical requests and the replay cache refused all but one (401)."""
    access_id = stack.aws_method("app-role")
    principal: MotoPrincipal = stack.moto.app
    homes = [tmp_path / f"user{n}" for n in range(6)]
    configure = subprocess.run(
        [
            STRONGROOM,
            "configure",
            "--access-id",
            access_id,
            "--access-type",
            "aws_iam",
            "--server-url",
            stack.url,
            "--aws-sts-url",
            stack.moto.server.url,
            "--server-id",
            SERVER_ID,
        ],
        env=_cli_environ(homes[0], principal.credentials),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert configure.returncode == 0, configure.stderr
    for home in homes[1:]:
        shutil.copytree(homes[0] / "profiles", home / "profiles")
    # Early in a second still to come: every process is loaded and waiting by then.
    moment = int(time.time()) + 3.05
    results: list[subprocess.CompletedProcess[str]] = []

    def log_in(home: Path) -> None:
        results.append(
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    _CLI_AT_A_MOMENT,
                    str(moment),
                    str(home / "signed-at"),
                    "auth",
                    "--json",
                ],
                env=_cli_environ(home, principal.credentials),
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        )

    queue = iter(homes)
    assert run_at_once(lambda: log_in(next(queue)), len(homes)) == []
    signed_at = Counter((home / "signed-at").read_text() for home in homes)
    # The attack needs at least two in one second; on this machine all six usually are.
    assert max(signed_at.values()) >= 2, f"no two processes signed in the same second: {signed_at}"
    assert [r.returncode for r in results] == [0] * 6, [r.stderr for r in results]
    identities = [json.loads(r.stdout)["identity"]["arn"] for r in results]
    assert identities == [principal.arn] * 6


def test_vault_clients_server_id_header_is_accepted(stack: Stack) -> None:
    """hvac (``header_value``) and the vault CLI sign X-Vault-AWS-IAM-Server-ID, not ours:
    their logins were refused as carrying a header off the allowlist. hvac's own signer, on
    hvac's own request, aimed at this auth method's STS (moto) rather than sts.amazonaws.com."""
    access_id = stack.aws_method("app-role")
    creds = stack.moto.app.credentials
    url = stack.moto.server.url + "/"
    request = requests.Request(
        method="POST",
        url=url,
        headers={
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            "Host": url.split("/")[2],
            "X-Vault-AWS-IAM-Server-ID": SERVER_ID,
        },
        data="Action=GetCallerIdentity&Version=2011-06-15",
    ).prepare()
    SigV4Auth(creds.access_key_id, creds.secret_access_key, creds.session_token).add_auth(request)
    fields = encode_vault_fields(
        url=url,
        body=str(request.body),
        headers={
            name: value if isinstance(value, str) else value.decode()
            for name, value in request.headers.items()
        },
    )
    with client_from(stack, "127.0.1.11") as vault_client:
        answer = vault_client.post(
            "/v1/auth/login", json={"access_id": access_id, "access_type": "aws_iam", **fields}
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["identity"]["arn"] == stack.moto.app.arn


def test_login_nonces_are_read_strictly_and_covered_by_the_signature(stack: Stack) -> None:
    """A nonce that is not 16-64 URL-safe characters cannot be read: 400 before STS. One
    changed after signing reads fine, and STS (moto, checking signatures) refuses it: the
    nonce is part of what the signature covers, and moto accepts the extra signed header."""
    access_id = stack.aws_method("app-role")
    creds = stack.moto.app.credentials
    url = stack.moto.server.url + "/"

    def login(cloud_id: str) -> httpx.Response:
        body = {"access_id": access_id, "access_type": "aws_iam", "cloud_id": cloud_id}
        with client_from(stack, "127.0.1.12") as client:
            return client.post("/v1/auth/login", json=body)

    short = sign_get_caller_identity(
        creds, url=url, server_id=SERVER_ID, extra_headers={NONCE_HEADER: "short"}
    )
    malformed = login(short["cloud_id"])
    assert malformed.status_code == 400, malformed.text
    assert malformed.json()["error"] == "InvalidRequest"
    assert NONCE_HEADER in malformed.json()["message"]

    signed = sign_get_caller_identity(
        creds, url=url, server_id=SERVER_ID, extra_headers={NONCE_HEADER: "a" * 32}
    )
    swapped = encode_cloud_id(url=url, headers={**signed["headers"], NONCE_HEADER: "b" * 32})
    tampered = login(swapped)
    assert tampered.status_code == 401, tampered.text
    reason = str(stack.login_event(tampered.headers["x-request-id"])["reason"])
    assert "STS rejected" in reason, reason
    assert login(signed["cloud_id"]).status_code == 200
