"""Rows into the frozen records the repositories return.

A repository's record (a dataclass) names its fields after the columns it is read from, so one
function copies them over; what a field needs beyond the column's value as the driver gives it
(``int()`` of an id, a copy of a JSON object) the repository passes by name.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

R = TypeVar("R", bound="DataclassInstance")


@functools.cache
def _field_names(record_type: type[DataclassInstance]) -> tuple[str, ...]:
    return tuple(field.name for field in dataclasses.fields(record_type))


def record_from_row(record_type: type[R], row: Any, **converted: Any) -> R:
    """A ``record_type`` whose every field is ``row``'s column of the same name, except the
    fields given in ``converted``, which are taken from there instead."""
    copied = {
        name: getattr(row, name) for name in _field_names(record_type) if name not in converted
    }
    return record_type(**copied, **converted)
