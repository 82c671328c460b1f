"""Workloads: ``run`` (secrets in a command's environment) and ``agent`` (secrets in files)."""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from strongroom.cli.agent import Agent, install_stop_handlers, load_config
from strongroom.cli.client import StrongroomClient
from strongroom.cli.commands.common import (
    DebugOption,
    JsonOption,
    ProfileOption,
    ServerUrlOption,
    connect,
    item_name,
    reported_errors,
    server_url_of,
)
from strongroom.cli.profiles import DEFAULT_PROFILE, ProfileStore, TokenCache, strongroom_home
from strongroom.errors import InvalidNameError
from strongroom.kit.names import normalize_folder_path

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Names a child's environment must not take from a secret: they change what runs, or how.
_RESERVED = frozenset({"PATH", "LD_PRELOAD", "LD_LIBRARY_PATH", "PYTHONPATH", "HOME", "SHELL"})
EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126


def env_name_of(item: str) -> str:
    """The variable a ``--folder`` item becomes: its last segment in upper case, every other
    character than A-Z 0-9 _ as ``_`` (``/dev/db-password`` → ``DB_PASSWORD``)."""
    name = re.sub(r"[^A-Z0-9_]", "_", item.rsplit("/", 1)[-1].upper())
    return name if not name[:1].isdigit() else f"_{name}"


def _secret_pairs(values: list[str] | None) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for entry in values or []:
        name, sep, path = entry.partition("=")
        if not sep or not _ENV_NAME.fullmatch(name) or not path:
            raise typer.BadParameter(
                f"{entry!r} is not NAME=/path (e.g. DB_PASSWORD=/dev/db-password)",
                param_hint="'--secret'",
            )
        if name in _RESERVED:
            raise typer.BadParameter(
                f"{name} is not set from a secret: it changes what the command runs",
                param_hint="'--secret'",
            )
        pairs[name] = item_name(path, "'--secret'")
    return pairs


def run(
    command: Annotated[
        list[str],
        typer.Argument(metavar="-- COMMAND [ARGS]...", help="The command to run, after --."),
    ],
    secret: Annotated[
        list[str] | None,
        typer.Option(
            "--secret",
            metavar="NAME=/PATH",
            help="Set NAME to the value of the secret /PATH (repeat).",
        ),
    ] = None,
    folder: Annotated[
        list[str] | None,
        typer.Option(
            "--folder",
            metavar="/FOLDER",
            help="Set a variable for every secret directly in FOLDER that you may read: "
            "/dev/db-password becomes DB_PASSWORD (repeat; --secret wins).",
        ),
    ] = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    server_url: ServerUrlOption = None,
    debug: DebugOption = False,
) -> None:
    """Run a command with secrets in its environment; its exit code is run's.

        strongroom run --secret DB_PASSWORD=/dev/db-password -- ./server --port 8080

    The command replaces this process (signals reach it directly); no value is written to disk.
    """
    pairs = _secret_pairs(secret)
    folders: list[str] = []
    for entry in folder or []:
        try:
            folders.append(normalize_folder_path(entry))
        except InvalidNameError as exc:
            raise typer.BadParameter(exc.message, param_hint="'--folder'") from None
    if not pairs and not folders:
        raise typer.BadParameter("give at least one --secret NAME=/PATH or --folder /FOLDER")
    with connect(profile, as_json, server_url, debug) as s:
        from_folders: dict[str, str] = {}
        for path in folders:
            listing = s.client.list_items(path, False)
            for entry in listing.get("items") or []:
                name = str(entry.get("name", ""))
                if "read" in (entry.get("permissions") or []):
                    from_folders.setdefault(env_name_of(name), name)
        wanted = {k: v for k, v in from_folders.items() if k not in _RESERVED} | pairs
        values = s.client.get_secret_values(sorted(set(wanted.values())), None) if wanted else {}
    environment = dict(os.environ)
    environment.update({variable: values[path] for variable, path in wanted.items()})
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(command[0], command, environment)  # noqa: S606 - the user's own command
    except FileNotFoundError:
        sys.stderr.write(f"error: command not found: {command[0]}\n")
        raise typer.Exit(EXIT_NOT_FOUND) from None
    except OSError as exc:
        sys.stderr.write(f"error: cannot run {command[0]}: {exc.strerror}\n")
        raise typer.Exit(EXIT_NOT_EXECUTABLE) from None


def agent(
    config: Annotated[
        Path,
        typer.Option("--config", metavar="FILE", help="The agent's TOML file (see README)."),
    ],
    once: Annotated[
        bool, typer.Option("--once", help="Render once and exit (1 if anything failed).")
    ] = False,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            envvar="STRONGROOM_PROFILE",
            metavar="NAME",
            help="Profile to log in with [default: the configuration's, else default].",
        ),
    ] = None,
    as_json: JsonOption = False,
    server_url: ServerUrlOption = None,
    debug: DebugOption = False,
) -> None:
    """Keep files rendered from secrets current: render, watch versions, reload the app.

    Logs in with the configuration's profile, renders its templates, re-renders when a secret
    gets a new version (then runs the template's command or sends its signal), logs in again
    before the token expires, and keeps the last files while the server is unreachable.
    """
    with reported_errors(debug, as_json):
        loaded = load_config(config)
        home = strongroom_home()
        stored = ProfileStore(home).load(profile or loaded.profile)
        url = server_url_of(server_url or loaded.server_url, stored)
        cache = TokenCache(home, stored.name, stored.access_id)
        with StrongroomClient(stored, server_url=url, cache=cache) as client:
            worker = Agent(loaded, client)
            previous = install_stop_handlers(worker)
            try:
                code = worker.run(once=once)
            finally:
                for signum, handler in previous.items():
                    signal.signal(signum, handler)
        if code:
            raise typer.Exit(code)
