"""LocalMasterKey: wrapping, wrong keys, base64 and file validation, key file generation."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from strongroom.crypto import (
    DecryptionError,
    LocalMasterKey,
    MasterKeyProvider,
    generate_master_key_file,
    key_id_of,
    open_sealed,
    seal,
)
from strongroom.errors import ConfigurationError

MASTER = bytes(range(32))
DATA_KEY = bytes([7]) * 32
GENERATE_HINT = 'python -c "import base64,os;print(base64.b64encode(os.urandom(32)).decode())"'


def write_key_file(path: Path, content: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(content)
    path.chmod(mode)
    return path


def test_wrap_unwrap_round_trip() -> None:
    master = LocalMasterKey(MASTER)

    wrapped = master.wrap(DATA_KEY, 3)

    assert isinstance(master, MasterKeyProvider)
    assert DATA_KEY not in wrapped
    assert master.unwrap(wrapped, 3) == DATA_KEY
    assert master.unwrap(master.wrap(DATA_KEY, 0), 0) == DATA_KEY  # id 0: the digest key


def test_wrapped_format_is_an_envelope_under_the_fingerprint_bound_to_the_key_id() -> None:
    master = LocalMasterKey(MASTER)

    wrapped = master.wrap(DATA_KEY, 3)

    # Pinned: stored wrapped keys name the master key that wrapped them by this fingerprint.
    assert master.fingerprint == "232e3644"
    assert key_id_of(wrapped) == 0x232E3644
    assert open_sealed(lambda _: MASTER, wrapped, b"strongroom:data-key:3") == DATA_KEY


def test_wrapped_key_does_not_unwrap_for_another_id() -> None:
    master = LocalMasterKey(MASTER)

    with pytest.raises(DecryptionError):
        master.unwrap(master.wrap(DATA_KEY, 1), 2)


def test_wrong_master_key_fails_and_says_which_key_wrapped_it() -> None:
    wrapped = LocalMasterKey(MASTER).wrap(DATA_KEY, 1)
    other = LocalMasterKey(bytes(32))

    with pytest.raises(DecryptionError) as caught:
        other.unwrap(wrapped, 1)
    assert (
        caught.value.reason == f"wrapped by master key fp=232e3644, not by fp={other.fingerprint}"
    )
    assert str(caught.value) == "ciphertext could not be decrypted"


def test_tampered_wrapped_key_fails() -> None:
    master = LocalMasterKey(MASTER)
    wrapped = bytearray(master.wrap(DATA_KEY, 1))
    wrapped[-1] ^= 1

    with pytest.raises(DecryptionError):
        master.unwrap(bytes(wrapped), 1)


def test_unwrap_refuses_something_that_is_not_a_data_key() -> None:
    master = LocalMasterKey(MASTER)
    short = seal(MASTER, 0x232E3644, b"sixteen bytes!!!", b"strongroom:data-key:1")

    with pytest.raises(DecryptionError):
        master.unwrap(short, 1)


@pytest.mark.parametrize(
    ("data_key", "key_id", "message"),
    [(bytes(31), 1, "32 bytes"), (DATA_KEY, -1, "key id"), (DATA_KEY, 2**32, "key id")],
)
def test_wrap_rejects_bad_arguments(data_key: bytes, key_id: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LocalMasterKey(MASTER).wrap(data_key, key_id)


def test_describe_and_repr_show_the_fingerprint_only() -> None:
    master = LocalMasterKey(MASTER)

    assert master.describe() == "local key fp=232e3644"
    assert repr(master) == "LocalMasterKey(fp=232e3644)"
    for text in (master.describe(), repr(master)):
        assert MASTER.hex() not in text
        assert base64.b64encode(MASTER).decode() not in text


def test_constructor_needs_32_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        LocalMasterKey(bytes(16))


# --- base64 ------------------------------------------------------------------------------------


def test_from_base64() -> None:
    text = base64.b64encode(MASTER).decode()

    assert LocalMasterKey.from_base64(f"  {text}\n").fingerprint == "232e3644"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "decodes to 0 bytes"),
        (base64.b64encode(bytes(31)).decode(), "decodes to 31 bytes"),
        (base64.b64encode(bytes(33)).decode(), "decodes to 33 bytes"),
        ("not base64 at all!", "not valid base64"),
        (base64.urlsafe_b64encode(b"\xff" * 32).decode(), "not valid base64"),
        ("é" * 44, "not valid base64"),
    ],
)
def test_from_base64_refuses_anything_but_32_bytes(text: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        LocalMasterKey.from_base64(text)
    error = str(caught.value)
    assert error.startswith("STRONGROOM_MASTER_KEY ")
    assert GENERATE_HINT in error
    assert "strongroom server --dev" in error
    if text:
        assert text not in error


# --- key files ---------------------------------------------------------------------------------


def test_from_file(tmp_path: Path) -> None:
    path = write_key_file(tmp_path / "master.key", base64.b64encode(MASTER) + b"\n")

    assert LocalMasterKey.from_file(path).fingerprint == "232e3644"
    assert LocalMasterKey.from_file(str(path)).fingerprint == "232e3644"
    path.chmod(0o400)
    assert LocalMasterKey.from_file(path).fingerprint == "232e3644"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o620, 0o602, 0o610])
def test_from_file_refuses_a_file_others_can_access(tmp_path: Path, mode: int) -> None:
    path = write_key_file(tmp_path / "master.key", base64.b64encode(MASTER), mode)

    with pytest.raises(ConfigurationError, match="group or others") as caught:
        LocalMasterKey.from_file(path)
    assert f"chmod 600 {path}" in str(caught.value)
    assert f"mode {mode:04o}" in str(caught.value)


def test_from_file_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist") as caught:
        LocalMasterKey.from_file(tmp_path / "absent.key")
    assert GENERATE_HINT in str(caught.value)


def test_from_file_refuses_a_directory(tmp_path: Path) -> None:
    directory = tmp_path / "dir"
    directory.mkdir(mode=0o700)

    with pytest.raises(ConfigurationError, match="not a regular file"):
        LocalMasterKey.from_file(directory)


def test_from_file_refuses_a_fifo_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)

    with pytest.raises(ConfigurationError, match="not a regular file"):
        LocalMasterKey.from_file(fifo)


def test_from_file_unopenable(tmp_path: Path) -> None:
    not_a_directory = write_key_file(tmp_path / "file", b"")

    with pytest.raises(ConfigurationError, match="cannot open the master key file"):
        LocalMasterKey.from_file(not_a_directory / "master.key")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (base64.b64encode(bytes(16)), "decodes to 16 bytes"),
        (b"\xff\xfe" * 22, "not base64 text"),
        (b"A" * 5000, "too large"),
        (b"", "decodes to 0 bytes"),
    ],
)
def test_from_file_refuses_content_that_is_not_a_key(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = write_key_file(tmp_path / "master.key", content)

    with pytest.raises(ConfigurationError, match=message) as caught:
        LocalMasterKey.from_file(path)
    assert str(caught.value).startswith(f"the master key file {path} ")


def test_generate_master_key_file(tmp_path: Path) -> None:
    path = tmp_path / "new" / "nested" / "master.key"

    master = generate_master_key_file(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0
    assert LocalMasterKey.from_file(path).fingerprint == master.fingerprint
    assert len(base64.b64decode(path.read_bytes(), validate=False)) == 32
    assert [entry.name for entry in path.parent.iterdir()] == ["master.key"]  # no temp left


def test_generate_master_key_file_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o000)
    try:
        generate_master_key_file(tmp_path / "master.key")
    finally:
        os.umask(previous)

    assert stat.S_IMODE((tmp_path / "master.key").stat().st_mode) == 0o600


def test_generate_master_key_file_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    first = generate_master_key_file(path)
    before = path.read_bytes()

    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        generate_master_key_file(path)
    assert path.read_bytes() == before
    assert LocalMasterKey.from_file(path).fingerprint == first.fingerprint
    assert [entry.name for entry in tmp_path.iterdir()] == ["master.key"]


def test_generate_master_key_file_refuses_to_replace_any_existing_file(tmp_path: Path) -> None:
    path = write_key_file(tmp_path / "master.key", b"something else")

    with pytest.raises(FileExistsError):
        generate_master_key_file(path)
    assert path.read_bytes() == b"something else"


def test_generate_master_key_file_reports_an_unwritable_place(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")

    with pytest.raises(ConfigurationError, match="cannot create the master key file"):
        generate_master_key_file(blocker / "master.key")


def test_generated_keys_differ(tmp_path: Path) -> None:
    first = generate_master_key_file(tmp_path / "a.key")
    second = generate_master_key_file(tmp_path / "b.key")

    assert first.fingerprint != second.fingerprint
