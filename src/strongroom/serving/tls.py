"""Native TLS: the server's certificate and key, checked once at start (SPEC sections 1 and 11).

``STRONGROOM_TLS_CERT_FILE`` (a PEM certificate, its chain may follow it) and
``STRONGROOM_TLS_KEY_FILE`` (its unencrypted PEM private key) go together. The supervisor builds
the one :class:`ssl.SSLContext` here before it forks; every worker serves with it. A new
certificate takes a restart (a worker restarted alone keeps the context it was forked with, so
a half-renewed pair on disk never breaks one worker after another).

Every problem is a :class:`~strongroom.serving.startup.StartupError` whose message is one line
naming the file and what is wrong with it: one without the other, a file that cannot be read,
one that holds no PEM certificate or key (or an encrypted key: nobody is there to type its
password), a key that does not belong to the certificate.

Under TLS the workers serve logins themselves (``serving/placement.py``): a connection's TLS
session lives in the worker that accepted it, so it cannot be passed to a login process.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from strongroom.serving.startup import StartupError

# A certificate chain or a key is a few kilobytes; anything much larger is not one.
MAX_PEM_BYTES = 1024 * 1024


def _read(path: Path, what: str) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_PEM_BYTES + 1)
    except OSError as exc:
        raise StartupError(f"cannot read the TLS {what} file {path}: {exc.strerror}") from None
    if len(data) > MAX_PEM_BYTES:
        raise StartupError(f"the TLS {what} file {path} is too large to be one")
    return data


def _no_password() -> bytes:
    # An encrypted key makes OpenSSL ask for its password on the terminal: never wait there.
    raise StartupError("encrypted")


def server_context(cert_file: Path | None, key_file: Path | None) -> ssl.SSLContext | None:
    """The server's TLS context, or None when neither file is set; StartupError otherwise."""
    if cert_file is None and key_file is None:
        return None
    if cert_file is None or key_file is None:
        raise StartupError(
            "STRONGROOM_TLS_CERT_FILE and STRONGROOM_TLS_KEY_FILE go together: set both to "
            "serve HTTPS, or neither"
        )
    cert_pem = _read(cert_file, "certificate")
    key_pem = _read(key_file, "key")
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise StartupError(
            f"the TLS certificate file {cert_file} holds no PEM certificate"
        ) from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:  # "Password was not given but private key is encrypted"
        raise StartupError(
            f"the TLS key file {key_file} is encrypted: give the server an unencrypted key "
            "(readable by its user only)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise StartupError(f"the TLS key file {key_file} holds no PEM private key") from None
    if key.public_key() != certificate.public_key():
        raise StartupError(
            f"the TLS key file {key_file} does not match the certificate in {cert_file}"
        )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    try:
        context.load_cert_chain(cert_file, key_file, password=_no_password)
    except (OSError, ssl.SSLError, StartupError) as exc:  # changed on disk since read above
        raise StartupError(
            f"cannot load the TLS certificate {cert_file} with its key {key_file}: {exc}"
        ) from None
    return context
