"""The cryptography core: the ciphertext format, data keys, master key providers, digests.

Pure apart from the key providers' I/O (a key file, AWS KMS). See SPEC section 6.
"""

from strongroom.crypto.digest import TokenDigester
from strongroom.crypto.envelope import item_context, key_id_of, open_sealed, seal
from strongroom.crypto.errors import DecryptionError
from strongroom.crypto.keyring import Keyring, derive_key, new_data_key
from strongroom.crypto.master import (
    KmsMasterKey,
    LocalMasterKey,
    MasterKeyProvider,
    generate_master_key_file,
    load_master_key_provider,
)

__all__ = [
    "DecryptionError",
    "Keyring",
    "KmsMasterKey",
    "LocalMasterKey",
    "MasterKeyProvider",
    "TokenDigester",
    "derive_key",
    "generate_master_key_file",
    "item_context",
    "key_id_of",
    "load_master_key_provider",
    "new_data_key",
    "open_sealed",
    "seal",
]
