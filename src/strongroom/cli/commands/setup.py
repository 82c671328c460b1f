"""Profile and login: ``configure``, ``auth`` and ``get-cloud-identity``."""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated, Any

import typer

from strongroom.cli.aws_login import (
    load_aws_credentials,
    normalize_sts_url,
    sign_get_caller_identity,
    sts_region,
)
from strongroom.cli.commands.common import (
    DebugOption,
    JsonOption,
    ProfileOption,
    ServerUrlOption,
    connect,
    print_or,
    reported_errors,
)
from strongroom.cli.output import Output
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


class AccessType(StrEnum):
    """How a profile logs in (SPEC section 3)."""

    AWS_IAM = "aws_iam"
    ACCESS_KEY = "access_key"


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
    with reported_errors(debug, as_json):
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
        print_or(
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


def get_cloud_identity(
    aws_sts_url: Annotated[
        str | None,
        typer.Option(
            "--aws-sts-url",
            metavar="URL",
            help="STS endpoint to sign for [default: the profile's, else https://sts.amazonaws.com/]",
        ),
    ] = None,
    aws_sts_region: Annotated[
        str | None,
        typer.Option(
            "--aws-sts-region", metavar="REGION", help="SigV4 region; derived from the URL."
        ),
    ] = None,
    server_id: Annotated[
        str | None,
        typer.Option(
            "--server-id", metavar="ID", help="The server's STRONGROOM_SERVER_ID, signed in."
        ),
    ] = None,
    vault_fields: Annotated[
        bool,
        typer.Option(
            "--vault-fields",
            help="Print Vault's iam_* login fields as JSON instead (POST /v1/auth/aws/login).",
        ),
    ] = False,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Print a signed cloud_id for an aws_iam login with curl or any HTTP client.

    It proves this machine's IAM identity to the server once, within 15 minutes:

        curl -sS "$STRONGROOM/v1/auth/login" -H 'Content-Type: application/json' \\
          -d '{"access_id": "p-…", "access_type": "aws_iam",
               "cloud_id": "'"$(strongroom get-cloud-identity)"'"}'

    The STS URL and server ID come from the profile when it exists; the options override them.
    """
    out = Output(as_json=as_json)
    with reported_errors(debug, as_json):
        stored = _optional_profile(profile)
        sts_url = normalize_sts_url(aws_sts_url or (stored.aws_sts_url if stored else None))
        signed = sign_get_caller_identity(
            load_aws_credentials(),
            sts_url=sts_url,
            region=sts_region(
                sts_url, aws_sts_region or (stored.aws_sts_region if stored else None)
            ),
            server_id=server_id or (stored.server_id if stored else None),
        )
        if vault_fields:
            out.json(signed.vault_fields())
        elif as_json:
            out.json({"cloud_id": signed.cloud_id()})
        else:
            out.line(signed.cloud_id())


def _optional_profile(name: str) -> Profile | None:
    """The profile ``name`` if it exists (get-cloud-identity works without one)."""
    try:
        valid = validate_profile_name(name)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--profile'") from None
    store = ProfileStore(strongroom_home())
    if not store.path(valid).exists():
        return None
    return store.load(name)
