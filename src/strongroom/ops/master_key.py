"""``strongroom keys change-master``: the data keys re-wrapped under a new master key.

Only the wrapping changes (one small row per data key, in one transaction with its audit
event); no stored value is re-encrypted and no token or access key digest changes, because
the data keys themselves stay the same. So:

- servers running now keep working: they hold the data keys unwrapped since they started;
- a server (or an offline command) started later needs the new master key; with the old one
  it refuses to start (the old key no longer unwraps anything);
- backups made before the change are still wrapped under the old master key: keep it for as
  long as those backups are kept.

The new key is given as a file (``--new-master-key-file``, the same checks as
``STRONGROOM_MASTER_KEY_FILE``: mode 0600, base64 of 32 bytes), as the name of an environment
variable holding it (``--new-master-key-env``, so that the key is never on a command line), or
as an AWS KMS key (``--new-kms-key-id``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from strongroom.audit.event import AuditEvent
from strongroom.audit.writer import AuditWriter, audited_write
from strongroom.crypto import KmsMasterKey, LocalMasterKey, MasterKeyProvider
from strongroom.db.engine import Database
from strongroom.db.keys import rewrap_master_keys
from strongroom.errors import ConfigurationError
from strongroom.kit.clock import utc_now
from strongroom.kit.ids import new_request_id

ACTION = "sys.keys.change_master"


@dataclass(frozen=True)
class NewMasterKey:
    """How the new master key was given (exactly one of the three) and the setting it needs."""

    provider: MasterKeyProvider
    setting: str  # what the servers' environment must say from now on


def new_master_key(
    *,
    key_file: Path | None,
    key_env: str | None,
    kms_key_id: str | None,
    kms_region: str,
    kms_endpoint_url: str | None,
) -> NewMasterKey:
    """The new master key from the one source given; ConfigurationError otherwise."""
    one_way = (
        "give the new master key one way: --new-master-key-file PATH, "
        "--new-master-key-env VARIABLE or --new-kms-key-id ID"
    )
    given = [flag for flag, value in (
        ("--new-master-key-file", key_file),
        ("--new-master-key-env", key_env),
        ("--new-kms-key-id", kms_key_id),
    ) if value]  # fmt: skip
    if len(given) > 1:
        raise ConfigurationError(f"{one_way} (not {' and '.join(given)})")
    if key_file is not None:
        path = key_file.resolve()
        return NewMasterKey(LocalMasterKey.from_file(path), f"STRONGROOM_MASTER_KEY_FILE={path}")
    if key_env:
        text = os.environ.get(key_env)
        if not text:
            raise ConfigurationError(f"the environment variable {key_env} is not set")
        return NewMasterKey(
            LocalMasterKey.from_base64(text, source=key_env),
            f"STRONGROOM_MASTER_KEY (the value of {key_env})",
        )
    if kms_key_id:
        provider = KmsMasterKey(kms_key_id, region=kms_region, endpoint_url=kms_endpoint_url)
        return NewMasterKey(provider, f"STRONGROOM_KMS_KEY_ID={kms_key_id}")
    raise ConfigurationError(one_way)


def change_master(
    database: Database, writer: AuditWriter, old: MasterKeyProvider, new: MasterKeyProvider
) -> int:
    """Re-wrap every data key under ``new``, audited in the same transaction; the number of
    keys. ConfigurationError when ``new`` is the key in use, when ``old`` does not unwrap the
    keys, or when ``new`` cannot (nothing changes then)."""
    if old.describe() == new.describe():
        raise ConfigurationError(
            f"the new master key is the one in use ({new.describe()}): nothing to change"
        )
    event = AuditEvent(
        time=utc_now(),
        request_id=new_request_id(),
        source_ip="local",
        action=ACTION,
        path="/",
    )
    with audited_write(database, writer, event, 200) as connection:
        count = rewrap_master_keys(connection, old, new)
        # Descriptions name keys by fingerprint or KMS id: never key material.
        event.reason = f"{count} data keys re-wrapped: {old.describe()} -> {new.describe()}"
    return count
