"""The server's TLS files, checked at start (serving/tls.py): each problem is one line naming
the file and what is wrong with it."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from strongroom.config import Settings
from strongroom.serving.placement import Placement
from strongroom.serving.startup import StartupError
from strongroom.serving.tls import server_context
from tests.support.tls import self_signed


def test_neither_file_is_plain_http() -> None:
    assert server_context(None, None) is None


def test_a_matching_pair_gives_a_server_context(tmp_path: Path) -> None:
    files = self_signed(tmp_path)
    context = server_context(files.cert, files.key)
    assert isinstance(context, ssl.SSLContext)
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


@pytest.mark.parametrize("missing", ["cert", "key"])
def test_one_without_the_other_is_refused(tmp_path: Path, missing: str) -> None:
    files = self_signed(tmp_path)
    cert = None if missing == "cert" else files.cert
    key = None if missing == "key" else files.key
    with pytest.raises(StartupError, match="go together: set both"):
        server_context(cert, key)


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    files = self_signed(tmp_path)
    with pytest.raises(StartupError) as missing:
        server_context(tmp_path / "nowhere.crt", files.key)
    assert str(missing.value) == (
        f"cannot read the TLS certificate file {tmp_path / 'nowhere.crt'}: "
        "No such file or directory"
    )
    with pytest.raises(StartupError, match=r"cannot read the TLS key file .*: Is a directory"):
        server_context(files.cert, tmp_path)


def test_files_that_hold_no_pem_are_named(tmp_path: Path) -> None:
    files = self_signed(tmp_path)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(StartupError, match=r"junk\.pem holds no PEM certificate"):
        server_context(junk, files.key)
    with pytest.raises(StartupError, match=r"junk\.pem holds no PEM private key"):
        server_context(files.cert, junk)
    # The two swapped: the key file holds a certificate, the certificate file a key.
    with pytest.raises(StartupError, match="holds no PEM certificate"):
        server_context(files.key, files.cert)


def test_an_encrypted_key_is_refused_without_asking_for_its_password(tmp_path: Path) -> None:
    files = self_signed(tmp_path, password=b"secret")
    with pytest.raises(StartupError, match=r"server\.key is encrypted"):
        server_context(files.cert, files.key)


def test_a_key_of_another_certificate_is_refused(tmp_path: Path) -> None:
    ours = self_signed(tmp_path, "ours")
    theirs = self_signed(tmp_path, "theirs")
    with pytest.raises(StartupError) as mismatch:
        server_context(ours.cert, theirs.key)
    assert str(mismatch.value) == (
        f"the TLS key file {theirs.key} does not match the certificate in {ours.cert}"
    )


def test_under_tls_the_workers_serve_logins_and_no_login_process_starts(tmp_path: Path) -> None:
    files = self_signed(tmp_path)
    plain = Settings()
    assert plain.login_process_count(2) == 2
    assert Placement.server_worker(plain).login_handoff
    tls = Settings(tls_cert_file=files.cert, tls_key_file=files.key, login_processes=3)
    assert tls.tls
    assert tls.login_process_count(2) == 0
    assert not Placement.server_worker(tls).login_handoff
    # A login still runs off the read loop: on the worker's login thread (or inline if idle).
    assert Placement.server_worker(tls).login_thread
