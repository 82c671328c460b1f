"""The client commands of SPEC section 8, each a thin layer over :class:`StrongroomClient`.

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
from enum import StrEnum
from ipaddress import ip_address
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from strongroom.cli.client import Json, StrongroomClient
from strongroom.cli.errors import EXIT_ERROR, CliError
from strongroom.cli.output import Output, print_error
from strongroom.cli.profiles import (
    DEFAULT_PROFILE,
    DEFAULT_SERVER_URL,
    Profile,
    ProfileStore,
    TokenCache,
    strongroom_home,
    validate_access_id,
    validate_base_url,
    validate_profile_name,
)
from strongroom.errors import InvalidNameError
from strongroom.kit.names import normalize_folder_path, normalize_item_path, validate_object_name

MAX_VALUE_FILE_BYTES = 1024 * 1024

# -- choices (SPEC sections 3 and 4) --------------------------------------------------------


class AccessType(StrEnum):
    AWS_IAM = "aws_iam"
    ACCESS_KEY = "access_key"


class Capability(StrEnum):
    READ = "read"
    LIST = "list"
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    DENY = "deny"


class RuleType(StrEnum):
    ITEM = "item-rule"
    AUTH_METHOD = "auth-method-rule"
    ROLE = "role-rule"
    AUDIT = "audit-rule"


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

PANEL_SETUP = "Profile and login"
PANEL_AUTH_METHODS = "Auth methods"
PANEL_ROLES = "Access roles"
PANEL_SECRETS = "Secrets"


# -- plumbing --------------------------------------------------------------------------------


@contextmanager
def reported_errors(debug: bool) -> Iterator[None]:
    """Turn failures into a message on stderr and exit 1; let usage errors through (exit 2)."""
    try:
        yield
    except (typer.Exit, typer.Abort, typer.BadParameter):
        raise
    except CliError as exc:
        if debug:
            traceback.print_exc()
        print_error(exc)
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
        sys.stderr.write(
            f"error: unexpected {type(exc).__name__}: {str(exc)[:300]}\n"
            "hint: run the command again with --debug to see where it failed\n"
        )
        raise typer.Exit(EXIT_ERROR) from None


@dataclass
class Session:
    """What a command body works with."""

    client: StrongroomClient
    out: Output
    profile: Profile


def _server_url(override: str | None, profile: Profile) -> str:
    if override is None:
        return profile.server_url
    try:
        return validate_base_url(override)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--server-url' / STRONGROOM_URL") from None


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


@contextmanager
def connect(profile: str, as_json: bool, server_url: str | None, debug: bool) -> Iterator[Session]:
    """Load the profile, open a client for it, and report any failure of the body."""
    out = Output(as_json=as_json)
    with reported_errors(debug):
        home = strongroom_home()
        loaded = ProfileStore(home).load(profile)
        url = _server_url(server_url, loaded)
        if url.startswith("http://") and not _is_loopback(url):
            out.notice(
                f"warning: {url} is plain HTTP; tokens and secrets cross the network unencrypted"
            )
        cache = TokenCache(home, loaded.name, loaded.access_id)
        with StrongroomClient(loaded, server_url=url, cache=cache) as client:
            yield Session(client, out, loaded)


def _object_name(value: str, *, kind: str, option: str) -> str:
    try:
        return validate_object_name(value, kind=kind)
    except InvalidNameError as exc:
        raise typer.BadParameter(exc.message, param_hint=option) from None


def _item_name(value: str, option: str = "'--name'") -> str:
    try:
        return normalize_item_path(value)
    except InvalidNameError as exc:
        raise typer.BadParameter(exc.message, param_hint=option) from None


def _read_value(value: str | None, file: Path | None) -> str:
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


def _sub_claims(values: list[str] | None) -> dict[str, list[str]]:
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


def _split_tags(values: list[str] | None) -> list[str]:
    return [tag.strip() for value in values or [] for tag in value.split(",") if tag.strip()]


def _print_or(out: Output, data: Any, text: Callable[[], None]) -> None:
    if out.as_json:
        out.json(data)
    else:
        text()


# -- profile and login ---------------------------------------------------------------------


def configure(
    access_id: Annotated[
        str,
        typer.Option(
            "--access-id", metavar="p-…", help="Access ID of the auth method to log in with."
        ),
    ],
    access_type: Annotated[
        AccessType,
        typer.Option(
            "--access-type",
            case_sensitive=False,
            help="aws_iam: prove this machine's IAM role; access_key: an API key.",
        ),
    ],
    access_key: Annotated[
        str | None,
        typer.Option(
            "--access-key",
            metavar="KEY",
            help="The API key (access_key only). '-' reads it from stdin; omit it to be asked.",
        ),
    ] = None,
    server_url: Annotated[
        str | None,
        typer.Option(
            "--server-url", metavar="URL", help=f"Strongroom server [default: {DEFAULT_SERVER_URL}]"
        ),
    ] = None,
    aws_sts_url: Annotated[
        str | None,
        typer.Option(
            "--aws-sts-url",
            metavar="URL",
            help="STS endpoint to sign for (aws_iam) [default: https://sts.amazonaws.com/]",
        ),
    ] = None,
    aws_sts_region: Annotated[
        str | None,
        typer.Option(
            "--aws-sts-region",
            metavar="REGION",
            help="SigV4 region (aws_iam); normally derived from --aws-sts-url.",
        ),
    ] = None,
    server_id: Annotated[
        str | None,
        typer.Option(
            "--server-id",
            metavar="ID",
            help="The server's STRONGROOM_SERVER_ID, signed into every aws_iam login.",
        ),
    ] = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Create or replace a profile: which server to use and how to log in.

    On an EC2 instance (or container, or Lambda) with an IAM role:

        strongroom configure --profile default --access-id p-… --access-type aws_iam

    For an administrator with an API key:

        strongroom configure --profile admin --access-id p-… --access-type access_key --access-key -
    """
    try:
        name = validate_profile_name(profile)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--profile'") from None
    try:
        access_id = validate_access_id(access_id.strip())
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--access-id'") from None
    try:
        url = validate_base_url(server_url) if server_url else DEFAULT_SERVER_URL
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--server-url'") from None
    if access_type is AccessType.ACCESS_KEY:
        if access_key == "-":
            access_key = sys.stdin.readline().strip()
        elif access_key is None:
            if not sys.stdin.isatty():
                raise typer.BadParameter(
                    "--access-type access_key needs --access-key KEY (or --access-key - to read "
                    "it from stdin)",
                    param_hint="'--access-key'",
                )
            access_key = typer.prompt("Access key", hide_input=True).strip()
        if not access_key:
            raise typer.BadParameter("the access key is empty", param_hint="'--access-key'")
    elif access_key is not None:
        raise typer.BadParameter(
            "--access-key is only for --access-type access_key", param_hint="'--access-key'"
        )
    if aws_sts_url:
        try:
            validate_base_url(aws_sts_url, what="STS URL")
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="'--aws-sts-url'") from None
    out = Output(as_json=as_json)
    with reported_errors(debug):
        new = Profile(
            name=name,
            access_id=access_id,
            access_type=access_type.value,
            server_url=url,
            access_key=access_key if access_type is AccessType.ACCESS_KEY else None,
            aws_sts_url=aws_sts_url or None,
            aws_sts_region=aws_sts_region or None,
            server_id=server_id or None,
        )
        path = ProfileStore(strongroom_home()).save(new)
        # A token cached for the previous definition must not outlive it.
        TokenCache(strongroom_home(), name, access_id).remove()
        _print_or(
            out,
            {"profile": name, "path": str(path)},
            lambda: out.line(f"Profile {name} successfully configured"),
        )


def auth(
    show_token: Annotated[
        bool,
        typer.Option("--show-token", help="Also print the token (it is a bearer credential)."),
    ] = False,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    server_url: ServerUrlOption = None,
    debug: DebugOption = False,
) -> None:
    """Log in now and show who you are, your access roles and when the token expires.

    The token is cached, so the next commands of this profile do not log in again.
    """
    with connect(profile, as_json, server_url, debug) as s:
        result = s.client.login()
        shown = {key: value for key, value in result.items() if key != "token" or show_token}
        if as_json:
            s.out.json(shown)
            return
        identity = result.get("identity") or {}
        pairs: list[tuple[str, Any]] = [
            ("Profile", s.profile.name),
            ("Server", s.client.server_url),
            ("Access ID", result.get("access_id")),
        ]
        pairs += [(f"  {key}", value) for key, value in identity.items()]
        pairs += [
            ("Roles", result.get("roles") or "(none: this identity can read nothing)"),
            ("Expires at", f"{result.get('expires_at')} (in {result.get('expires_in')} s)"),
        ]
        if show_token:
            pairs.append(("Token", result.get("token")))
        s.out.fields(pairs, title="Logged in")


# -- auth methods ----------------------------------------------------------------------------

NameOption = Annotated[str, typer.Option("--name", help="Name of the auth method.")]
ListOption = Annotated[list[str] | None, typer.Option()]


def _aws_iam_fields(
    *,
    bound_aws_account_id: list[str] | None,
    bound_arn: list[str] | None,
    bound_role_name: list[str] | None,
    bound_role_id: list[str] | None,
    bound_resource_id: list[str] | None,
    bound_user_name: list[str] | None,
    bound_user_id: list[str] | None,
    bound_ips: list[str] | None,
    sts_url: str | None,
    jwt_ttl: int | None,
    access_expires: str | None,
    description: str | None,
) -> Json:
    """The fields that were given (None means "not given", so PATCH changes only those)."""
    given: Json = {
        "bound_aws_account_id": bound_aws_account_id,
        "bound_arn": bound_arn,
        "bound_role_name": bound_role_name,
        "bound_role_id": bound_role_id,
        "bound_resource_id": bound_resource_id,
        "bound_user_name": bound_user_name,
        "bound_user_id": bound_user_id,
        "bound_ips": bound_ips,
        "sts_url": sts_url,
        "jwt_ttl": jwt_ttl,
        "access_expires": access_expires,
        "description": description,
    }
    return {key: value for key, value in given.items() if value is not None}


BoundAccountOption = Annotated[
    list[str] | None,
    typer.Option(
        "--bound-aws-account-id", metavar="ID", help="AWS account allowed to log in (repeat)."
    ),
]
BoundArnOption = Annotated[
    list[str] | None,
    typer.Option("--bound-arn", metavar="ARN", help="Allowed identity ARN, * globs (repeat)."),
]
BoundRoleNameOption = Annotated[
    list[str] | None,
    typer.Option("--bound-role-name", metavar="NAME", help="Allowed IAM role name (repeat)."),
]
BoundRoleIdOption = Annotated[
    list[str] | None,
    typer.Option("--bound-role-id", metavar="ID", help="Allowed IAM role ID, AROA… (repeat)."),
]
BoundResourceIdOption = Annotated[
    list[str] | None,
    typer.Option(
        "--bound-resource-id",
        metavar="ID",
        help="Allowed session name, e.g. an EC2 instance ID (repeat).",
    ),
]
BoundUserNameOption = Annotated[
    list[str] | None,
    typer.Option("--bound-user-name", metavar="NAME", help="Allowed IAM user name (repeat)."),
]
BoundUserIdOption = Annotated[
    list[str] | None,
    typer.Option("--bound-user-id", metavar="ID", help="Allowed IAM user ID (repeat)."),
]
BoundIpsOption = Annotated[
    list[str] | None,
    typer.Option("--bound-ips", metavar="CIDR", help="Addresses logins must come from (repeat)."),
]
StsUrlOption = Annotated[
    str | None,
    typer.Option(
        "--sts-url", metavar="URL", help="STS endpoint [default: https://sts.amazonaws.com]"
    ),
]
JwtTtlOption = Annotated[
    int | None,
    typer.Option("--jwt-ttl", metavar="MIN", min=1, max=720, help="Token lifetime in minutes."),
]
AccessExpiresOption = Annotated[
    str | None,
    typer.Option(
        "--access-expires",
        metavar="WHEN",
        help="No login after this moment (ISO 8601, e.g. 2030-01-31T00:00:00Z).",
    ),
]
DescriptionOption = Annotated[
    str | None, typer.Option("--description", metavar="TEXT", help="Free text.")
]


def create_auth_method_aws_iam(
    name: NameOption,
    bound_aws_account_id: BoundAccountOption = None,
    bound_arn: BoundArnOption = None,
    bound_role_name: BoundRoleNameOption = None,
    bound_role_id: BoundRoleIdOption = None,
    bound_resource_id: BoundResourceIdOption = None,
    bound_user_name: BoundUserNameOption = None,
    bound_user_id: BoundUserIdOption = None,
    bound_ips: BoundIpsOption = None,
    sts_url: StsUrlOption = None,
    jwt_ttl: JwtTtlOption = None,
    access_expires: AccessExpiresOption = None,
    description: DescriptionOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    server_url: ServerUrlOption = None,
    debug: DebugOption = False,
) -> None:
    """Create an AWS IAM auth method and print its Access ID.

    Machines whose IAM identity matches every bound can log in; bind more than the account:

        strongroom create-auth-method-aws-iam --name iamAuth1 \\
            --bound-aws-account-id 123456789012 --bound-role-name app-role
    """
    _object_name(name, kind="auth method", option="'--name'")
    if not bound_aws_account_id:
        raise typer.BadParameter(
            "required (repeat it for more accounts)", param_hint="'--bound-aws-account-id'"
        )
    body = {"type": "aws_iam", "name": name} | _aws_iam_fields(
        bound_aws_account_id=bound_aws_account_id,
        bound_arn=bound_arn,
        bound_role_name=bound_role_name,
        bound_role_id=bound_role_id,
        bound_resource_id=bound_resource_id,
        bound_user_name=bound_user_name,
        bound_user_id=bound_user_id,
        bound_ips=bound_ips,
        sts_url=sts_url,
        jwt_ttl=jwt_ttl,
        access_expires=access_expires,
        description=description,
    )
    with connect(profile, as_json, server_url, debug) as s:
        created = s.client.create_auth_method(body)
        _print_or(s.out, created, lambda: s.out.line(f"Access ID: {created['access_id']}"))


def create_auth_method_api_key(
    name: NameOption,
    bound_ips: BoundIpsOption = None,
    jwt_ttl: JwtTtlOption = None,
    access_expires: AccessExpiresOption = None,
    description: DescriptionOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    server_url: ServerUrlOption = None,
    debug: DebugOption = False,
) -> None:
    """Create an API key auth method; print its Access ID and access key (shown only once)."""
    _object_name(name, kind="auth method", option="'--name'")
    body: Json = {"type": "api_key", "name": name}
    for key, value in (
        ("bound_ips", bound_ips),
        ("jwt_ttl", jwt_ttl),
        ("access_expires", access_expires),
        ("description", description),
    ):
        if value is not None:
            body[key] = value
    with connect(profile, as_json, server_url, debug) as s:
        created = s.client.create_auth_method(body)
        if as_json:
            s.out.json(created)
            return
        s.out.line(f"Access ID: {created['access_id']}")
        s.out.line(f"Access Key: {created['access_key']}")
        s.out.notice("Store the access key now: it is not shown again.")


# In a listing, where a field is held back: the caller may list the entry, not read it.
NEEDS_READ = "(needs read)"


def _bounds_summary(method: Json) -> str:
    parts = []
    for key in (
        "bound_aws_account_id",
        "bound_role_name",
        "bound_arn",
        "bound_role_id",
        "bound_resource_id",
        "bound_user_name",
        "bound_user_id",
        "bound_ips",
    ):
        values = method.get(key)
        if values:
            parts.append(f"{key.removeprefix('bound_')}={','.join(map(str, values))}")
    return "; ".join(parts)


def list_auth_methods(
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    server_url: ServerUrlOption = None,
    debug: DebugOption = False,
) -> None:
    """List the auth methods you may list (access IDs and bounds: those you may read)."""
    with connect(profile, as_json, server_url, debug) as s:
        methods = s.client.list_auth_methods()
        if as_json:
            s.out.json({"auth_methods": methods})
        elif not methods:
            s.out.notice("No auth methods you may list.")
        else:
            s.out.table(
                ["Name", "Type", "Access ID", "Bounds"],
                [
                    [
                        m.get("name"),
                        m.get("type"),
                        m.get("access_id", NEEDS_READ),
                        _bounds_summary(m) if "access_id" in m else "",
                    ]
                    for m in methods
                ],
            )


def get_auth_method(
    name: NameOption,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    server_url: ServerUrlOption = None,
    debug: DebugOption = False,
) -> None:
    """Show an auth method: its bounds, token lifetime and associated roles."""
    _object_name(name, kind="auth method", option="'--name'")
    with connect(profile, as_json, server_url, debug) as s:
        method = s.client.get_auth_method(name)
        if as_json:
            s.out.json(method)
            return
        associations = method.get("associations") or []
        pairs = [
            (key, value)
            for key, value in method.items()
            if key != "associations" and value not in (None, "", [])
        ]
        pairs.append(
            (
                "associations",
                [f"{a.get('role_name')} ({a.get('assoc_id')})" for a in associations] or "(none)",
            )
        )
        s.out.fields(pairs)


def update_auth_method_aws_iam(
    name: NameOption,
    bound_aws_account_id: BoundAccountOption = None,
    bound_arn: BoundArnOption = None,
    bound_role_name: BoundRoleNameOption = None,
    bound_role_id: BoundRoleIdOption = None,
    bound_resource_id: BoundResourceIdOption = None,
    bound_user_name: BoundUserNameOption = None,
    bound_user_id: BoundUserIdOption = None,
    bound_ips: BoundIpsOption = None,
    sts_url: StsUrlOption = None,
    jwt_ttl: JwtTtlOption = None,
    access_expires: AccessExpiresOption = None,
    description: DescriptionOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    server_url: ServerUrlOption = None,
    debug: DebugOption = False,
) -> None:
    """Change an AWS IAM auth method: only the options you give change.

    A list option replaces the whole stored list (give it several times for several values):

        strongroom update-auth-method-aws-iam --name iamAuth1 \\
            --bound-role-name app-role --bound-role-name web-role
    """
    _object_name(name, kind="auth method", option="'--name'")
    changes = _aws_iam_fields(
        bound_aws_account_id=bound_aws_account_id,
        bound_arn=bound_arn,
        bound_role_name=bound_role_name,
        bound_role_id=bound_role_id,
        bound_resource_id=bound_resource_id,
        bound_user_name=bound_user_name,
        bound_user_id=bound_user_id,
        bound_ips=bound_ips,
        sts_url=sts_url,
        jwt_ttl=jwt_ttl,
        access_expires=access_expires,
        description=description,
    )
    if not changes:
        raise typer.BadParameter("nothing to change: give at least one option to update")
    with connect(profile, as_json, server_url, debug) as s:
        updated = s.client.update_auth_method(name, changes)
        _print_or(
            s.out, updated, lambda: s.out.line(f"Auth method {name} was successfully updated")
        )


def delete_auth_method(
    name: NameOption,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    server_url: ServerUrlOption = None,
    debug: DebugOption = False,
) -> None:
    """Delete an auth method; tokens obtained through it stop working at once."""
    _object_name(name, kind="auth method", option="'--name'")
    with connect(profile, as_json, server_url, debug) as s:
        s.client.delete_auth_method(name)
        _print_or(
            s.out,
            {"name": name, "deleted": True},
            lambda: s.out.line(f"Auth method {name} was successfully deleted"),
        )


# -- access roles ----------------------------------------------------------------------------

RoleNameOption = Annotated[str, typer.Option("--name", help="Name of the access role.")]
RoleRefOption = Annotated[str, typer.Option("--role-name", help="Name of the access role.")]
RuleTypeOption = Annotated[
    RuleType,
    typer.Option(
        "--rule-type",
        case_sensitive=False,
        help="What the path names: secrets (item-rule), auth methods, roles or the audit log.",
    ),
]


def create_role(
    name: RoleNameOption,
    description: Annotated[str, typer.Option("--description", metavar="TEXT")] = "",
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    server_url: ServerUrlOption = None,
    debug: DebugOption = False,
) -> None:
    """Create an access role. Give it rules (set-role-rule) and auth methods (assoc-role-am)."""
    _object_name(name, kind="role", option="'--name'")
    with connect(profile, as_json, server_url, debug) as s:
        created = s.client.create_role(name, description)
        _print_or(s.out, created, lambda: s.out.line(f"Role {name} was successfully created"))


def list_roles(
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    server_url: ServerUrlOption = None,
    debug: DebugOption = False,
) -> None:
    """List the access roles you may list (descriptions: those you may read)."""
    with connect(profile, as_json, server_url, debug) as s:
        roles = s.client.list_roles()
        if as_json:
            s.out.json({"roles": roles})
        elif not roles:
            s.out.notice("No access roles you may list.")
        else:
            s.out.table(
                ["Name", "Description", "Created"],
                [
                    [r.get("name"), r.get("description", NEEDS_READ), r.get("created_at")]
                    for r in roles
                ],
            )


def get_role(
    name: RoleNameOption,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    server_url: ServerUrlOption = None,
    debug: DebugOption = False,
) -> None:
    """Show an access role with its rules and associated auth methods."""
    _object_name(name, kind="role", option="'--name'")
    with connect(profile, as_json, server_url, debug) as s:
        role = s.client.get_role(name)
        if as_json:
            s.out.json(role)
            return
        s.out.fields([("Name", role.get("name")), ("Description", role.get("description") or "")])
        s.out.table(
            ["Rule type", "Path", "Capabilities", "Expires"],
            [
                [
                    r.get("rule_type"),
                    r.get("path"),
                    r.get("capabilities"),
                    ("expired " if r.get("expired") else "") + (r.get("expires_at") or "never"),
                ]
                for r in role.get("rules") or []
            ],
            title="Rules",
        )
        s.out.table(
            ["Assoc ID", "Auth method", "Access ID", "Sub-claims"],
            [
                [a.get("assoc_id"), a.get("auth_method"), a.get("access_id"), a.get("sub_claims")]
                for a in role.get("associations") or []
            ],
            title="Associations",
        )


def delete_role(
    name: RoleNameOption,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    server_url: ServerUrlOption = None,
    debug: DebugOption = False,
) -> None:
    """Delete an access role; tokens that carried it lose it at once."""
    _object_name(name, kind="role", option="'--name'")
    with connect(profile, as_json, server_url, debug) as s:
        s.client.delete_role(name)
        _print_or(
            s.out,
            {"name": name, "deleted": True},
            lambda: s.out.line(f"Role {name} was successfully deleted"),
        )


def set_role_rule(
    role_name: RoleRefOption,
    path: Annotated[
        str,
        typer.Option(
            "--path",
            help="Pattern: * any run of characters, + one segment, {{claim}} a login claim.",
        ),
    ],
    capability: Annotated[
        list[Capability],
        typer.Option("--capability", case_sensitive=False, help="Capability to grant (repeat)."),
    ],
    rule_type: RuleTypeOption = RuleType.ITEM,
    ttl: Annotated[
        int | None, typer.Option("--ttl", metavar="MIN", min=1, help="Rule expires after MIN.")
    ] = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    server_url: ServerUrlOption = None,
    debug: DebugOption = False,
) -> None:
    """Set the capabilities of a role on a path (replaces a rule of the same type and path).

        strongroom set-role-rule --role-name devReaders --path "/dev/*" \\
            --capability read --capability list
    """
    _object_name(role_name, kind="role", option="'--role-name'")
    capabilities = list(dict.fromkeys(c.value for c in capability))
    with connect(profile, as_json, server_url, debug) as s:
        result = s.client.set_role_rule(
            role_name, rule_type=rule_type.value, path=path, capabilities=capabilities, ttl=ttl
        )
        _print_or(
            s.out,
            result,
            lambda: s.out.line(f"The requested rule was successfully set to the role {role_name}"),
        )


def delete_role_rule(
    role_name: RoleRefOption,
    path: Annotated[str, typer.Option("--path", help="The rule's path, exactly as set.")],
    rule_type: RuleTypeOption = RuleType.ITEM,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    server_url: ServerUrlOption = None,
    debug: DebugOption = False,
) -> None:
    """Remove a rule from a role."""
    _object_name(role_name, kind="role", option="'--role-name'")
    with connect(profile, as_json, server_url, debug) as s:
        s.client.delete_role_rule(role_name, rule_type=rule_type.value, path=path)
        _print_or(
            s.out,
            {"role_name": role_name, "rule_type": rule_type.value, "path": path, "deleted": True},
            lambda: s.out.line(f"The rule was successfully deleted from the role {role_name}"),
        )


def assoc_role_am(
    role_name: RoleRefOption,
    am_name: Annotated[str, typer.Option("--am-name", help="Name of the auth method.")],
    sub_claims: Annotated[
        list[str] | None,
        typer.Option(
            "--sub-claims",
            metavar="KEY=V1,V2",
            help=(
                "Only logins whose claim KEY matches one of the values (* globs) get the role; "
                "repeat for more claims. Claims: account_id, arn, role_name, role_id, "
                "resource_id, user_name, user_id."
            ),
        ),
    ] = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    server_url: ServerUrlOption = None,
    debug: DebugOption = False,
) -> None:
    """Give a role to the logins of an auth method (optionally only some, by sub-claims)."""
    _object_name(role_name, kind="role", option="'--role-name'")
    _object_name(am_name, kind="auth method", option="'--am-name'")
    claims = _sub_claims(sub_claims)
    with connect(profile, as_json, server_url, debug) as s:
        result = s.client.associate(role_name, am_name, claims)
        _print_or(
            s.out,
            result,
            lambda: s.out.line(f"Association {result['assoc_id']} was successfully created"),
        )


def delete_assoc(
    role_name: RoleRefOption,
    assoc_id: Annotated[
        str, typer.Option("--assoc-id", metavar="ass-…", help="As get-role shows.")
    ],
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    server_url: ServerUrlOption = None,
    debug: DebugOption = False,
) -> None:
    """Remove an association; tokens that carry it are revoked."""
    _object_name(role_name, kind="role", option="'--role-name'")
    with connect(profile, as_json, server_url, debug) as s:
        s.client.dissociate(role_name, assoc_id)
        _print_or(
            s.out,
            {"role_name": role_name, "assoc_id": assoc_id, "deleted": True},
            lambda: s.out.line(f"Association {assoc_id} was successfully deleted"),
        )


# -- secrets ---------------------------------------------------------------------------------

ItemNameOption = Annotated[
    str, typer.Option("--name", metavar="/PATH", help="The secret's name, e.g. /dev/db-password.")
]
ValueOption = Annotated[
    str | None,
    typer.Option(
        "--value",
        metavar="VALUE",
        help=(
            "The value; '-' reads it from stdin (one trailing newline dropped). "
            "Prefer '-' or --file for real secrets: arguments end up in shell history."
        ),
    ),
]
FileOption = Annotated[
    Path | None,
    typer.Option("--file", metavar="FILE", help="Read the value from FILE (UTF-8), verbatim."),
]


def create_secret(
    name: ItemNameOption,
    value: ValueOption = None,
    file: FileOption = None,
    description: Annotated[str, typer.Option("--description", metavar="TEXT")] = "",
    tags: Annotated[
        list[str] | None,
        typer.Option("--tags", metavar="TAG[,TAG…]", help="Tags (repeat or comma-separate)."),
    ] = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    server_url: ServerUrlOption = None,
    debug: DebugOption = False,
) -> None:
    """Create a secret (version 1).

    printf %s 's3cr3t' | strongroom create-secret --name /dev/db-password --value -
    """
    item = _item_name(name)
    secret = _read_value(value, file)
    with connect(profile, as_json, server_url, debug) as s:
        created = s.client.create_secret(item, secret, description, _split_tags(tags))
        _print_or(
            s.out,
            created,
            lambda: s.out.line(f"A new secret named {item} was successfully created"),
        )


def update_secret_val(
    name: ItemNameOption,
    value: ValueOption = None,
    file: FileOption = None,
    expected_version: Annotated[
        int | None,
        typer.Option(
            "--expected-version",
            metavar="N",
            min=1,
            help="Fail (409) unless N is still the newest version: no lost updates.",
        ),
    ] = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    server_url: ServerUrlOption = None,
    debug: DebugOption = False,
) -> None:
    """Write a new version of a secret (older versions stay readable with --version)."""
    item = _item_name(name)
    secret = _read_value(value, file)
    with connect(profile, as_json, server_url, debug) as s:
        updated = s.client.update_secret(item, secret, expected_version)
        _print_or(
            s.out,
            updated,
            lambda: s.out.line(
                f"The value of secret {item} was successfully updated "
                f"(version {updated.get('version')})"
            ),
        )


def get_secret_value(
    name: Annotated[
        list[str],
        typer.Option(
            "--name", metavar="/PATH", help="Secret to read; repeat to read several at once."
        ),
    ],
    version: Annotated[
        int | None, typer.Option("--version", metavar="N", min=1, help="An older version.")
    ] = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    server_url: ServerUrlOption = None,
    debug: DebugOption = False,
) -> None:
    """Print a secret's value, bare, so that $(strongroom get-secret-value --name …) works.

    With several --name options, or with --json, print a JSON object {name: value}.
    """
    names = [_item_name(n) for n in name]
    with connect(profile, as_json, server_url, debug) as s:
        values = s.client.get_secret_values(names, version)
        if as_json or len(names) > 1:
            s.out.json(values)
        else:
            s.out.value(values.get(names[0], next(iter(values.values()), "")))


def list_items(
    path: Annotated[str, typer.Option("--path", metavar="/FOLDER", help="Folder to list.")] = "/",
    recursive: Annotated[
        bool, typer.Option("--recursive", help="Include everything below the folder.")
    ] = False,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    server_url: ServerUrlOption = None,
    debug: DebugOption = False,
) -> None:
    """List the secrets and folders you may list under a folder."""
    try:
        folder = normalize_folder_path(path)
    except InvalidNameError as exc:
        raise typer.BadParameter(exc.message, param_hint="'--path'") from None
    with connect(profile, as_json, server_url, debug) as s:
        listing = s.client.list_items(folder, recursive)
        if as_json:
            s.out.json(listing)
            return
        folders = listing.get("folders") or []
        items = listing.get("items") or []
        if not folders and not items:
            s.out.notice(f"Nothing under {folder} that you may list.")
            return
        rows: list[list[Any]] = [[f"{f}/", "folder", "", ""] for f in folders]
        rows += [
            [i.get("name"), i.get("version"), i.get("permissions"), i.get("updated_at")]
            for i in items
        ]
        s.out.table(["Name", "Version", "Your permissions", "Updated"], rows)


def describe_item(
    name: ItemNameOption,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    server_url: ServerUrlOption = None,
    debug: DebugOption = False,
) -> None:
    """Show a secret's metadata (never its value)."""
    item = _item_name(name)
    with connect(profile, as_json, server_url, debug) as s:
        described = s.client.describe_item(item)
        if as_json:
            s.out.json(described)
        else:
            s.out.fields(list(described.items()))


def delete_item(
    name: ItemNameOption,
    version: Annotated[
        int | None,
        typer.Option("--version", metavar="N", min=1, help="Delete only this version."),
    ] = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    server_url: ServerUrlOption = None,
    debug: DebugOption = False,
) -> None:
    """Delete a secret with all its versions, or one version with --version."""
    item = _item_name(name)
    with connect(profile, as_json, server_url, debug) as s:
        s.client.delete_item(item, version)
        what = f"Item {item}" + (f" version {version}" if version is not None else "")
        _print_or(
            s.out,
            {"name": item, "version": version, "deleted": True},
            lambda: s.out.line(f"{what} was successfully deleted"),
        )


# -- registration ----------------------------------------------------------------------------

_COMMANDS: tuple[tuple[str, Callable[..., None], str], ...] = (
    ("configure", configure, PANEL_SETUP),
    ("auth", auth, PANEL_SETUP),
    ("create-auth-method-aws-iam", create_auth_method_aws_iam, PANEL_AUTH_METHODS),
    ("create-auth-method-api-key", create_auth_method_api_key, PANEL_AUTH_METHODS),
    ("list-auth-methods", list_auth_methods, PANEL_AUTH_METHODS),
    ("get-auth-method", get_auth_method, PANEL_AUTH_METHODS),
    ("update-auth-method-aws-iam", update_auth_method_aws_iam, PANEL_AUTH_METHODS),
    ("delete-auth-method", delete_auth_method, PANEL_AUTH_METHODS),
    ("create-role", create_role, PANEL_ROLES),
    ("list-roles", list_roles, PANEL_ROLES),
    ("get-role", get_role, PANEL_ROLES),
    ("delete-role", delete_role, PANEL_ROLES),
    ("set-role-rule", set_role_rule, PANEL_ROLES),
    ("delete-role-rule", delete_role_rule, PANEL_ROLES),
    ("assoc-role-am", assoc_role_am, PANEL_ROLES),
    ("delete-assoc", delete_assoc, PANEL_ROLES),
    ("create-secret", create_secret, PANEL_SECRETS),
    ("update-secret-val", update_secret_val, PANEL_SECRETS),
    ("get-secret-value", get_secret_value, PANEL_SECRETS),
    ("list-items", list_items, PANEL_SECRETS),
    ("describe-item", describe_item, PANEL_SECRETS),
    ("delete-item", delete_item, PANEL_SECRETS),
)


def register(app: typer.Typer) -> None:
    """Add the client commands to ``app``, grouped in panels of its --help."""
    for name, function, panel in _COMMANDS:
        app.command(name, rich_help_panel=panel)(function)
