"""Reading console forms, and placing validation errors beside the fields they concern.

Forms arrive as ``application/x-www-form-urlencoded`` text. They are turned into the same
pydantic request schemas that the REST API validates, so every rule and every message is the
API's own; this module only maps a message back to the form field it is about.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.datastructures import FormData

from strongroom.errors import (
    ConflictError,
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    StrongroomError,
)

# Bounds on what a console form may carry (the request body itself is capped at 1 MiB).
MAX_FIELDS = 200
FORM_ERROR = ""  # the key of an error about the whole form rather than one field
FORBIDDEN_MESSAGE = "Your access roles do not allow this."

Model = TypeVar("Model", bound=BaseModel)


class InvalidFormError(Exception):
    """A form to show again, with ``errors`` beside its fields, answered with ``status``."""

    def __init__(self, errors: dict[str, str], status: int, reason: str) -> None:
        super().__init__(reason)
        self.errors = errors
        self.status = status
        self.reason = reason


_LIST_SEPARATOR = re.compile(r"[,\n\r]+")


class Form:
    """The text fields of one submitted form."""

    def __init__(self, data: FormData) -> None:
        self._data = data

    @classmethod
    async def read(cls, request: Request) -> Form:
        """Parse the body. A file upload, too many fields or an oversized field raises
        Starlette's HTTPException(400), which :class:`ConsoleRoute` shows as a 400 page."""
        data = await request.form(max_files=0, max_fields=MAX_FIELDS)
        return cls(data)

    def text(self, name: str) -> str:
        """The field's value with surrounding whitespace removed; ``""`` when absent."""
        return self.raw(name).strip()

    def raw(self, name: str) -> str:
        """The field's value exactly as sent (for secret values); ``""`` when absent."""
        value = self._data.get(name)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise InvalidRequestError(f"{name} must be text")
        return value

    def texts(self, name: str) -> list[str]:
        """Every value sent under ``name`` (checkboxes), stripped, empty ones dropped."""
        values: list[str] = []
        for value in self._data.getlist(name):
            if not isinstance(value, str):
                raise InvalidRequestError(f"{name} must be text")
            if value.strip():
                values.append(value.strip())
        return values

    def split(self, name: str) -> list[str]:
        """A list typed into one field, separated by commas or line breaks."""
        return split_list(self.text(name))

    def optional(self, name: str) -> str | None:
        """The field's text, or None when it was left empty."""
        return self.text(name) or None


def split_list(text: str) -> list[str]:
    return [part.strip() for part in _LIST_SEPARATOR.split(text) if part.strip()]


def validation_errors(exc: ValidationError) -> dict[str, str]:
    """The first message for each field, worded as the REST API words it."""
    errors: dict[str, str] = {}
    for error in exc.errors(include_url=False, include_input=False):
        location = [str(part) for part in error.get("loc", ())]
        field = location[0] if location else FORM_ERROR
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        if len(location) > 1 and location[1].isdigit():
            message = f"entry {int(location[1]) + 1}: {message}"
        errors.setdefault(field, message)
    return errors


def validate(model: type[Model], data: Mapping[str, Any]) -> Model:
    """``model`` validated from ``data``; raise :class:`InvalidFormError` naming the bad fields.

    The API's schemas raise pydantic errors (located) and, from their own validators,
    InvalidRequestError (not located, and ending validation at the first one); the latter
    are placed by validating each field on its own.
    """
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        errors = validation_errors(exc)
        raise InvalidFormError(errors, 400, "; ".join(errors.values())) from None
    except StrongroomError as exc:
        errors = _errors_by_field(model, data) or {FORM_ERROR: exc.message}
        raise InvalidFormError(errors, exc.status, exc.reason) from None


def _errors_by_field(model: type[BaseModel], data: Mapping[str, Any]) -> dict[str, str]:
    errors: dict[str, str] = {}
    for name, value in data.items():
        info = model.model_fields.get(name)
        if info is None:
            continue
        annotation: Any = info.annotation
        if info.metadata:
            annotation = Annotated[annotation, *info.metadata]
        try:
            TypeAdapter(annotation).validate_python(value)
        except ValidationError as exc:
            errors[name] = next(iter(validation_errors(exc).values()), "invalid value")
        except StrongroomError as exc:
            errors[name] = exc.message
    return errors


_PLACEABLE = (
    InvalidRequestError,
    ForbiddenError,
    NotFoundError,
    ConflictError,
    PayloadTooLargeError,
)


def service_form_errors(
    exc: StrongroomError, hints: Mapping[str, str] | Sequence[tuple[str, str]] = ()
) -> InvalidFormError:
    """The form errors for a service's refusal; errors that concern no form are re-raised."""
    if not isinstance(exc, _PLACEABLE):
        raise exc
    if isinstance(exc, ForbiddenError):
        return InvalidFormError({FORM_ERROR: shown_message(exc)}, exc.status, exc.reason)
    return InvalidFormError(place_error(exc, hints), exc.status, exc.reason)


def shown_message(exc: StrongroomError) -> str:
    """What the user reads about ``exc``: its safe message, a plain refusal for a 403."""
    # Information leak: a refusal says only that it is not allowed, nothing about the object
    # (a service's own wording, such as the no-escalation rule, names no object either).
    if isinstance(exc, ForbiddenError) and exc.message == ForbiddenError.default_message:
        return FORBIDDEN_MESSAGE
    return exc.message


def place_error(
    exc: StrongroomError, hints: Mapping[str, str] | Sequence[tuple[str, str]] = ()
) -> dict[str, str]:
    """Put a service error beside the field its message names, else on the whole form.

    ``hints`` maps a fragment of a message (lower case) to the field it concerns, e.g.
    ``{"sts_url": "sts_url", "already exists": "name"}``; the first fragment found wins.
    """
    text = exc.message.lower()
    pairs = hints.items() if isinstance(hints, Mapping) else hints
    for fragment, field in pairs:
        if fragment in text:
            return {field: exc.message}
    return {FORM_ERROR: exc.message}
