"""`POST /v1/auth/login` with access_type aws_iam, end to end: the app (SQLite and PostgreSQL)
replays requests signed by botocore, akeyless-cloud-id and hvac to moto's STS with signature
checking on; one test per attack of SPEC section 3. No case may produce a 5xx."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import hvac
import pytest
from akeyless_cloud_id import CloudId

from strongroom.kit.clock import utc_now
from tests.support.harness import Harness
from tests.support.moto_world import MotoWorld
from tests.support.signing import encode_cloud_id, sign_get_caller_identity
from tests.support.stub_sts import Reply, StubSts, identity_xml
from tests.support.transport import RoutingTransport

GLOBAL_STS = "https://sts.amazonaws.com"
DENIED = {"error": "AuthenticationFailed", "message": "access authentication failed"}


@pytest.fixture
def iam(make_harness: Callable[..., Harness], moto: MotoWorld) -> Callable[..., Harness]:
    """A harness whose STS client reaches moto for https://sts.amazonaws.com."""

    def build(**overrides: Any) -> Harness:
        overrides.setdefault("sts_transport", RoutingTransport({GLOBAL_STS: moto.server.url}))
        return make_harness(**overrides)

    return build


def create_method(harness: Harness, **fields: Any) -> str:
    body = {
        "type": "aws_iam",
        "name": "iamAuth1",
        "bound_aws_account_id": ["123456789012"],
        **fields,
    }
    response = harness.client.post("/v1/auth-methods", json=body, headers=harness.admin.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["access_id"])


def login(harness: Harness, access_id: str, **fields: Any) -> Any:
    response = harness.client.post(
        "/v1/auth/login", json={"access_id": access_id, "access_type": "aws_iam", **fields}
    )
    assert response.status_code < 500, response.text
    return response


def last_login_reason(harness: Harness) -> str:
    events = harness.client.get(
        "/v1/audit", params={"limit": 20}, headers=harness.admin.headers
    ).json()["events"]
    return str(next(e for e in events if e["action"] == "auth.login")["reason"])


def denied(harness: Harness, response: Any, reason_part: str) -> None:
    assert response.status_code == 401, response.text
    assert response.json() == DENIED
    assert reason_part in last_login_reason(harness)


# -- the three signers ---------------------------------------------------------------------


def test_botocore_signed_login_reads_templated_path(
    iam: Callable[..., Harness], moto: MotoWorld
) -> None:
    harness = iam()
    access_id = create_method(harness, bound_role_name=["app-role"])
    admin = harness.admin.headers
    client = harness.client
    client.post("/v1/roles", json={"name": "apps"}, headers=admin).raise_for_status()
    client.put(
        "/v1/roles/apps/rules",
        json={"path": "/apps/{{role_name}}/*", "capabilities": ["read"]},
        headers=admin,
    ).raise_for_status()
    client.post(
        "/v1/roles/apps/associations",
        json={"auth_method": "iamAuth1", "sub_claims": {"role_name": ["app-*"]}},
        headers=admin,
    ).raise_for_status()
    client.post("/v1/roles", json={"name": "others"}, headers=admin).raise_for_status()
    client.post(
        "/v1/roles/others/associations",
        json={"auth_method": "iamAuth1", "sub_claims": {"role_name": ["other-role"]}},
        headers=admin,
    ).raise_for_status()
    for name in ("/apps/app-role/db", "/apps/other-role/db"):
        client.post("/v1/secrets", json={"name": name, "value": name}, headers=admin)

    signed = sign_get_caller_identity(moto.app.credentials)
    response = login(harness, access_id, cloud_id=signed["cloud_id"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token"].startswith("t-")
    assert body["roles"] == ["apps"]
    assert body["identity"] == {
        "account_id": "123456789012",
        "arn": moto.app.arn,
        "role_name": "app-role",
        "role_id": moto.app.user_id.split(":")[0],
        "resource_id": "i-0abc1234567890def",
    }
    assert 1790 <= body["expires_in"] <= 1800
    token = {"Authorization": f"Bearer {body['token']}"}
    assert client.get("/v1/secrets/apps/app-role/db", headers=token).status_code == 200
    assert client.get("/v1/secrets/apps/other-role/db", headers=token).status_code == 403


def test_vault_field_names_and_iam_user(iam: Callable[..., Harness], moto: MotoWorld) -> None:
    harness = iam()
    access_id = create_method(harness, bound_user_name=["deploy-bot"])
    signed = sign_get_caller_identity(moto.user.credentials)
    fields = {k: signed[k] for k in signed if k.startswith("iam_")}
    response = login(harness, access_id, **fields)
    assert response.status_code == 200, response.text
    assert response.json()["identity"]["user_name"] == "deploy-bot"
    assert response.json()["identity"]["user_id"] == moto.user.user_id


def test_akeyless_cloud_id_generator(iam: Callable[..., Harness], moto: MotoWorld) -> None:
    harness = iam()
    access_id = create_method(harness, bound_role_name=["app-role"])
    creds = moto.app.credentials
    cloud_id = CloudId().generate(creds.access_key_id, creds.secret_access_key, creds.session_token)
    response = login(harness, access_id, cloud_id=cloud_id)
    assert response.status_code == 200, response.text
    assert response.json()["identity"]["arn"] == moto.app.arn


def test_akeyless_sdk_kebab_case_fields_log_in(
    iam: Callable[..., Harness], moto: MotoWorld
) -> None:
    """Akeyless's SDK spells the fields access-id, access-type and cloud-id, and adds fields of
    its own ("json"): the same login, answered the same way."""
    harness = iam()
    access_id = create_method(harness, bound_role_name=["app-role"])
    creds = moto.app.credentials
    cloud_id = CloudId().generate(creds.access_key_id, creds.secret_access_key, creds.session_token)
    kebab = harness.client.post(
        "/v1/auth/login",
        json={
            "access-id": access_id,
            "access-type": "aws_iam",
            "cloud-id": cloud_id,
            "json": False,
        },
    )
    assert kebab.status_code == 200, kebab.text
    assert kebab.json()["access_id"] == access_id
    assert kebab.json()["identity"]["arn"] == moto.app.arn


def test_hvac_request_builder(iam: Callable[..., Harness], moto: MotoWorld) -> None:
    harness = iam()
    access_id = create_method(harness, bound_role_name=["app-role"])
    captured: dict[str, Any] = {}

    def fake_login(url: str, use_token: bool = True, **kwargs: Any) -> dict[str, Any]:
        captured.update(kwargs["json"])
        return {}

    vault = hvac.Client(url="http://127.0.0.1:9")
    try:
        vault.auth.aws._adapter.login = fake_login
        creds = moto.app.credentials
        vault.auth.aws.iam_login(creds.access_key_id, creds.secret_access_key, creds.session_token)
    finally:
        vault.adapter.close()
    fields = {k: v for k, v in captured.items() if k.startswith("iam_")}
    response = login(harness, access_id, **fields)
    assert response.status_code == 200, response.text


# -- identity and bounds -------------------------------------------------------------------


def test_other_role_is_refused_with_reason(iam: Callable[..., Harness], moto: MotoWorld) -> None:
    harness = iam()
    access_id = create_method(harness, bound_role_name=["app-role"])
    signed = sign_get_caller_identity(moto.other.credentials)
    denied(harness, login(harness, access_id, cloud_id=signed["cloud_id"]), "other-role")


def test_other_account_is_refused(iam: Callable[..., Harness], moto: MotoWorld) -> None:
    """A role named like ours in another account (CVE-2025-11621's shape) gets nothing."""
    harness = iam()
    access_id = create_method(
        harness, bound_role_name=["app-role"], bound_arn=["*:role/app-role*", "*app-role*"]
    )
    signed = sign_get_caller_identity(moto.foreign.credentials)
    denied(harness, login(harness, access_id, cloud_id=signed["cloud_id"]), "999999999999")


@pytest.mark.parametrize(
    ("arn", "user_id"),
    [
        ("arn:aws:iam::123456789012:root", "123456789012"),
        ("arn:aws:sts::123456789012:federated-user/bob", "123456789012:bob"),
    ],
)
def test_root_and_federated_need_an_exact_bound_arn(
    make_harness: Callable[..., Harness], moto: MotoWorld, arn: str, user_id: str
) -> None:
    # moto cannot answer as these principals: the stub STS does, after the usual vetting.
    with StubSts(Reply(200, identity_xml(arn=arn, user_id=user_id))) as stub:
        harness = make_harness(sts_extra_endpoints=stub.url)
        wide = create_method(harness, sts_url=stub.url, bound_arn=["arn:aws:*"])
        signed = sign_get_caller_identity(moto.app.credentials, url=stub.url + "/")
        denied(harness, login(harness, wide, cloud_id=signed["cloud_id"]), "bound_arn")
        harness.client.patch(
            "/v1/auth-methods/iamAuth1", json={"bound_arn": [arn]}, headers=harness.admin.headers
        ).raise_for_status()
        # A new signing time: the same second would sign identically, and be a replay.
        signed = sign_get_caller_identity(
            moto.app.credentials, url=stub.url + "/", amz_date=utc_now() - timedelta(seconds=2)
        )
        assert login(harness, wide, cloud_id=signed["cloud_id"]).status_code == 200


# -- the request checks, each an attack ----------------------------------------------------


def test_replayed_request_logs_in_once(iam: Callable[..., Harness], moto: MotoWorld) -> None:
    harness = iam()
    access_id = create_method(harness, bound_role_name=["app-role"])
    signed = sign_get_caller_identity(moto.app.credentials)
    assert login(harness, access_id, cloud_id=signed["cloud_id"]).status_code == 200
    denied(harness, login(harness, access_id, cloud_id=signed["cloud_id"]), "replayed")


def test_replayed_request_never_reaches_sts(
    make_harness: Callable[..., Harness], moto: MotoWorld
) -> None:
    with StubSts(Reply(200, identity_xml())) as stub:
        harness = make_harness(sts_extra_endpoints=stub.url)
        access_id = create_method(harness, sts_url=stub.url)
        signed = sign_get_caller_identity(moto.app.credentials, url=stub.url + "/")
        assert login(harness, access_id, cloud_id=signed["cloud_id"]).status_code == 200
        denied(harness, login(harness, access_id, cloud_id=signed["cloud_id"]), "replayed")
        assert stub.request_count == 1


def test_racing_copies_of_one_request_mint_one_token(
    make_harness: Callable[..., Harness], moto: MotoWorld
) -> None:
    """Two copies sent at once both pass the early check and both wait on STS; the database
    lets one of them commit a token and turns the other into a 401."""
    with StubSts(Reply(200, identity_xml(), delay=0.5)) as stub:
        harness = make_harness(sts_extra_endpoints=stub.url)
        access_id = create_method(harness, sts_url=stub.url)
        signed = sign_get_caller_identity(moto.app.credentials, url=stub.url + "/")
        with ThreadPoolExecutor(max_workers=2) as pool:
            responses = list(
                pool.map(lambda _: login(harness, access_id, cloud_id=signed["cloud_id"]), range(2))
            )
        assert stub.request_count == 2  # both were in flight together
        assert sorted(r.status_code for r in responses) == [200, 401]
        # The two started together: which one the listing (newest first, by time) puts first
        # is not the point; the refused one was refused as a replay.
        events = harness.client.get(
            "/v1/audit", params={"limit": 20}, headers=harness.admin.headers
        ).json()["events"]
        logins = [e for e in events if e["action"] == "auth.login"][:2]
        assert sorted(e["status"] for e in logins) == [200, 401]
        assert "replayed" in next(e["reason"] for e in logins if e["status"] == 401)


def test_url_naming_another_host_never_reaches_it(
    make_harness: Callable[..., Harness], moto: MotoWorld
) -> None:
    """SSRF (CVE-2020-16250): the replay goes to the configured STS, never the client's host."""
    with StubSts() as elsewhere:
        harness = make_harness(sts_extra_endpoints=moto.server.url)
        access_id = create_method(harness, sts_url=moto.server.url)
        for url in (
            elsewhere.url + "/",
            "http://169.254.169.254/latest/",
            "https://sts.amazonaws.com.evil.example/",
        ):
            signed = sign_get_caller_identity(moto.app.credentials, url=url)
            response = login(harness, access_id, cloud_id=signed["cloud_id"])
            denied(harness, response, "requests are only sent to sts_url")
        assert elsewhere.request_count == 0


def _tampered(signed: dict[str, Any], **changes: Any) -> str:
    headers = dict(signed["headers"])
    headers.update(changes.pop("headers", {}))
    for name in changes.pop("drop", ()):
        headers.pop(name, None)
    return encode_cloud_id(
        method=changes.pop("method", "POST"),
        url=changes.pop("url", signed["url"]),
        body=changes.pop("body", signed["body"]),
        headers=headers,
    )


@pytest.mark.parametrize(
    ("changes", "status", "reason"),
    [
        pytest.param(
            {"url": "https://sts.amazonaws.com/?Action=GetCallerIdentity"},
            401,
            "must not have a query string",
            id="query string",
        ),
        pytest.param(
            {"body": "Action=AssumeRole&Version=2011-06-15"},
            401,
            "body must be exactly",
            id="other action",
        ),
        pytest.param(
            {"body": "Action=GetCallerIdentity&Version=2011-06-15&Action=GetSessionToken"},
            401,
            "body must be exactly",
            id="extra action",
        ),
        pytest.param(
            {"body": "Action=GetCallerIdentity&Version=2011-06-15&RoleArn=x"},
            401,
            "body must be exactly",
            id="extra field",
        ),
        pytest.param({"method": "GET"}, 401, "only 'POST' is accepted", id="GET"),
        pytest.param(
            {"headers": {"X-Amz-Target": "AWSSecurityTokenServiceV20110615.AssumeRole"}},
            401,
            "'X-Amz-Target' is not allowed",
            id="disallowed header",
        ),
        pytest.param(
            {"headers": {"X-Forwarded-Host": "evil.example"}},
            401,
            "'X-Forwarded-Host' is not allowed",
            id="forwarded header",
        ),
        # Passes every check of ours; STS (moto, checking signatures) refuses it.
        pytest.param({"tamper": True}, 401, "STS rejected", id="tampered signature"),
        pytest.param(
            {"drop": ["Authorization"]}, 400, "no Authorization header", id="no authorization"
        ),
    ],
)
def test_forged_requests_are_refused(
    iam: Callable[..., Harness],
    moto: MotoWorld,
    changes: dict[str, Any],
    status: int,
    reason: str,
) -> None:
    harness = iam()
    access_id = create_method(harness, bound_role_name=["app-role"])
    signed = sign_get_caller_identity(moto.app.credentials)
    changes = dict(changes)  # the parameter is shared by the SQLite and PostgreSQL runs
    if changes.pop("tamper", False):
        authorization = signed["headers"]["Authorization"]
        flipped = "0" if authorization[-1] != "0" else "1"
        changes = {"headers": {"Authorization": authorization[:-1] + flipped}}
    response = login(harness, access_id, cloud_id=_tampered(signed, **changes))
    if status == 401:
        denied(harness, response, reason)
    else:
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "InvalidRequest"
        assert reason in response.json()["message"]


@pytest.mark.parametrize("skew", [timedelta(minutes=-20), timedelta(minutes=20)])
def test_stale_or_future_dates_are_refused(
    iam: Callable[..., Harness], moto: MotoWorld, skew: timedelta
) -> None:
    """moto accepts any date: our own window check must refuse it before the replay."""
    harness = iam()
    access_id = create_method(harness, bound_role_name=["app-role"])
    signed = sign_get_caller_identity(moto.app.credentials, amz_date=utc_now() + skew)
    denied(harness, login(harness, access_id, cloud_id=signed["cloud_id"]), "X-Amz-Date")


def test_server_id_must_be_present_equal_and_signed(
    iam: Callable[..., Harness], moto: MotoWorld
) -> None:
    harness = iam(server_id="vault.example.com")
    access_id = create_method(harness, bound_role_name=["app-role"])
    creds = moto.app.credentials
    missing = sign_get_caller_identity(creds)
    denied(harness, login(harness, access_id, cloud_id=missing["cloud_id"]), "Server-ID")
    wrong = sign_get_caller_identity(creds, server_id="other.example.com")
    denied(harness, login(harness, access_id, cloud_id=wrong["cloud_id"]), "Server-ID")
    signed = sign_get_caller_identity(creds)
    unsigned = _tampered(signed, headers={"X-Strongroom-Server-ID": "vault.example.com"})
    denied(harness, login(harness, access_id, cloud_id=unsigned), "Server-ID")
    good = sign_get_caller_identity(creds, server_id="vault.example.com")
    assert login(harness, access_id, cloud_id=good["cloud_id"]).status_code == 200


@pytest.mark.parametrize(
    "cloud_id",
    [
        "not base64 at all!",
        base64.b64encode(b"[1,2,3]").decode(),
        base64.b64encode(json.dumps({"sts_request_method": "POST"}).encode()).decode(),
        base64.b64encode(b"\xff\xfe garbage").decode(),
        "",
    ],
)
def test_garbage_cloud_ids_are_400(iam: Callable[..., Harness], cloud_id: str) -> None:
    harness = iam()
    access_id = create_method(harness)
    response = login(harness, access_id, cloud_id=cloud_id)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "InvalidRequest"


def test_oversized_input_is_refused(iam: Callable[..., Harness]) -> None:
    harness = iam()
    access_id = create_method(harness)
    response = login(harness, access_id, cloud_id="A" * (16 * 1024 + 4))
    assert response.status_code == 400
    huge_headers = {
        "iam_http_request_method": "POST",
        "iam_request_url": "aHR0cHM6Ly9zdHMuYW1hem9uYXdzLmNvbS8=",
        "iam_request_body": "QQ==",
        "iam_request_headers": {"X": ["y" * 20000]},
    }
    assert login(harness, access_id, **huge_headers).status_code == 400


def test_sts_down_or_slow_is_502_within_the_timeout(
    make_harness: Callable[..., Harness], moto: MotoWorld
) -> None:
    with StubSts(Reply(200, identity_xml(), delay=5)) as slow:
        harness = make_harness(sts_extra_endpoints=slow.url, sts_timeout_seconds=0.5)
        access_id = create_method(harness, sts_url=slow.url)
        signed = sign_get_caller_identity(moto.app.credentials, url=slow.url + "/")
        started = utc_now()
        response = harness.client.post(
            "/v1/auth/login",
            json={"access_id": access_id, "access_type": "aws_iam", "cloud_id": signed["cloud_id"]},
        )
        elapsed = (utc_now() - started).total_seconds()
    assert response.status_code == 502
    assert response.json()["error"] == "UpstreamUnavailable"
    assert elapsed < 3


def test_failed_aws_logins_are_rate_limited(iam: Callable[..., Harness], moto: MotoWorld) -> None:
    harness = iam(login_failure_limit=2)
    access_id = create_method(harness, bound_role_name=["app-role"])
    statuses = []
    for _ in range(3):
        signed = sign_get_caller_identity(moto.other.credentials)
        statuses.append(login(harness, access_id, cloud_id=signed["cloud_id"]).status_code)
    assert statuses == [401, 401, 429]
