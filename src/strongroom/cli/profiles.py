"""The CLI's state on disk: profiles and the token cache (SPEC section 8).

Layout, under ``$STRONGROOM_HOME`` (default ``~/.strongroom``), directories mode 0700 and files
mode 0600, every file written atomically (temporary file in the same directory, fsync, rename)::

    profiles/<name>.toml           one profile: flat keys
        server_url    = "http://127.0.0.1:8300"
        access_id     = "p-…"
        access_type   = "aws_iam" | "access_key"
        access_key    = "…"                       (access_key profiles only)
        aws_sts_url   = "https://sts.amazonaws.com/"   (aws_iam; optional)
        aws_sts_region = "eu-west-1"              (aws_iam; optional, else derived from the URL)
        server_id     = "…"                       (optional: signed X-Strongroom-Server-ID)
    .tmp_creds/<profile>-<access_id>   the last token, JSON
        {"token", "expiry" (unix seconds), "expires_at" (ISO), "server_url"}
    .tmp_creds/<profile>-<access_id>.lock   serialises logins of one profile across processes

A profile written in the Akeyless style (one table named after the profile) is read as well.
A cached token is used only for the server it was issued by, and only until
``REFRESH_MARGIN_SECONDS`` before it expires.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import tomli_w

from strongroom.cli.errors import ProfileError
from strongroom.kit.private_files import private_directory

DEFAULT_SERVER_URL = "http://127.0.0.1:8300"
DEFAULT_PROFILE = "default"
HOME_ENV = "STRONGROOM_HOME"
REFRESH_MARGIN_SECONDS = 60
ACCESS_TYPES = ("aws_iam", "access_key")
AccessType = Literal["aws_iam", "access_key"]

# Profile names and access IDs become file names: no separators, no '.'/'..' (path traversal).
_PROFILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
_ACCESS_ID = re.compile(r"p-[a-z0-9]{1,40}")
_URL = re.compile(r"https?://[^\s/?#]+/?", re.IGNORECASE)
_PROFILE_KEYS = (
    "server_url",
    "access_id",
    "access_type",
    "access_key",
    "aws_sts_url",
    "aws_sts_region",
    "server_id",
)


def strongroom_home(environ: Mapping[str, str] | None = None) -> Path:
    """``$STRONGROOM_HOME`` or ``~/.strongroom``."""
    env = os.environ if environ is None else environ
    configured = env.get(HOME_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".strongroom"


def validate_profile_name(unverified: str) -> str:
    """Return the name if it can be a file name; raise ValueError otherwise."""
    if not _PROFILE_NAME.fullmatch(unverified):
        raise ValueError(
            f"profile name {unverified!r} is not valid: use 1-64 of A-Z a-z 0-9 . _ - "
            "(not starting with '.' or '-')"
        )
    return unverified


def validate_access_id(unverified: str) -> str:
    """Return the access ID if it looks like ``p-…``; raise ValueError otherwise."""
    if not _ACCESS_ID.fullmatch(unverified):
        raise ValueError(
            f"access ID {unverified!r} is not valid: it looks like p-abcdef123456 "
            "(as printed when the auth method was created)"
        )
    return unverified


def validate_base_url(unverified: str, *, what: str = "server URL") -> str:
    """Return ``scheme://host[:port]`` (no trailing slash) or raise ValueError."""
    if not _URL.fullmatch(unverified) or "@" in unverified:
        raise ValueError(
            f"{what} {unverified!r} is not valid: use http(s)://host[:port] "
            "without a path, query or credentials"
        )
    return unverified.rstrip("/")


@dataclass(frozen=True)
class Profile:
    """One named way to reach a server and log in. ``access_key`` stays out of repr."""

    name: str
    access_id: str
    access_type: AccessType
    server_url: str = DEFAULT_SERVER_URL
    access_key: str | None = field(default=None, repr=False)
    aws_sts_url: str | None = None
    aws_sts_region: str | None = None
    server_id: str | None = None

    def as_toml(self) -> dict[str, str]:
        """The keys written to the profile file (unset optional keys are left out)."""
        values: dict[str, Any] = {key: getattr(self, key) for key in _PROFILE_KEYS}
        return {key: str(value) for key, value in values.items() if value not in (None, "")}


def _private_dir(path: Path) -> Path:
    """Create ``path`` with mode 0700, and any missing parent (e.g. the home) likewise;
    tighten ``path`` itself if it exists with looser bits. Existing parents are left alone."""
    return private_directory(path, tighten=True)


def write_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600, creating the directory 0700.

    A reader sees the old file or the new one, never a half-written one, and the file is
    never readable by others, not even for a moment (it is created 0600 before any write).
    """
    directory = _private_dir(path.parent)
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


class ProfileStore:
    """Profiles under ``<home>/profiles``."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.directory = home / "profiles"

    def path(self, name: str) -> Path:
        return self.directory / f"{validate_profile_name(name)}.toml"

    def save(self, profile: Profile) -> Path:
        """Write the profile (replacing any previous one of that name); return its path."""
        path = self.path(profile.name)
        write_private_file(path, tomli_w.dumps(profile.as_toml()).encode())
        return path

    def load(self, name: str) -> Profile:
        """Read a profile; raise ProfileError with a hint when it is missing or broken."""
        try:
            path = self.path(name)
        except ValueError as exc:
            raise ProfileError(str(exc)) from None
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise ProfileError(
                f"no profile named {name!r} (looked for {path})",
                hint=(
                    f"create it: strongroom configure --profile {name} --access-id p-… "
                    "--access-type aws_iam|access_key [--access-key …] [--server-url URL]"
                ),
            ) from None
        except OSError as exc:
            raise ProfileError(f"cannot read profile {path}: {exc.strerror}") from None
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ProfileError(
                f"profile {path} is not valid TOML: {exc}",
                hint=f"fix the file or run strongroom configure --profile {name} again",
            ) from None
        return _profile_from_mapping(name, data, path)


def _profile_from_mapping(name: str, data: dict[str, Any], path: Path) -> Profile:
    # Akeyless writes one table headed by the profile name; accept that shape too.
    nested = data.get(name)
    if isinstance(nested, dict) and "access_id" not in data:
        data = nested
    fix = f"run strongroom configure --profile {name} again"
    values = {key: data.get(key) for key in _PROFILE_KEYS}
    for key, value in values.items():
        if value is not None and not isinstance(value, str):
            raise ProfileError(f"profile {path}: {key} must be a string", hint=fix)
    access_type = values["access_type"]
    if access_type not in ACCESS_TYPES:
        raise ProfileError(
            f"profile {path}: access_type must be one of {', '.join(ACCESS_TYPES)}", hint=fix
        )
    try:
        access_id = validate_access_id(values["access_id"] or "")
        server_url = validate_base_url(values["server_url"] or DEFAULT_SERVER_URL)
    except ValueError as exc:
        raise ProfileError(f"profile {path}: {exc}", hint=fix) from None
    if access_type == "access_key" and not values["access_key"]:
        raise ProfileError(f"profile {path}: an access_key profile needs access_key", hint=fix)
    return Profile(
        name=name,
        access_id=access_id,
        access_type=access_type,
        server_url=server_url,
        access_key=values["access_key"] or None,
        aws_sts_url=values["aws_sts_url"] or None,
        aws_sts_region=values["aws_sts_region"] or None,
        server_id=values["server_id"] or None,
    )


@dataclass(frozen=True)
class CachedToken:
    """A token from an earlier login. The token itself stays out of repr."""

    token: str = field(repr=False)
    expiry: float  # unix seconds
    server_url: str

    def usable(self, now: float) -> bool:
        """Still good for at least ``REFRESH_MARGIN_SECONDS``."""
        return now < self.expiry - REFRESH_MARGIN_SECONDS


class TokenCache:
    """``<home>/.tmp_creds/<profile>-<access_id>``: the token of one profile, and its lock."""

    def __init__(self, home: Path, profile_name: str, access_id: str) -> None:
        self.directory = home / ".tmp_creds"
        stem = f"{validate_profile_name(profile_name)}-{validate_access_id(access_id)}"
        self.path = self.directory / stem
        self._lock_path = self.directory / f"{stem}.lock"

    def load(self, server_url: str) -> CachedToken | None:
        """The cached token for ``server_url``, or None if absent, unreadable or for another
        server (a token is never sent to a server that did not issue it)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            cached = CachedToken(
                token=str(data["token"]),
                expiry=float(data["expiry"]),
                server_url=str(data["server_url"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return cached if cached.server_url == server_url else None

    def store(self, cached: CachedToken, expires_at: str) -> None:
        """Write the token (0600, atomically)."""
        record = {
            "token": cached.token,
            "expiry": int(cached.expiry),
            "expires_at": expires_at,
            "server_url": cached.server_url,
        }
        write_private_file(self.path, json.dumps(record).encode())

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold an exclusive lock across processes, so that concurrent commands of one
        profile log in once and share the token (and never sign two identical requests)."""
        _private_dir(self.directory)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                import fcntl
            except ImportError:  # not POSIX: run unlocked
                yield
                return
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
