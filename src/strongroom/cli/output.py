"""How client commands print: plain lines, rich tables, JSON, bare values, errors.

Results go to stdout, everything else (notices, errors, hints) to stderr, so that
``$(strongroom get-secret-value …)`` and ``… --json | jq`` see only the result. Text that came
from the server or the user is never interpreted as rich markup.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from strongroom.cli.errors import CliError

PIPE_WIDTH = 4096


class Output:
    """Printing for one command; ``as_json`` switches results to JSON."""

    def __init__(self, *, as_json: bool) -> None:
        self.as_json = as_json
        # Piped output is for grep and friends: never wrap a table row there.
        width = None if sys.stdout.isatty() else PIPE_WIDTH
        self._out = Console(highlight=False, soft_wrap=True, width=width)
        self._err = Console(stderr=True, highlight=False, soft_wrap=True)

    def json(self, data: Any) -> None:
        """``data`` as indented JSON on stdout."""
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def line(self, text: str) -> None:
        """One plain line on stdout."""
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def value(self, value: str) -> None:
        """A secret value, verbatim (UTF-8) plus one newline: safe inside ``$(…)``."""
        data = value.encode("utf-8") + b"\n"
        buffer = getattr(sys.stdout, "buffer", None)
        if buffer is None:  # a text-only stream (tests)
            sys.stdout.write(data.decode("utf-8"))
        else:
            sys.stdout.flush()
            buffer.write(data)
        sys.stdout.flush()

    def notice(self, text: str) -> None:
        """A remark for the person at the terminal, on stderr."""
        self._err.print(Text(text, style="yellow"))

    def table(
        self, columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None
    ) -> None:
        """A table on stdout; cells are shown as plain text."""
        table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*(Text(_cell(cell)) for cell in row))
        self._out.print(table)

    def fields(self, pairs: Iterable[tuple[str, Any]], *, title: str | None = None) -> None:
        """Label/value pairs as a two-column table on stdout."""
        table = Table(title=title, box=None, show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for label, value in pairs:
            table.add_row(Text(label), Text(_cell(value)))
        self._out.print(table)


def print_error(error: CliError, *, as_json: bool = False) -> None:
    """An error (and its hint) on stderr; with ``as_json``, one JSON object."""
    text = json.dumps(error.as_json(), ensure_ascii=False) if as_json else error.render()
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        return "; ".join(f"{key}={_cell(item)}" for key, item in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_cell(item) for item in value)
    return str(value)
