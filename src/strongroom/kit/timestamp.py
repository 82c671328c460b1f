"""``Timestamp``: a moment as the API writes it in a response body.

ISO 8601 in UTC, whole seconds, a ``Z`` suffix (``2025-01-31T12:00:00Z``: what
:func:`strongroom.kit.clock.isoformat_z` writes). A response model field of this type accepts
that text or an aware ``datetime`` and always serialises to that text, so a service may hand
either to a response model and the body stays the same.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AwareDatetime, PlainSerializer, WithJsonSchema

from strongroom.kit.clock import isoformat_z

Timestamp = Annotated[
    AwareDatetime,
    PlainSerializer(isoformat_z, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time", "examples": ["2025-01-31T12:00:00Z"]}),
]
