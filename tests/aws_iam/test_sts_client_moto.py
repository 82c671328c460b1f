"""End to end against moto with signature checks on: decode → vet → StsClient → claims."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import hvac
import pytest
from akeyless_cloud_id import CloudId
from hvac.aws_utils import SigV4Auth as HvacSigV4Auth
from hvac.aws_utils import generate_sigv4_auth_request

from strongroom.auth.aws_iam import (
    GLOBAL_STS_ENDPOINT,
    AwsIamBounds,
    CallerIdentity,
    PrincipalType,
    StsClient,
    UnverifiedStsRequest,
    check_bounds,
    claims_from_identity,
    create_sts_http_client,
    decode_cloud_id,
    decode_vault_fields,
    parse_connect_to,
    validate_sts_url,
    vet_sts_request,
)
from strongroom.errors import AuthenticationDenied
from tests.aws_iam.conftest import APP_SESSION, MotoWorld
from tests.aws_iam.factories import with_headers
from tests.support.moto_sts import DEFAULT_ACCOUNT_ID, OTHER_ACCOUNT_ID, AwsCredentials
from tests.support.signing import sign_get_caller_identity
from tests.support.stub_sts import StubSts
from tests.support.transport import RoutingTransport

pytestmark = pytest.mark.anyio


async def identify(
    request: UnverifiedStsRequest,
    *,
    sts_url: str,
    transport: RoutingTransport | None = None,
    server_id: str | None = None,
) -> CallerIdentity:
    vetted = vet_sts_request(request, sts_url=sts_url, server_id=server_id, now=datetime.now(UTC))
    async with create_sts_http_client(5.0, transport=transport) as http:
        return await StsClient(http, timeout=5.0).get_caller_identity(vetted)


def vault_request(fields: dict[str, Any]) -> UnverifiedStsRequest:
    return decode_vault_fields(
        fields["iam_http_request_method"],
        fields["iam_request_url"],
        fields["iam_request_body"],
        fields["iam_request_headers"],
    )


def to_moto(moto: MotoWorld) -> RoutingTransport:
    return RoutingTransport({GLOBAL_STS_ENDPOINT: moto.server.url})


# -- the three client libraries ------------------------------------------------------------


async def test_botocore_signed_assumed_role(moto: MotoWorld) -> None:
    fields = sign_get_caller_identity(moto.app.credentials, url=moto.server.url + "/")
    sts_url = validate_sts_url(moto.server.url, [moto.server.url])
    identity = await identify(decode_cloud_id(fields["cloud_id"]), sts_url=sts_url)
    assert identity == CallerIdentity(moto.app.arn, moto.app.user_id, DEFAULT_ACCOUNT_ID)
    claims = claims_from_identity(identity)
    assert claims.principal_type is PrincipalType.ASSUMED_ROLE
    assert claims.as_dict() == {
        "account_id": DEFAULT_ACCOUNT_ID,
        "arn": f"arn:aws:sts::{DEFAULT_ACCOUNT_ID}:assumed-role/app-role/{APP_SESSION}",
        "role_name": "app-role",
        "role_id": moto.app.user_id.split(":")[0],
        "resource_id": APP_SESSION,
    }
    check_bounds(
        AwsIamBounds(
            bound_aws_account_id=(DEFAULT_ACCOUNT_ID,),
            bound_role_name=("app-*",),
            bound_resource_id=("i-*",),
        ),
        claims,
        "127.0.0.1",
    )


async def test_botocore_signed_iam_user_through_vault_fields(moto: MotoWorld) -> None:
    fields = sign_get_caller_identity(moto.user.credentials, url=moto.server.url + "/")
    identity = await identify(vault_request(fields), sts_url=moto.server.url)
    assert identity.arn == f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:user/ci/deploy-bot"
    claims = claims_from_identity(identity).as_dict()
    assert claims["user_name"] == "deploy-bot"
    assert claims["user_id"] == moto.user.user_id


async def test_botocore_signed_global_url_routed_to_moto(moto: MotoWorld) -> None:
    transport = to_moto(moto)
    fields = sign_get_caller_identity(moto.app.credentials, server_id="strongroom-a")
    identity = await identify(
        decode_cloud_id(fields["cloud_id"]),
        sts_url=GLOBAL_STS_ENDPOINT,
        transport=transport,
        server_id="strongroom-a",
    )
    assert identity.arn == moto.app.arn
    assert [str(url) for url in transport.routed] == ["https://sts.amazonaws.com/"]


async def test_akeyless_cloud_id(moto: MotoWorld) -> None:
    creds = moto.app.credentials
    assert creds.session_token is not None
    cloud_id = CloudId().generate(creds.access_key_id, creds.secret_access_key, creds.session_token)
    identity = await identify(
        decode_cloud_id(cloud_id), sts_url=GLOBAL_STS_ENDPOINT, transport=to_moto(moto)
    )
    assert identity == CallerIdentity(moto.app.arn, moto.app.user_id, DEFAULT_ACCOUNT_ID)


async def test_akeyless_cloud_id_from_environment(
    moto: MotoWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in moto.other.credentials.environ().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    identity = await identify(
        decode_cloud_id(CloudId().generate()), sts_url=GLOBAL_STS_ENDPOINT, transport=to_moto(moto)
    )
    assert identity.arn == f"arn:aws:sts::{DEFAULT_ACCOUNT_ID}:assumed-role/other-role/batch-job"


async def test_hvac_iam_login_fields(moto: MotoWorld) -> None:
    captured: dict[str, Any] = {}

    def fake_login(url: str, use_token: bool = True, **kwargs: Any) -> dict[str, Any]:
        captured.update(kwargs["json"])
        return {}

    client = hvac.Client(url="http://127.0.0.1:9")
    try:
        client.auth.aws._adapter.login = fake_login
        creds = moto.app.credentials
        client.auth.aws.iam_login(creds.access_key_id, creds.secret_access_key, creds.session_token)
    finally:
        client.adapter.close()
    identity = await identify(
        vault_request(captured), sts_url=GLOBAL_STS_ENDPOINT, transport=to_moto(moto)
    )
    assert identity.arn == moto.app.arn


async def test_hvac_builder_with_strongroom_server_id(moto: MotoWorld) -> None:
    # hvac's own header_value uses X-Vault-AWS-IAM-Server-ID; a Strongroom client adds ours
    # to hvac's request before hvac signs it.
    request = generate_sigv4_auth_request()
    request.headers["X-Strongroom-Server-ID"] = "strongroom-a"
    creds = moto.app.credentials
    HvacSigV4Auth(creds.access_key_id, creds.secret_access_key, creds.session_token).add_auth(
        request
    )
    headers = json.dumps({name: [request.headers[name]] for name in request.headers})
    fields = {
        "iam_http_request_method": request.method,
        "iam_request_url": base64.b64encode(request.url.encode()).decode(),
        "iam_request_body": base64.b64encode(request.body.encode()).decode(),
        "iam_request_headers": headers,  # the plain-JSON form this time
    }
    identity = await identify(
        vault_request(fields),
        sts_url=GLOBAL_STS_ENDPOINT,
        transport=to_moto(moto),
        server_id="strongroom-a",
    )
    assert identity.arn == moto.app.arn


async def test_connect_to_replays_a_global_sts_request_at_motos_address(moto: MotoWorld) -> None:
    """STRONGROOM_STS_CONNECT_TO with the production HTTP client (no test transport): a request
    signed for https://sts.amazonaws.com/ reaches moto's address with its signed Host header
    (moto checks the signature over it: another Host would be SignatureDoesNotMatch)."""
    fields = sign_get_caller_identity(moto.app.credentials)
    vetted = vet_sts_request(
        decode_cloud_id(fields["cloud_id"]),
        sts_url=GLOBAL_STS_ENDPOINT,
        server_id=None,
        now=datetime.now(UTC),
    )
    assert vetted.endpoint == GLOBAL_STS_ENDPOINT
    connect_to = parse_connect_to([f"sts.amazonaws.com={moto.server.url}"])
    async with create_sts_http_client(5.0) as http:
        sts = StsClient(http, timeout=5.0, connect_to=connect_to)
        identity = await sts.get_caller_identity(vetted)
    assert identity == CallerIdentity(moto.app.arn, moto.app.user_id, DEFAULT_ACCOUNT_ID)


async def test_other_account_is_reported_and_refused_by_bounds(moto: MotoWorld) -> None:
    fields = sign_get_caller_identity(moto.foreign.credentials, url=moto.server.url + "/")
    identity = await identify(decode_cloud_id(fields["cloud_id"]), sts_url=moto.server.url)
    assert identity.account == OTHER_ACCOUNT_ID
    claims = claims_from_identity(identity)
    assert claims.role_name == "app-role"  # same name as the trusted account's role
    with pytest.raises(AuthenticationDenied) as caught:
        check_bounds(
            AwsIamBounds(bound_aws_account_id=(DEFAULT_ACCOUNT_ID,), bound_role_name=("app-role",)),
            claims,
            None,
        )
    assert f"account {OTHER_ACCOUNT_ID} not in bound_aws_account_id" in caught.value.reason


# -- STS says no ---------------------------------------------------------------------------


def tampered_signature(request: UnverifiedStsRequest) -> UnverifiedStsRequest:
    authorization = dict(request.headers)["Authorization"]
    flipped = "0" if authorization[-1] != "0" else "1"
    return with_headers(request, set_={"Authorization": authorization[:-1] + flipped})


@pytest.mark.parametrize(
    ("make_request", "code"),
    [
        pytest.param(
            lambda moto: tampered_signature(
                decode_cloud_id(
                    sign_get_caller_identity(moto.app.credentials, url=moto.server.url + "/")[
                        "cloud_id"
                    ]
                )
            ),
            "SignatureDoesNotMatch",
            id="tampered signature",
        ),
        pytest.param(
            lambda moto: decode_cloud_id(
                sign_get_caller_identity(
                    AwsCredentials(
                        moto.app.credentials.access_key_id,
                        "wrong-secret",
                        moto.app.credentials.session_token,
                    ),
                    url=moto.server.url + "/",
                )["cloud_id"]
            ),
            "SignatureDoesNotMatch",
            id="wrong secret",
        ),
        pytest.param(
            lambda moto: decode_cloud_id(
                sign_get_caller_identity(
                    AwsCredentials("AKIAUNKNOWNKEY000000", "secret"), url=moto.server.url + "/"
                )["cloud_id"]
            ),
            "InvalidClientTokenId",
            id="unknown key",
        ),
        pytest.param(
            lambda moto: decode_cloud_id(
                sign_get_caller_identity(
                    AwsCredentials(
                        moto.app.credentials.access_key_id,
                        moto.app.credentials.secret_access_key,
                        "forged-session-token",
                    ),
                    url=moto.server.url + "/",
                )["cloud_id"]
            ),
            "InvalidClientTokenId",
            id="wrong session token",
        ),
    ],
)
async def test_sts_rejection_is_a_denial(moto: MotoWorld, make_request: Any, code: str) -> None:
    request: UnverifiedStsRequest = make_request(moto)
    with pytest.raises(AuthenticationDenied) as caught:
        await identify(request, sts_url=moto.server.url)
    assert f"HTTP 403 {code}" in caught.value.reason
    headers = dict(request.headers)
    for secret in (headers.get("X-Amz-Security-Token"), headers["Authorization"][-64:]):
        if secret:
            assert secret not in caught.value.reason


async def test_unsigned_allowlisted_header_is_forwarded_harmlessly(moto: MotoWorld) -> None:
    # botocore never signs User-Agent; STS checks only the signed headers, so adding one is
    # harmless and the login still succeeds.
    fields = sign_get_caller_identity(moto.app.credentials, url=moto.server.url + "/")
    request = with_headers(decode_cloud_id(fields["cloud_id"]), add=(("User-Agent", "x"),))
    assert (await identify(request, sts_url=moto.server.url)).arn == moto.app.arn


async def test_url_naming_another_host_is_never_contacted(moto: MotoWorld) -> None:
    with StubSts() as elsewhere:
        fields = sign_get_caller_identity(moto.app.credentials, url=elsewhere.url + "/")
        with pytest.raises(AuthenticationDenied) as caught:
            await identify(decode_cloud_id(fields["cloud_id"]), sts_url=moto.server.url)
        assert "requests are only sent to sts_url" in caught.value.reason
        assert elsewhere.request_count == 0
