"""Master key providers: what wraps the data keys at rest.

A provider turns a 32-byte data key into an opaque wrapped blob for the database and back,
binding each wrapped key to its data key id so that wrapped keys cannot be swapped between ids.

    MasterKeyProvider (protocol)
    ├── LocalMasterKey   a 32-byte key from STRONGROOM_MASTER_KEY or STRONGROOM_MASTER_KEY_FILE;
    │                    wraps with the envelope format (envelope.py), context
    │                    b"strongroom:data-key:" ‖ ASCII decimal key id, header key id = the
    │                    master key's 32-bit fingerprint
    └── KmsMasterKey     AWS KMS Encrypt/Decrypt with EncryptionContext
                         {"strongroom:data-key": "<key id>"}

Errors: a wrapped key that does not open (tampered, other id, other master key) raises
DecryptionError; a master key that cannot be used at all (missing, malformed, world-readable,
KMS unreachable or denied) raises ConfigurationError with a message saying what to change;
bad arguments raise ValueError. No message ever contains key material.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from strongroom.crypto.envelope import KEY_ID_MAX, KEY_SIZE, key_id_of, open_sealed, seal
from strongroom.crypto.errors import DecryptionError
from strongroom.errors import ConfigurationError
from strongroom.kit.private_files import private_directory

if TYPE_CHECKING:
    from strongroom.config import Settings

DATA_KEY_CONTEXT_PREFIX = b"strongroom:data-key:"
KMS_CONTEXT_KEY = "strongroom:data-key"
_FINGERPRINT_PREFIX = b"strongroom:master-key-fingerprint:"
# A base64 master key is 44 characters; anything much larger is not a key file.
_MAX_KEY_FILE_SIZE = 4096
# KMS answers that mean "this ciphertext is not for this key/context": tampering or mix-up,
# not a configuration problem.
_KMS_CIPHERTEXT_REJECTED = frozenset({"InvalidCiphertextException", "IncorrectKeyException"})

_HOW_TO_GENERATE = (
    "generate one with: "
    'python -c "import base64,os;print(base64.b64encode(os.urandom(32)).decode())" '
    "(or run `strongroom server --dev`, which creates a key file for development)"
)


@runtime_checkable
class MasterKeyProvider(Protocol):
    """Wraps and unwraps data keys. Implementations never put key material in messages."""

    def wrap(self, data_key: bytes, key_id: int) -> bytes:
        """Wrap a 32-byte data key numbered ``key_id`` (0..2**32-1) for storage.

        Raises ValueError for bad arguments, ConfigurationError if the master key is unusable.
        """
        ...

    def unwrap(self, wrapped: bytes, key_id: int) -> bytes:
        """Return the 32-byte data key that :meth:`wrap` wrapped under the same ``key_id``.

        Raises DecryptionError if ``wrapped`` does not open for this id and master key,
        ConfigurationError if the master key is unusable.
        """
        ...

    def describe(self) -> str:
        """A non-secret description for logs and readiness checks."""
        ...


def _check_data_key_args(data_key: bytes, key_id: int) -> None:
    if not isinstance(data_key, bytes) or len(data_key) != KEY_SIZE:
        raise ValueError(f"a data key is exactly {KEY_SIZE} bytes")
    _check_key_id(key_id)


def _check_key_id(key_id: int) -> None:
    # 0 is allowed: the database keeps a non-encryption key (the digest key) there.
    if isinstance(key_id, bool) or not isinstance(key_id, int) or not 0 <= key_id <= KEY_ID_MAX:
        raise ValueError(f"a data key id is an integer from 0 to {KEY_ID_MAX}")


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(fd, limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _data_key_context(key_id: int) -> bytes:
    return DATA_KEY_CONTEXT_PREFIX + str(key_id).encode("ascii")


class LocalMasterKey:
    """A 32-byte master key held in memory; wraps data keys with AES-256-GCM (envelope v1).

    The envelope header carries the key's 32-bit fingerprint as its key id, so a data key
    wrapped by another master key is recognised as such (see ``DecryptionError.reason``).
    """

    __slots__ = ("_fingerprint", "_key")

    def __init__(self, key: bytes) -> None:
        """Raises ValueError unless ``key`` is 32 bytes."""
        if not isinstance(key, bytes) or len(key) != KEY_SIZE:
            raise ValueError(f"a master key is exactly {KEY_SIZE} bytes")
        self._key = key
        digest = hashlib.sha256(_FINGERPRINT_PREFIX + key).digest()
        self._fingerprint = int.from_bytes(digest[:4], "big")

    @classmethod
    def from_base64(cls, text: str, *, source: str = "STRONGROOM_MASTER_KEY") -> LocalMasterKey:
        """Decode standard base64 of exactly 32 bytes (surrounding whitespace ignored).

        ``source`` names where the text came from, for the message. Raises ConfigurationError,
        with instructions to generate a key, for anything else; the text itself never appears.
        """
        try:
            key = base64.b64decode(text.strip(), validate=True)
        except ValueError:  # binascii.Error, or non-ASCII text
            raise ConfigurationError(f"{source} is not valid base64; {_HOW_TO_GENERATE}") from None
        if len(key) != KEY_SIZE:
            raise ConfigurationError(
                f"{source} decodes to {len(key)} bytes, but a master key is exactly "
                f"{KEY_SIZE} bytes; {_HOW_TO_GENERATE}"
            )
        return cls(key)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> LocalMasterKey:
        """Read a key file holding the base64 of 32 bytes.

        Raises ConfigurationError if the file is missing, unreadable, not a regular file,
        accessible by group or others (it must be ``chmod 600``), or does not hold a key.
        """
        path = Path(path)
        # O_NONBLOCK: opening a FIFO planted at the path must not hang start-up.
        flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            raise ConfigurationError(
                f"the master key file {path} does not exist; {_HOW_TO_GENERATE}, "
                f"save it there and run: chmod 600 {path}"
            ) from None
        except OSError as exc:
            raise ConfigurationError(
                f"cannot open the master key file {path}: {exc.strerror}"
            ) from None
        try:
            # fstat on the open descriptor, not stat on the path: the file checked is the file read.
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise ConfigurationError(f"the master key file {path} is not a regular file")
            if info.st_mode & 0o077:
                # Like ssh with private keys: a key others can read is a key others may have
                # copied, and one others can write lets them choose the key that new data
                # keys are wrapped under.
                raise ConfigurationError(
                    f"the master key file {path} is accessible by group or others "
                    f"(mode {stat.S_IMODE(info.st_mode):04o}); restrict it with: chmod 600 {path}"
                )
            content = _read_at_most(fd, _MAX_KEY_FILE_SIZE + 1)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read the master key file {path}: {exc.strerror}"
            ) from None
        finally:
            os.close(fd)
        source = f"the master key file {path}"
        if len(content) > _MAX_KEY_FILE_SIZE:
            raise ConfigurationError(f"{source} is too large to hold a master key")
        try:
            text = content.decode("ascii")
        except UnicodeDecodeError:
            raise ConfigurationError(f"{source} is not base64 text; {_HOW_TO_GENERATE}") from None
        return cls.from_base64(text, source=source)

    @property
    def fingerprint(self) -> str:
        """Eight hex digits identifying the key (a domain-separated SHA-256 prefix)."""
        return f"{self._fingerprint:08x}"

    def wrap(self, data_key: bytes, key_id: int) -> bytes:
        """Seal ``data_key`` under the master key for id ``key_id``. Raises ValueError."""
        _check_data_key_args(data_key, key_id)
        return seal(self._key, self._fingerprint, data_key, _data_key_context(key_id))

    def unwrap(self, wrapped: bytes, key_id: int) -> bytes:
        """Open a key wrapped for ``key_id``. Raises DecryptionError if it was wrapped by
        another master key or for another id, or was altered; ValueError for a bad id."""
        _check_key_id(key_id)
        wrapped_by = key_id_of(wrapped)
        if wrapped_by != self._fingerprint:
            # Fingerprints are not secret (describe() shows them) and tell an operator which
            # key file they need.
            raise DecryptionError(
                f"wrapped by master key fp={wrapped_by:08x}, not by fp={self.fingerprint}"
            )
        data_key = open_sealed(lambda _: self._key, wrapped, _data_key_context(key_id))
        if len(data_key) != KEY_SIZE:
            raise DecryptionError("unwrapped data key has the wrong length")
        return data_key

    def describe(self) -> str:
        return f"local key fp={self.fingerprint}"

    def __repr__(self) -> str:
        return f"LocalMasterKey(fp={self.fingerprint})"


def generate_master_key_file(path: str | os.PathLike[str]) -> LocalMasterKey:
    """Create ``path`` holding the base64 of a new random 32-byte key, mode 0600.

    Creates missing parent directories (mode 0700). The file appears atomically, complete or
    not at all. Raises FileExistsError if ``path`` exists (replacing a master key would make
    every data key wrapped by it unreadable), ConfigurationError if it cannot be written.
    """
    path = Path(path)
    key = secrets.token_bytes(KEY_SIZE)
    try:
        private_directory(path.parent)
        # mkstemp creates the file 0600 in the target directory, so link() below stays on one
        # file system and the key is never readable by others, not even for an instant.
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create the master key file {path}: {exc.strerror}"
        ) from None
    try:
        try:
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), 0o600)
                handle.write(base64.b64encode(key) + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            # link(), unlike rename(), refuses to replace an existing name: two processes racing
            # to create the key cannot overwrite each other's. Only link() raises FileExistsError.
            os.link(temporary, path)
        finally:
            os.unlink(temporary)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # make the new name itself durable
        finally:
            os.close(directory)
    except FileExistsError:
        raise FileExistsError(
            f"the master key file {path} already exists; refusing to overwrite a master key"
        ) from None
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create the master key file {path}: {exc.strerror}"
        ) from None
    return LocalMasterKey(key)


class KmsMasterKey:
    """Wraps data keys with an AWS KMS key (symmetric, ENCRYPT_DECRYPT).

    Each call is one KMS request bound by ``EncryptionContext={"strongroom:data-key": id}``;
    KMS refuses to decrypt a wrapped key under another id. ``client`` may inject a botocore
    KMS client; by default one is created for ``region`` (and ``endpoint_url``, for tests),
    with credentials from botocore's default chain.
    """

    __slots__ = ("_client", "_endpoint_url", "_key_id", "_region")

    def __init__(
        self,
        key_id: str,
        *,
        region: str,
        endpoint_url: str | None = None,
        client: Any | None = None,
    ) -> None:
        """Raises ValueError for an empty key id, ConfigurationError if no client can be made."""
        if not key_id:
            raise ValueError("a KMS key id, alias or ARN is required")
        self._key_id = key_id
        self._region = region
        self._endpoint_url = endpoint_url
        if client is None:
            # Only where KMS is configured: botocore costs every server process megabytes.
            import botocore.session
            from botocore.config import Config
            from botocore.exceptions import BotoCoreError

            # Bounded timeouts and retries: an unreachable KMS must fail start-up with a
            # message, not hang it.
            config = Config(
                connect_timeout=5,
                read_timeout=10,
                retries={"max_attempts": 3, "mode": "standard"},
            )
            try:
                client = botocore.session.get_session().create_client(
                    "kms", region_name=region, endpoint_url=endpoint_url, config=config
                )
            except (BotoCoreError, ValueError) as exc:
                raise ConfigurationError(
                    f"cannot set up an AWS KMS client for {self._where()}: {exc}"
                ) from None
        self._client = client

    def wrap(self, data_key: bytes, key_id: int) -> bytes:
        """KMS-encrypt ``data_key`` for id ``key_id``. Raises ValueError, ConfigurationError."""
        _check_data_key_args(data_key, key_id)
        response = self._call(
            "Encrypt",
            self._client.encrypt,
            KeyId=self._key_id,
            Plaintext=data_key,
            EncryptionContext=self._context(key_id),
        )
        wrapped = response.get("CiphertextBlob")
        if not isinstance(wrapped, bytes):
            raise ConfigurationError(f"AWS KMS Encrypt for {self._where()} returned no ciphertext")
        return wrapped

    def unwrap(self, wrapped: bytes, key_id: int) -> bytes:
        """KMS-decrypt a key wrapped for ``key_id``. Raises DecryptionError when KMS rejects the
        ciphertext (altered, other id, other key), ConfigurationError when KMS is unusable."""
        _check_key_id(key_id)
        if not wrapped:
            raise DecryptionError("truncated")  # KMS would only call it a malformed parameter
        response = self._call(
            "Decrypt",
            self._client.decrypt,
            CiphertextBlob=wrapped,
            # Naming the key makes KMS refuse a ciphertext made under any other key.
            KeyId=self._key_id,
            EncryptionContext=self._context(key_id),
        )
        data_key = response.get("Plaintext")
        if not isinstance(data_key, bytes) or len(data_key) != KEY_SIZE:
            raise DecryptionError("unwrapped data key has the wrong length")
        return data_key

    def describe(self) -> str:
        return f"aws-kms {self._key_id} ({self._where()})"

    def __repr__(self) -> str:
        return f"KmsMasterKey({self._key_id!r}, region={self._region!r})"

    def _where(self) -> str:
        where = f"region {self._region}"
        return f"{where} at {self._endpoint_url}" if self._endpoint_url else where

    @staticmethod
    def _context(key_id: int) -> dict[str, str]:
        return {KMS_CONTEXT_KEY: str(key_id)}

    def _call(self, operation: str, method: Callable[..., Any], **params: Any) -> dict[str, Any]:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            NoCredentialsError,
            ParamValidationError,
        )

        # Every handler raises `from None`: the botocore exception is summarised in the message,
        # and dropping it keeps request parameters (the plaintext data key) out of tracebacks.
        try:
            response = method(**params)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "Unknown"))
            if operation == "Decrypt" and code in _KMS_CIPHERTEXT_REJECTED:
                raise DecryptionError(f"AWS KMS rejected the wrapped key ({code})") from None
            raise ConfigurationError(
                f"AWS KMS {operation} with key {self._key_id} in {self._where()} failed: "
                f"{code}: {error.get('Message', '')}"
            ) from None
        except NoCredentialsError:
            raise ConfigurationError(
                f"AWS KMS {operation} needs AWS credentials and none were found (environment, "
                "shared credentials file, container or instance role)"
            ) from None
        except ParamValidationError:
            # Its text may quote parameter values; a data key must never reach a message.
            raise ConfigurationError(
                f"AWS KMS {operation} was given invalid parameters (check the key id)"
            ) from None
        except BotoCoreError as exc:
            raise ConfigurationError(
                f"AWS KMS {operation} with key {self._key_id} in {self._where()} failed: {exc}"
            ) from None
        if not isinstance(response, dict):
            raise ConfigurationError(f"AWS KMS {operation} returned an unexpected response")
        return response


def load_master_key_provider(settings: Settings) -> MasterKeyProvider:
    """The provider for the one master key source configured in ``settings``.

    Exactly one of ``master_key`` (STRONGROOM_MASTER_KEY), ``master_key_file``
    (STRONGROOM_MASTER_KEY_FILE) and ``kms_key_id`` (STRONGROOM_KMS_KEY_ID) must be set; an
    empty value counts as unset. Raises ConfigurationError, saying what to set, otherwise, and
    for a source that does not yield a usable key. A KMS key is not contacted here.
    """
    master_key = settings.master_key.get_secret_value().strip() if settings.master_key else ""
    kms_key_id = (settings.kms_key_id or "").strip()
    configured = [
        name
        for name, present in (
            ("STRONGROOM_MASTER_KEY", bool(master_key)),
            ("STRONGROOM_MASTER_KEY_FILE", settings.master_key_file is not None),
            ("STRONGROOM_KMS_KEY_ID", bool(kms_key_id)),
        )
        if present
    ]
    if not configured:
        raise ConfigurationError(
            "no master key is configured: set STRONGROOM_MASTER_KEY (base64 of 32 random "
            "bytes), STRONGROOM_MASTER_KEY_FILE (a file holding that, mode 0600) or "
            "STRONGROOM_KMS_KEY_ID (an AWS KMS key id, alias or ARN); "
            "or use `strongroom server --dev` for a development server with a generated key; "
            + _HOW_TO_GENERATE
        )
    if len(configured) > 1:
        raise ConfigurationError(
            "set exactly one master key source, not " + " and ".join(configured)
        )
    if master_key:
        return LocalMasterKey.from_base64(master_key)
    if settings.master_key_file is not None:
        return LocalMasterKey.from_file(settings.master_key_file)
    return KmsMasterKey(
        kms_key_id, region=settings.kms_region, endpoint_url=settings.kms_endpoint_url or None
    )
