"""What every client command shares: the options each takes, error reporting, the session.

Every command takes ``--profile`` (default ``default``, or ``STRONGROOM_PROFILE``), ``--json``,
``--server-url`` (or ``STRONGROOM_URL``; overrides the profile's ``server_url``) and ``--debug``.
Exit codes: 0 success, 1 an error from the server or the environment (see
:mod:`strongroom.cli.errors`), 2 wrong usage (typer's own usage errors and ``typer.BadParameter``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from strongroom.cli.client import StrongroomClient
from strongroom.cli.errors import EXIT_ERROR, CliError
from strongroom.cli.output import Output, print_error
from strongroom.cli.profiles import (
    Profile,
    ProfileStore,
    TokenCache,
    strongroom_home,
    validate_base_url,
)
from strongroom.errors import InvalidNameError
from strongroom.kit.names import normalize_item_path, validate_object_name

MAX_VALUE_FILE_BYTES = 1024 * 1024
# In a listing, where a field is held back: the caller may list the entry, not read it.
NEEDS_READ = "(needs read)"

# -- options every command takes ------------------------------------------------------------

ProfileOption = Annotated[
    str,
    typer.Option(
        "--profile",
        envvar="STRONGROOM_PROFILE",
        metavar="NAME",
        help="Profile to use (~/.strongroom/profiles/NAME.toml; see `strongroom configure`).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
ServerUrlOption = Annotated[
    str | None,
    typer.Option(
        "--server-url",
        envvar="STRONGROOM_URL",
        metavar="URL",
        help="Server to talk to, overriding the profile's server_url.",
    ),
]
DebugOption = Annotated[
    bool, typer.Option("--debug", help="Show the Python traceback when something fails.")
]


# -- plumbing --------------------------------------------------------------------------------


@contextmanager
def reported_errors(debug: bool, as_json: bool = False) -> Iterator[None]:
    """Turn failures into a message on stderr (``{"error", "message"}`` with ``--json``) and
    exit 1; let usage errors through (exit 2)."""
    try:
        yield
    except (typer.Exit, typer.Abort, typer.BadParameter):
        raise
    except CliError as exc:
        if debug:
            traceback.print_exc()
        print_error(exc, as_json=as_json)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except BrokenPipeError:
        # `strongroom list-items | head`: the reader left; stop quietly, as cat does.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(EXIT_ERROR) from None
    except Exception as exc:
        if debug:
            traceback.print_exc()
        print_error(
            CliError(
                f"unexpected {type(exc).__name__}: {str(exc)[:300]}",
                hint="run the command again with --debug to see where it failed",
            ),
            as_json=as_json,
        )
        raise typer.Exit(EXIT_ERROR) from None


@dataclass
class Connected:
    """What a command body works with inside ``connect``: the client, the output, the profile."""

    client: StrongroomClient
    out: Output
    profile: Profile


def server_url_of(override: str | None, profile: Profile) -> str:
    if override is None:
        return profile.server_url
    try:
        return validate_base_url(override)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--server-url' / STRONGROOM_URL") from None


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


@contextmanager
def connect(
    profile: str, as_json: bool, server_url: str | None, debug: bool
) -> Iterator[Connected]:
    """Load the profile, open a client for it, and report any failure of the body."""
    out = Output(as_json=as_json)
    with reported_errors(debug, as_json):
        home = strongroom_home()
        loaded = ProfileStore(home).load(profile)
        url = server_url_of(server_url, loaded)
        if url.startswith("http://") and not is_loopback(url):
            out.notice(
                f"warning: {url} is plain HTTP; tokens and secrets cross the network unencrypted"
            )
        cache = TokenCache(home, loaded.name, loaded.access_id)
        with StrongroomClient(loaded, server_url=url, cache=cache) as client:
            yield Connected(client, out, loaded)


def object_name(value: str, *, kind: str, option: str) -> str:
    try:
        return validate_object_name(value, kind=kind)
    except InvalidNameError as exc:
        raise typer.BadParameter(exc.message, param_hint=option) from None


def item_name(value: str, option: str = "'--name'") -> str:
    try:
        return normalize_item_path(value)
    except InvalidNameError as exc:
        raise typer.BadParameter(exc.message, param_hint=option) from None


def read_value(value: str | None, file: Path | None) -> str:
    """The secret value from ``--value``, ``--value -`` (stdin) or ``--file``."""
    if value is not None and file is None:
        if value != "-":
            return value
        data = sys.stdin.read()
        # `echo secret | …` adds one newline that is not part of the secret.
        return data[:-2] if data.endswith("\r\n") else data.removesuffix("\n")
    if value is not None or file is None:
        raise typer.BadParameter(
            "give the value with exactly one of --value or --file", param_hint="'--value'"
        )
    try:
        with file.open("rb") as handle:
            raw = handle.read(MAX_VALUE_FILE_BYTES + 1)
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot read {file}: {exc.strerror}", param_hint="'--file'"
        ) from None
    if len(raw) > MAX_VALUE_FILE_BYTES:
        raise typer.BadParameter(f"{file} is larger than 1 MiB", param_hint="'--file'")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise typer.BadParameter(
            f"{file} is not UTF-8 text (values are text; base64-encode binary data)",
            param_hint="'--file'",
        ) from None


def parse_sub_claims(values: list[str] | None) -> dict[str, list[str]]:
    claims: dict[str, list[str]] = {}
    for entry in values or []:
        key, sep, listed = entry.partition("=")
        parts = [part.strip() for part in listed.split(",") if part.strip()]
        if not sep or not key.strip() or not parts:
            raise typer.BadParameter(
                f"{entry!r} is not key=value[,value…] (e.g. role_name=web-*)",
                param_hint="'--sub-claims'",
            )
        claims.setdefault(key.strip(), []).extend(parts)
    return claims


def split_tags(values: list[str] | None) -> list[str]:
    return [tag.strip() for value in values or [] for tag in value.split(",") if tag.strip()]


def print_or(out: Output, data: Any, text: Callable[[], None]) -> None:
    if out.as_json:
        out.json(data)
    else:
        text()
