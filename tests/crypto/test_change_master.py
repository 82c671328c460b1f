"""Changing the master key between a local key and AWS KMS (moto's, a real process): the data
keys are re-wrapped in one audited transaction, and a key that cannot unwrap what it wrapped
changes nothing (strongroom.ops.master_key)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from strongroom.audit.store import seal_anchor
from strongroom.audit.verification import verify_chain
from strongroom.audit.writer import AuditWriter
from strongroom.crypto import (
    DecryptionError,
    KmsMasterKey,
    LocalMasterKey,
    generate_master_key_file,
)
from strongroom.db.engine import Database
from strongroom.db.keys import load_or_create_keys, rotate
from strongroom.db.tables import audit_events, data_keys
from strongroom.errors import ConfigurationError
from strongroom.ops.master_key import NewMasterKey, change_master, new_master_key


def wrapped_keys(database: Database) -> dict[int, bytes]:
    with database.read() as connection:
        return dict(connection.execute(select(data_keys.c.id, data_keys.c.wrapped)).all())


def test_from_a_local_key_to_kms_and_back(
    database: Database, moto_endpoint: str, kms_key_arn: str
) -> None:
    local = LocalMasterKey(bytes(range(32)))
    keys = load_or_create_keys(database, local)
    seal_anchor(database, keys.audit)
    rotate(database, local)
    writer = AuditWriter(database, keys.audit)
    kms = KmsMasterKey(kms_key_arn, region="us-east-1", endpoint_url=moto_endpoint)

    assert change_master(database, writer, local, kms) == 3
    with pytest.raises(ConfigurationError, match="does not unwrap"):
        load_or_create_keys(database, local)
    under_kms = load_or_create_keys(database, kms)
    # The same data keys, differently wrapped: values and token digests stay as they were.
    assert under_kms.digester.digest("t-x") == keys.digester.digest("t-x")
    assert under_kms.keyring.newest_id == 2

    back = LocalMasterKey(bytes(range(1, 33)))
    assert change_master(database, writer, kms, back) == 3
    assert load_or_create_keys(database, back).digester.digest("t-x") == keys.digester.digest("t-x")
    with database.read() as connection:
        actions = connection.execute(select(audit_events.c.action, audit_events.c.reason)).all()
        assert verify_chain(connection, keys.audit).broken is None
    assert [action for action, _ in actions] == ["sys.keys.change_master"] * 2
    assert "aws-kms" in actions[0][1]


class WrapsOnly:
    """A master key that wraps but cannot unwrap (a KMS key without Decrypt rights)."""

    def __init__(self) -> None:
        self._inner = LocalMasterKey(bytes(32))

    def wrap(self, data_key: bytes, key_id: int) -> bytes:
        return self._inner.wrap(data_key, key_id)

    def unwrap(self, wrapped: bytes, key_id: int) -> bytes:
        raise DecryptionError("AccessDeniedException")

    def describe(self) -> str:
        return "wraps only"


def test_a_new_key_that_cannot_unwrap_changes_nothing(database: Database) -> None:
    local = LocalMasterKey(bytes(range(32)))
    load_or_create_keys(database, local)
    before = wrapped_keys(database)
    with pytest.raises(ConfigurationError, match="cannot unwrap what it wrapped"):
        change_master(
            database,
            AuditWriter(database, load_or_create_keys(database, local).audit),
            local,
            WrapsOnly(),
        )
    assert wrapped_keys(database) == before
    load_or_create_keys(database, local)  # still the key in use


def test_the_new_key_is_given_exactly_one_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def given(**ways: object) -> NewMasterKey:
        values: dict[str, Any] = {"key_file": None, "key_env": None, "kms_key_id": None}
        values.update(ways)
        return new_master_key(kms_region="us-east-1", kms_endpoint_url=None, **values)

    with pytest.raises(ConfigurationError, match="give the new master key one way"):
        given()
    key = tmp_path / "new.key"
    generate_master_key_file(key)
    with pytest.raises(ConfigurationError, match=r"\(not --new-master-key-file and --new-kms"):
        given(key_file=key, kms_key_id="alias/x")
    from_file = given(key_file=key)
    assert from_file.setting == f"STRONGROOM_MASTER_KEY_FILE={key}"
    assert from_file.provider.describe() == LocalMasterKey.from_file(key).describe()

    monkeypatch.setenv("NEW_STRONGROOM_KEY", "not base64!")
    with pytest.raises(ConfigurationError, match="NEW_STRONGROOM_KEY is not valid base64") as bad:
        given(key_env="NEW_STRONGROOM_KEY")
    assert "not base64!" not in str(bad.value)
    with pytest.raises(ConfigurationError, match="UNSET_STRONGROOM_KEY is not set"):
        given(key_env="UNSET_STRONGROOM_KEY")
    monkeypatch.setenv("NEW_STRONGROOM_KEY", key.read_text())
    assert given(key_env="NEW_STRONGROOM_KEY").setting.startswith("STRONGROOM_MASTER_KEY (")

    key.chmod(0o644)  # the same checks as STRONGROOM_MASTER_KEY_FILE
    with pytest.raises(ConfigurationError, match="accessible by group or others"):
        given(key_file=key)
    kms = given(kms_key_id="alias/strongroom")
    assert kms.setting == "STRONGROOM_KMS_KEY_ID=alias/strongroom"
