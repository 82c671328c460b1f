"""Decoding a client's signed STS request from the login body, without judging it.

Two encodings carry the same thing, a SigV4-signed ``sts:GetCallerIdentity`` request:

* ``cloud_id`` (akeyless-cloud-id and the Akeyless CLIs)::

      base64( JSON {"sts_request_method": "POST",
                    "sts_request_url":     base64(url),
                    "sts_request_body":    base64(body),          # optional, see below
                    "sts_request_headers": base64(JSON {"Name": ["value"]})} )

  One generator revision marshalled the JSON before adding the body, so a missing
  ``sts_request_body`` means the fixed GetCallerIdentity body.

* the HashiCorp Vault field names (hvac ``iam_login``, the Vault/OpenBao CLIs):
  ``iam_http_request_method`` (plain), ``iam_request_url`` and ``iam_request_body`` (base64),
  ``iam_request_headers`` (base64 of the JSON map, the JSON map as a string, or an object),
  where a header value is a string or a list of strings.

Both decoders return an :class:`UnverifiedStsRequest` that keeps every header pair in the order
received and with its name as given; judging it is :mod:`.vetting`'s job. Base64 is the standard
alphabet with its padding, nothing else (no whitespace, no URL-safe alphabet). JSON objects with
a repeated key are refused: two parsers could pick different copies (parser differential).

Every failure raises :class:`~strongroom.errors.InvalidRequestError` (HTTP 400): these are
requests we cannot even read. Nothing here ever echoes a header value in a message.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from strongroom.errors import InvalidRequestError

MAX_CLOUD_ID_CHARS = 16 * 1024
MAX_VAULT_FIELDS_CHARS = 16 * 1024
MAX_HEADER_ENTRIES = 64  # before vetting narrows it to 16; bounds the work of decoding
GET_CALLER_IDENTITY_BODY = b"Action=GetCallerIdentity&Version=2011-06-15"

_CLOUD_ID_KEYS = frozenset(
    {"sts_request_method", "sts_request_url", "sts_request_body", "sts_request_headers"}
)


@dataclass(frozen=True)
class UnverifiedStsRequest:
    """A signed STS request exactly as the client described it; nothing in it is checked yet."""

    method: str
    url: str
    body: bytes = b""
    # In received order, names as given; one pair per value, so duplicates stay visible.
    headers: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:
        # Header values include the signature and the session token: names only.
        names = [name for name, _ in self.headers]
        return (
            f"UnverifiedStsRequest(method={self.method[:16]!r}, url={self.url[:200]!r}, "
            f"body=<{len(self.body)} bytes>, header_names={names!r})"
        )


class _DuplicateKeyError(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key)
        result[key] = value
    return result


def _json(data: bytes | str, what: str) -> Any:
    try:
        return json.loads(data, object_pairs_hook=_unique_keys)
    except _DuplicateKeyError as exc:
        raise InvalidRequestError(f"{what} repeats the key {str(exc)[:64]!r}") from exc
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and undecodable bytes; RecursionError deep nesting.
        raise InvalidRequestError(f"{what} is not valid JSON") from exc


def _b64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidRequestError(f"{what} must be a base64 string")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise InvalidRequestError(
            f"{what} is not valid base64 (standard alphabet, with padding)"
        ) from exc


def _text(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequestError(f"{what} is not UTF-8 text") from exc


def _method(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidRequestError(f"{what} must be a string")
    return value


def _header_pairs(value: object, what: str) -> tuple[tuple[str, str], ...]:
    """``{"Name": "v" | ["v", ...]}`` as ``(("Name", "v"), ...)`` in order; raise if ill-typed."""
    if not isinstance(value, Mapping):
        raise InvalidRequestError(f"{what} must be a JSON object of header names to values")
    if len(value) > MAX_HEADER_ENTRIES:
        raise InvalidRequestError(f"{what} has more than {MAX_HEADER_ENTRIES} headers")
    pairs: list[tuple[str, str]] = []
    for name, values in value.items():
        if not isinstance(name, str):
            raise InvalidRequestError(f"{what}: header names must be strings")
        items = [values] if isinstance(values, str) else values
        if not isinstance(items, list) or not items:
            raise InvalidRequestError(
                f"{what}: the value of header {name[:64]!r} must be a string or a non-empty "
                "list of strings"
            )
        for item in items:
            if not isinstance(item, str):
                # akeyless-cloud-id emits [null] for X-Amz-Security-Token with long-term keys;
                # such a request cannot verify anyway.
                raise InvalidRequestError(
                    f"{what}: the value of header {name[:64]!r} must be a string"
                )
            pairs.append((name, item))
        if len(pairs) > MAX_HEADER_ENTRIES:
            raise InvalidRequestError(f"{what} has more than {MAX_HEADER_ENTRIES} headers")
    return tuple(pairs)


def decode_cloud_id(unverified: str) -> UnverifiedStsRequest:
    """Decode an Akeyless ``cloud_id``; raise InvalidRequestError if it is malformed.

    The size cap (16 KiB) is checked before any decoding, so an oversized value costs nothing.
    """
    if not isinstance(unverified, str):
        raise InvalidRequestError("cloud_id must be a string")
    if len(unverified) > MAX_CLOUD_ID_CHARS:
        raise InvalidRequestError(f"cloud_id is longer than {MAX_CLOUD_ID_CHARS} characters")
    outer = _json(_b64(unverified, "cloud_id"), "the decoded cloud_id")
    if not isinstance(outer, dict):
        raise InvalidRequestError("the decoded cloud_id must be a JSON object")
    unknown = set(outer) - _CLOUD_ID_KEYS
    if unknown:
        raise InvalidRequestError(
            "the decoded cloud_id has unexpected keys; expected only "
            + ", ".join(sorted(_CLOUD_ID_KEYS))
        )
    for key in ("sts_request_method", "sts_request_url", "sts_request_headers"):
        if key not in outer:
            raise InvalidRequestError(f"the decoded cloud_id lacks {key}")
    method = _method(outer["sts_request_method"], "sts_request_method")
    url = _text(_b64(outer["sts_request_url"], "sts_request_url"), "sts_request_url")
    if "sts_request_body" in outer:
        body = _b64(outer["sts_request_body"], "sts_request_body")
    else:
        # An older generator revision omitted the body; the signature covers the fixed one.
        body = GET_CALLER_IDENTITY_BODY
    headers_json = _b64(outer["sts_request_headers"], "sts_request_headers")
    headers = _header_pairs(_json(headers_json, "sts_request_headers"), "sts_request_headers")
    return UnverifiedStsRequest(method=method, url=url, body=body, headers=headers)


def _vault_headers(value: object) -> tuple[tuple[str, str], ...]:
    what = "iam_request_headers"
    if isinstance(value, Mapping):
        return _header_pairs(value, what)
    if not isinstance(value, str):
        raise InvalidRequestError(f"{what} must be base64 of a JSON object, JSON or an object")
    # '{' is not in the base64 alphabet, so the two string forms cannot be confused.
    if value.lstrip().startswith("{"):
        return _header_pairs(_json(value, what), what)
    return _header_pairs(_json(_b64(value, what), what), what)


def _vault_size(value: object) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, Mapping):
        size = 0
        for name, values in list(value.items())[: MAX_HEADER_ENTRIES + 1]:
            size += len(name) if isinstance(name, str) else 0
            items = values if isinstance(values, list) else [values]
            size += sum(len(item) for item in items[:MAX_HEADER_ENTRIES] if isinstance(item, str))
        return size
    return 0


def decode_vault_fields(
    method: object, url: object, body: object, headers: object
) -> UnverifiedStsRequest:
    """Decode hvac/Vault ``iam_*`` login fields; raise InvalidRequestError if malformed.

    ``method`` is ``iam_http_request_method``, ``url`` and ``body`` the base64
    ``iam_request_url`` and ``iam_request_body``, ``headers`` ``iam_request_headers`` in any of
    its three forms. All four are required; together they are capped at 16 KiB.
    """
    fields = {
        "iam_http_request_method": method,
        "iam_request_url": url,
        "iam_request_body": body,
        "iam_request_headers": headers,
    }
    for name, value in fields.items():
        if value is None:
            raise InvalidRequestError(f"{name} is required")
    if sum(_vault_size(value) for value in fields.values()) > MAX_VAULT_FIELDS_CHARS:
        raise InvalidRequestError(
            f"the iam_* fields together are longer than {MAX_VAULT_FIELDS_CHARS} characters"
        )
    return UnverifiedStsRequest(
        method=_method(method, "iam_http_request_method"),
        url=_text(_b64(url, "iam_request_url"), "iam_request_url"),
        body=_b64(body, "iam_request_body"),
        headers=_vault_headers(headers),
    )
