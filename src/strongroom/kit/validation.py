"""One readable sentence from pydantic's validation errors, for 400 responses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def describe_validation_errors(errors: Sequence[Any]) -> str:
    """``"field.sub: message"`` for the first problem (the one a user should fix first)."""
    if not errors:
        return "the request is malformed"
    first = errors[0]
    location = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    message = str(first.get("msg", "invalid value"))
    # Strip pydantic's "Value error, " prefix: the message is ours.
    message = message.removeprefix("Value error, ")
    return (f"{location}: {message}" if location else message)[:500]
