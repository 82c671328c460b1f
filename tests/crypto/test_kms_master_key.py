"""KmsMasterKey against a real moto server process."""

from __future__ import annotations

import base64
import socket
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ParamValidationError
from botocore.stub import Stubber

from strongroom.crypto import DecryptionError, KmsMasterKey, MasterKeyProvider
from strongroom.errors import ConfigurationError

DATA_KEY = bytes([9]) * 32


@pytest.fixture
def provider(moto_endpoint: str, kms_key_arn: str) -> KmsMasterKey:
    return KmsMasterKey(kms_key_arn, region="us-east-1", endpoint_url=moto_endpoint)


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_wrap_unwrap_round_trip(provider: KmsMasterKey) -> None:
    wrapped = provider.wrap(DATA_KEY, 4)

    assert isinstance(provider, MasterKeyProvider)
    assert DATA_KEY not in wrapped
    assert provider.unwrap(wrapped, 4) == DATA_KEY
    assert provider.unwrap(provider.wrap(DATA_KEY, 0), 0) == DATA_KEY


def test_wrap_binds_the_key_id_as_encryption_context(
    provider: KmsMasterKey, kms_client: Any
) -> None:
    wrapped = provider.wrap(DATA_KEY, 4)

    answer = kms_client.decrypt(
        CiphertextBlob=wrapped, EncryptionContext={"strongroom:data-key": "4"}
    )
    assert answer["Plaintext"] == DATA_KEY


def test_wrong_encryption_context_fails(provider: KmsMasterKey) -> None:
    wrapped = provider.wrap(DATA_KEY, 4)

    with pytest.raises(DecryptionError) as caught:
        provider.unwrap(wrapped, 5)
    assert caught.value.reason == "AWS KMS rejected the wrapped key (InvalidCiphertextException)"


def test_tampered_wrapped_key_fails(provider: KmsMasterKey) -> None:
    wrapped = bytearray(provider.wrap(DATA_KEY, 4))
    wrapped[-1] ^= 1

    with pytest.raises(DecryptionError):
        provider.unwrap(bytes(wrapped), 4)


def test_unwrap_refuses_something_that_is_not_a_data_key(
    provider: KmsMasterKey, kms_client: Any, kms_key_arn: str
) -> None:
    short = kms_client.encrypt(
        KeyId=kms_key_arn,
        Plaintext=b"sixteen bytes!!!",
        EncryptionContext={"strongroom:data-key": "4"},
    )["CiphertextBlob"]

    with pytest.raises(DecryptionError, match="could not be decrypted"):
        provider.unwrap(short, 4)


def test_unknown_key_is_a_configuration_error(moto_endpoint: str, aws_env: None) -> None:
    provider = KmsMasterKey(
        "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000",
        region="us-east-1",
        endpoint_url=moto_endpoint,
    )

    with pytest.raises(ConfigurationError, match="AWS KMS Encrypt with key arn:aws:kms") as caught:
        provider.wrap(DATA_KEY, 1)
    assert "NotFoundException" in str(caught.value)
    assert DATA_KEY.hex() not in str(caught.value)
    assert base64.b64encode(DATA_KEY).decode() not in str(caught.value)


def test_key_wrapped_under_another_kms_key_is_not_returned(
    provider: KmsMasterKey, kms_client: Any, moto_endpoint: str
) -> None:
    other_arn = kms_client.create_key()["KeyMetadata"]["Arn"]
    other = KmsMasterKey(other_arn, region="us-east-1", endpoint_url=moto_endpoint)
    wrapped = other.wrap(DATA_KEY, 1)

    # AWS answers IncorrectKeyException (a DecryptionError, see the stubbed test below); moto
    # answers AccessDeniedException (a ConfigurationError). Either way no key comes back.
    with pytest.raises((DecryptionError, ConfigurationError)):
        provider.unwrap(wrapped, 1)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("IncorrectKeyException", DecryptionError),
        ("InvalidCiphertextException", DecryptionError),
        ("AccessDeniedException", ConfigurationError),
        ("DisabledException", ConfigurationError),
        ("KMSInvalidStateException", ConfigurationError),
        ("NotFoundException", ConfigurationError),
    ],
)
def test_kms_answers_that_moto_cannot_give(
    aws_env: None, code: str, expected: type[Exception]
) -> None:
    client = botocore.session.get_session().create_client("kms", region_name="us-east-1")
    with Stubber(client) as stubber:
        stubber.add_client_error("decrypt", service_error_code=code, service_message="nope")
        provider = KmsMasterKey("alias/strongroom", region="us-east-1", client=client)

        with pytest.raises(expected):
            provider.unwrap(b"wrapped", 1)


def test_encrypt_never_maps_to_decryption_error(aws_env: None) -> None:
    client = botocore.session.get_session().create_client("kms", region_name="us-east-1")
    with Stubber(client) as stubber:
        stubber.add_client_error("encrypt", service_error_code="InvalidCiphertextException")
        provider = KmsMasterKey("alias/strongroom", region="us-east-1", client=client)

        with pytest.raises(ConfigurationError, match="InvalidCiphertextException"):
            provider.wrap(DATA_KEY, 1)


@pytest.mark.parametrize("response", [{}, {"Plaintext": "text"}])
def test_unexpected_decrypt_answers_are_refused(aws_env: None, response: dict[str, Any]) -> None:
    class Client:
        def decrypt(self, **_: Any) -> dict[str, Any]:
            return response

    provider = KmsMasterKey("alias/strongroom", region="us-east-1", client=Client())

    with pytest.raises(DecryptionError):
        provider.unwrap(b"wrapped", 1)


@pytest.mark.parametrize("response", [{}, None])
def test_unexpected_encrypt_answers_are_refused(aws_env: None, response: Any) -> None:
    class Client:
        def encrypt(self, **_: Any) -> Any:
            return response

    provider = KmsMasterKey("alias/strongroom", region="us-east-1", client=Client())

    with pytest.raises(ConfigurationError, match="AWS KMS Encrypt"):
        provider.wrap(DATA_KEY, 1)


def test_unreachable_endpoint_is_a_configuration_error(aws_env: None) -> None:
    endpoint = closed_port_url()
    provider = KmsMasterKey("alias/strongroom", region="us-east-1", endpoint_url=endpoint)

    with pytest.raises(ConfigurationError, match=f"at {endpoint} failed"):
        provider.wrap(DATA_KEY, 1)


def test_missing_credentials_are_a_configuration_error(
    moto_endpoint: str, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    provider = KmsMasterKey("alias/strongroom", region="us-east-1", endpoint_url=moto_endpoint)

    with pytest.raises(ConfigurationError, match="needs AWS credentials"):
        provider.wrap(DATA_KEY, 1)


def test_invalid_endpoint_is_a_configuration_error(aws_env: None) -> None:
    with pytest.raises(ConfigurationError, match="cannot set up an AWS KMS client"):
        KmsMasterKey("alias/strongroom", region="us-east-1", endpoint_url="not a url")


def test_describe_and_repr(aws_env: None) -> None:
    provider = KmsMasterKey("alias/strongroom", region="eu-central-1")

    assert provider.describe() == "aws-kms alias/strongroom (region eu-central-1)"
    assert repr(provider) == "KmsMasterKey('alias/strongroom', region='eu-central-1')"


@pytest.mark.parametrize(
    ("data_key", "key_id", "message"),
    [(bytes(16), 1, "32 bytes"), (DATA_KEY, -1, "key id"), (DATA_KEY, True, "key id")],
)
def test_wrap_rejects_bad_arguments_before_calling_kms(
    data_key: bytes, key_id: int, message: str
) -> None:
    provider = KmsMasterKey("alias/x", region="us-east-1", client=object())

    with pytest.raises(ValueError, match=message):
        provider.wrap(data_key, key_id)


def test_empty_wrapped_key_fails_before_calling_kms() -> None:
    provider = KmsMasterKey("alias/x", region="us-east-1", client=object())

    with pytest.raises(DecryptionError):
        provider.unwrap(b"", 1)


def test_parameter_errors_are_reported_without_echoing_parameters() -> None:
    class Client:
        def encrypt(self, **params: Any) -> Any:
            # botocore quotes offending values in this report; it must not reach the message.
            raise ParamValidationError(report=f"bad value: {params['Plaintext']!r}")

    provider = KmsMasterKey("alias/x", region="us-east-1", client=Client())

    with pytest.raises(ConfigurationError, match="invalid parameters") as caught:
        provider.wrap(DATA_KEY, 1)
    assert repr(DATA_KEY) not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_empty_key_id_is_refused() -> None:
    with pytest.raises(ValueError, match="KMS key id"):
        KmsMasterKey("", region="us-east-1", client=object())
