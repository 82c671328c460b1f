"""load_master_key_provider: exactly one master key source, clear messages otherwise."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from strongroom.config import Settings
from strongroom.crypto import KmsMasterKey, LocalMasterKey, load_master_key_provider
from strongroom.errors import ConfigurationError

MASTER_B64 = base64.b64encode(bytes(range(32))).decode()


@pytest.fixture(autouse=True)
def _no_strongroom_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Settings also reads STRONGROOM_* from the environment; a developer's own must not leak in.
    for name in list(os.environ):
        if name.startswith("STRONGROOM_"):
            monkeypatch.delenv(name)


def settings(**fields: Any) -> Settings:
    return Settings(**fields)


def test_master_key(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = load_master_key_provider(settings(master_key=SecretStr(MASTER_B64)))

    assert isinstance(provider, LocalMasterKey)
    assert provider.describe() == "local key fp=232e3644"


def test_master_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRONGROOM_MASTER_KEY", MASTER_B64)

    assert load_master_key_provider(Settings()).describe() == "local key fp=232e3644"


def test_master_key_file(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_text(MASTER_B64)
    path.chmod(0o600)

    provider = load_master_key_provider(settings(master_key_file=path))

    assert isinstance(provider, LocalMasterKey)
    assert provider.describe() == "local key fp=232e3644"


def test_kms_key_id_is_not_contacted_at_load(aws_env: None) -> None:
    provider = load_master_key_provider(
        settings(
            kms_key_id="alias/strongroom",
            kms_region="eu-west-1",
            kms_endpoint_url="http://127.0.0.1:9",
        )
    )

    assert isinstance(provider, KmsMasterKey)
    assert (
        provider.describe() == "aws-kms alias/strongroom (region eu-west-1 at http://127.0.0.1:9)"
    )


def test_nothing_configured_says_what_to_set() -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_master_key_provider(settings())

    message = str(caught.value)
    for expected in (
        "STRONGROOM_MASTER_KEY ",
        "STRONGROOM_MASTER_KEY_FILE",
        "STRONGROOM_KMS_KEY_ID",
        "strongroom server --dev",
        "base64.b64encode(os.urandom(32))",
    ):
        assert expected in message


def test_blank_values_count_as_unset() -> None:
    with pytest.raises(ConfigurationError, match="no master key is configured"):
        load_master_key_provider(settings(master_key=SecretStr("  "), kms_key_id=""))


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        (
            {"master_key": SecretStr(MASTER_B64), "kms_key_id": "alias/k"},
            "STRONGROOM_MASTER_KEY and STRONGROOM_KMS_KEY_ID",
        ),
        (
            {"master_key": SecretStr(MASTER_B64), "master_key_file": Path("/x")},
            "STRONGROOM_MASTER_KEY and STRONGROOM_MASTER_KEY_FILE",
        ),
        (
            {"master_key_file": Path("/x"), "kms_key_id": "alias/k"},
            "STRONGROOM_MASTER_KEY_FILE and STRONGROOM_KMS_KEY_ID",
        ),
    ],
)
def test_more_than_one_source_is_refused(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError, match="exactly one") as caught:
        load_master_key_provider(settings(**fields))
    assert named in str(caught.value)
    assert MASTER_B64 not in str(caught.value)


def test_invalid_master_key_is_reported_without_echoing_it() -> None:
    bad = base64.b64encode(b"short key").decode()

    with pytest.raises(ConfigurationError, match="STRONGROOM_MASTER_KEY decodes to 9 bytes") as c:
        load_master_key_provider(settings(master_key=SecretStr(bad)))
    assert bad not in str(c.value)


def test_world_readable_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_text(MASTER_B64)
    path.chmod(0o644)

    with pytest.raises(ConfigurationError, match="chmod 600"):
        load_master_key_provider(settings(master_key_file=path))
