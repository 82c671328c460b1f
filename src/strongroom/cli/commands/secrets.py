"""Secrets: create, new versions, read (bare values for scripts), list, describe, delete."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from strongroom.cli.commands.common import (
    DebugOption,
    JsonOption,
    ProfileOption,
    ServerUrlOption,
    connect,
    item_name,
    print_or,
    read_value,
    split_tags,
)
from strongroom.cli.profiles import DEFAULT_PROFILE
from strongroom.errors import InvalidNameError
from strongroom.kit.names import normalize_folder_path

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
    item = item_name(name)
    secret = read_value(value, file)
    with connect(profile, as_json, server_url, debug) as s:
        created = s.client.create_secret(item, secret, description, split_tags(tags))
        print_or(
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
    item = item_name(name)
    secret = read_value(value, file)
    with connect(profile, as_json, server_url, debug) as s:
        updated = s.client.update_secret(item, secret, expected_version)
        print_or(
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
    names = [item_name(n) for n in name]
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
    item = item_name(name)
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
    item = item_name(name)
    with connect(profile, as_json, server_url, debug) as s:
        s.client.delete_item(item, version)
        what = f"Item {item}" + (f" version {version}" if version is not None else "")
        print_or(
            s.out,
            {"name": item, "version": version, "deleted": True},
            lambda: s.out.line(f"{what} was successfully deleted"),
        )
