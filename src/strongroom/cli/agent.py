"""``strongroom agent``: keep files rendered from secrets up to date (SPEC section 8).

The agent logs in with a CLI profile (``strongroom configure``), renders each template of its
configuration file to a file, then stays running:

- every ``interval`` seconds it asks for the version of each secret a template used
  (``GET /v1/describe-item``: metadata, never the value) and renders again when one changed;
  a file is rewritten only when its content changed, then the template's ``command`` runs or
  its ``signal`` is sent to the process in ``pid_file``;
- it logs in again before the token expires (the login is cached as for every command);
- while the server is unreachable or failing it keeps the last files as they are and retries
  with a doubling backoff (1 s up to ``max_backoff``).

Configuration, TOML::

    profile = "default"          # CLI profile to log in with
    interval = 60                # seconds between version checks (at least 1)
    max_backoff = 60             # longest wait between retries while the server fails
    renew_before = 120           # log in again this many seconds before the token expires

    [[template]]
    destination = "/run/app/db.env"   # written atomically (temporary file + rename)
    contents = "DB_PASSWORD={{ secret('/dev/db-password') }}\\n"   # or: source = "file.tmpl"
    mode = "0600"                # the default; the file is never readable by others unless set
    command = ["systemctl", "reload", "app"]   # optional, after the file changed
    # signal = "HUP"             # optional, with pid_file: signal that process instead
    # pid_file = "/run/app.pid"

Templates are Jinja2 in a sandbox: ``{{ secret('/path') }}`` is a value as text,
``{{ secret_json('/path').field }}`` a value parsed as JSON. An undefined name is an error, so a
typo never renders an empty secret. No value is ever logged.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from strongroom.cli.errors import CliError, ServerError, ServerUnreachableError

DEFAULT_INTERVAL = 60.0
DEFAULT_MAX_BACKOFF = 60.0
DEFAULT_RENEW_BEFORE = 120.0
DEFAULT_MODE = 0o600
MAX_TEMPLATE_BYTES = 1024 * 1024
COMMAND_TIMEOUT_SECONDS = 60


class AgentConfigError(CliError):
    """The agent's configuration file cannot be used; the message names the key."""


class SecretSource(Protocol):
    """What the agent needs from the server (``StrongroomClient`` has it)."""

    def get_secret(self, name: str, version: int | None = None) -> dict[str, Any]: ...

    def describe_item(self, name: str) -> dict[str, Any]: ...

    def login(self) -> dict[str, Any]: ...

    def token_expiry(self) -> float | None: ...


@dataclass(frozen=True)
class TemplateConfig:
    destination: Path
    contents: str | None = None
    source: Path | None = None
    mode: int = DEFAULT_MODE
    command: tuple[str, ...] = ()
    signal: signal.Signals | None = None
    pid_file: Path | None = None

    def text(self) -> str:
        """The template's text (a ``source`` file is read at every render: edits apply)."""
        if self.contents is not None:
            return self.contents
        if self.source is None:
            raise AgentConfigError(f"template for {self.destination} has no contents or source")
        data = self.source.read_bytes()[: MAX_TEMPLATE_BYTES + 1]
        if len(data) > MAX_TEMPLATE_BYTES:
            raise AgentConfigError(f"template {self.source} is larger than 1 MiB")
        return data.decode("utf-8")


@dataclass(frozen=True)
class AgentConfig:
    profile: str = "default"
    server_url: str | None = None
    interval: float = DEFAULT_INTERVAL
    max_backoff: float = DEFAULT_MAX_BACKOFF
    renew_before: float = DEFAULT_RENEW_BEFORE
    templates: tuple[TemplateConfig, ...] = ()


def load_config(path: Path) -> AgentConfig:
    """Parse and check the agent's TOML file; AgentConfigError names what is wrong."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AgentConfigError(f"cannot read {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise AgentConfigError(f"{path} is not valid TOML: {exc}") from None
    known = {"profile", "server_url", "interval", "max_backoff", "renew_before", "template"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise AgentConfigError(f"{path}: unknown keys {unknown}; known: {sorted(known)}")
    raw_templates = data.get("template", [])
    if not isinstance(raw_templates, list) or not raw_templates:
        raise AgentConfigError(f"{path}: add at least one [[template]] table")
    templates = tuple(
        _template(path, index, entry) for index, entry in enumerate(raw_templates, start=1)
    )
    destinations = [t.destination for t in templates]
    if len(set(destinations)) != len(destinations):
        raise AgentConfigError(f"{path}: two templates write the same destination")
    return AgentConfig(
        profile=_string(path, "profile", data.get("profile", "default")),
        server_url=_string(path, "server_url", data["server_url"])
        if "server_url" in data
        else None,
        interval=_seconds(path, "interval", data.get("interval", DEFAULT_INTERVAL)),
        max_backoff=_seconds(path, "max_backoff", data.get("max_backoff", DEFAULT_MAX_BACKOFF)),
        renew_before=_seconds(path, "renew_before", data.get("renew_before", DEFAULT_RENEW_BEFORE)),
        templates=templates,
    )


def _template(path: Path, index: int, entry: Any) -> TemplateConfig:
    where = f"{path}: template {index}"
    if not isinstance(entry, dict):
        raise AgentConfigError(f"{where} is not a table")
    known = {"destination", "contents", "source", "mode", "command", "signal", "pid_file"}
    unknown = sorted(set(entry) - known)
    if unknown:
        raise AgentConfigError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
    if "destination" not in entry:
        raise AgentConfigError(f"{where}: destination is required")
    if ("contents" in entry) == ("source" in entry):
        raise AgentConfigError(f"{where}: give exactly one of contents or source")
    source = Path(_string(path, "source", entry["source"])) if "source" in entry else None
    if source is not None and not source.is_absolute():
        source = path.parent / source  # relative to the configuration file
    command: tuple[str, ...] = ()
    if "command" in entry:
        raw = entry["command"]
        if isinstance(raw, str):
            command = tuple(shlex.split(raw))
        elif isinstance(raw, list) and all(isinstance(part, str) for part in raw):
            command = tuple(raw)
        if not command:
            raise AgentConfigError(f"{where}: command is a non-empty list of strings or a string")
    sent: signal.Signals | None = None
    if "signal" in entry:
        name = _string(path, "signal", entry["signal"]).upper().removeprefix("SIG")
        try:
            sent = signal.Signals[f"SIG{name}"]
        except KeyError:
            raise AgentConfigError(f"{where}: unknown signal {entry['signal']!r}") from None
        if "pid_file" not in entry:
            raise AgentConfigError(f"{where}: signal needs pid_file (the process to signal)")
        if command:
            raise AgentConfigError(f"{where}: give command or signal, not both")
    return TemplateConfig(
        destination=Path(_string(path, "destination", entry["destination"])),
        contents=_string(path, "contents", entry["contents"]) if "contents" in entry else None,
        source=source,
        mode=_mode(where, entry.get("mode", DEFAULT_MODE)),
        command=command,
        signal=sent,
        pid_file=Path(_string(path, "pid_file", entry["pid_file"]))
        if "pid_file" in entry
        else None,
    )


def _string(path: Path, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise AgentConfigError(f"{path}: {key} must be a non-empty string")
    return value


def _seconds(path: Path, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= 86400:
        raise AgentConfigError(f"{path}: {key} must be a number of seconds from 1 to 86400")
    return float(value)


def _mode(where: str, value: Any) -> int:
    """``"0640"`` or ``0o640`` (TOML has no octal literals: a string, or an integer)."""
    try:
        mode = int(value, 8) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise AgentConfigError(f'{where}: mode must be an octal string like "0600"') from None
    if isinstance(value, bool) or not 0 <= mode <= 0o777:
        raise AgentConfigError(f"{where}: mode must be between 0000 and 0777")
    return mode


# -- rendering ---------------------------------------------------------------------------------


@dataclass
class Rendered:
    content: bytes
    versions: dict[str, int]  # secret name -> version used


def render(template: TemplateConfig, source: SecretSource) -> Rendered:
    """Render ``template`` with the secrets it names (each fetched once per render)."""
    from jinja2 import StrictUndefined, TemplateError
    from jinja2.sandbox import SandboxedEnvironment

    fetched: dict[str, dict[str, Any]] = {}

    def value_of(name: str) -> dict[str, Any]:
        if not isinstance(name, str):
            raise AgentConfigError("secret() takes the secret's name, e.g. secret('/dev/db')")
        if name not in fetched:
            fetched[name] = source.get_secret(name)
        return fetched[name]

    def secret(name: str) -> str:
        return str(value_of(name).get("value", ""))

    def secret_json(name: str) -> Any:
        try:
            return json.loads(secret(name))
        except json.JSONDecodeError:
            raise AgentConfigError(
                f"secret {name} is not JSON (use secret(), not secret_json())"
            ) from None

    environment = SandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
    )
    environment.globals.update(secret=secret, secret_json=secret_json)
    try:
        text = environment.from_string(template.text()).render()
    except TemplateError as exc:
        raise AgentConfigError(f"template for {template.destination}: {exc}") from None
    versions = {name: int(data.get("version", 0)) for name, data in fetched.items()}
    return Rendered(content=text.encode("utf-8"), versions=versions)


def write_atomically(destination: Path, content: bytes, mode: int) -> bool:
    """Write ``content`` to ``destination`` with ``mode`` unless it already holds exactly that;
    return whether the file changed. Readers see the old file or the new one, never a part."""
    try:
        if destination.read_bytes() == content and (destination.stat().st_mode & 0o777) == mode:
            return False
    except OSError:
        pass
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{destination.name}.", dir=destination.parent)
    try:
        # Set before the content is written: the value is never readable by others, even briefly.
        os.fchmod(handle, mode)
        with os.fdopen(handle, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, destination)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return True


# -- the loop ----------------------------------------------------------------------------------


Log = Callable[[str], None]


def _stderr_log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    sys.stderr.write(f"{stamp} strongroom agent: {message}\n")
    sys.stderr.flush()


@dataclass
class _TemplateState:
    config: TemplateConfig
    versions: dict[str, int] = field(default_factory=dict)
    rendered: bool = False


class Agent:
    """Renders the templates of one configuration and keeps them current (see the module)."""

    def __init__(
        self,
        config: AgentConfig,
        source: SecretSource,
        *,
        log: Log = _stderr_log,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._source = source
        self._log = log
        self._clock = clock
        self._renew_margin = config.renew_before
        self._states = [_TemplateState(t) for t in config.templates]
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self, *, once: bool = False) -> int:
        """Run until :meth:`stop` (or one pass with ``once``); return the exit code."""
        backoff = 0.0
        while not self._stop.is_set():
            try:
                self._renew_login_if_due()
                self.check()
            except (ServerUnreachableError, ServerError) as exc:
                if once:
                    self._log(f"giving up: {exc.message}")
                    return 1
                backoff = min(self._config.max_backoff, max(1.0, backoff * 2))
                self._log(
                    f"{exc.message}; keeping the files as they are, retrying in {backoff:.0f} s"
                )
                self._stop.wait(backoff)
                continue
            except CliError as exc:  # credentials, a template error: worth a retry later
                if once:
                    self._log(f"error: {exc.message}")
                    return 1
                self._log(f"error: {exc.message}; retrying in {self._config.interval:.0f} s")
                self._stop.wait(self._config.interval)
                continue
            backoff = 0.0
            if once:
                return 0
            self._stop.wait(self._next_wait())
        return 0

    def check(self) -> None:
        """One pass: render what never rendered or whose secrets have a new version."""
        for state in self._states:
            if state.rendered and not self._changed(state):
                continue
            rendered = render(state.config, self._source)
            changed = write_atomically(
                state.config.destination, rendered.content, state.config.mode
            )
            state.versions = rendered.versions
            state.rendered = True
            if changed:
                names = ", ".join(f"{n} v{v}" for n, v in sorted(rendered.versions.items()))
                self._log(f"rendered {state.config.destination} ({names or 'no secrets'})")
                self._act(state.config)

    def _changed(self, state: _TemplateState) -> bool:
        for name, version in state.versions.items():
            current = int(self._source.describe_item(name).get("version", 0))
            if current != version:
                self._log(f"{name} changed: version {version} -> {current}")
                return True
        return False

    def _act(self, template: TemplateConfig) -> None:
        """Run the template's command or send its signal; failures are logged, not fatal."""
        if template.command:
            try:
                result = subprocess.run(  # noqa: S603 - the operator's own configured command
                    list(template.command), timeout=COMMAND_TIMEOUT_SECONDS, check=False
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                self._log(f"command {template.command[0]} failed: {exc}")
                return
            if result.returncode != 0:
                self._log(f"command {template.command[0]} exited with {result.returncode}")
        elif template.signal is not None and template.pid_file is not None:
            try:
                pid = int(template.pid_file.read_text(encoding="utf-8").strip())
                os.kill(pid, template.signal)
            except (OSError, ValueError) as exc:
                self._log(f"cannot signal the process in {template.pid_file}: {exc}")
                return
            self._log(f"sent {template.signal.name} to {pid}")

    def _renew_login_if_due(self) -> None:
        expiry = self._source.token_expiry()
        if expiry is not None and expiry - self._clock() <= self._renew_margin:
            self._source.login()
            self._log("logged in again before the token expired")

    def _next_wait(self) -> float:
        wait = self._config.interval
        expiry = self._source.token_expiry()
        if expiry is not None:
            wait = min(wait, max(1.0, expiry - self._renew_margin - self._clock()))
        return wait


def install_stop_handlers(agent: Agent) -> Mapping[signal.Signals, Any]:
    """SIGTERM and SIGINT stop the agent after the pass under way; return the old handlers."""
    previous: dict[signal.Signals, Any] = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, lambda *_: agent.stop())
    return previous
