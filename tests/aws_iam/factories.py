"""Offline signed requests for the pure-function tests (fake keys; nothing is sent)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from strongroom.auth.aws_iam import UnverifiedStsRequest, decode_cloud_id, vet_sts_request
from strongroom.auth.aws_iam.vetting import VettedStsRequest
from tests.support.moto_sts import AwsCredentials
from tests.support.signing import sign_get_caller_identity

FAKE_CREDENTIALS = AwsCredentials(
    "ASIAFAKEEXAMPLE00001", "fake-secret-key", "FAKE-SESSION-TOKEN-FOR-TESTING-ONLY"
)
NOW = datetime(2026, 11, 27, 19, 43, 50, tzinfo=UTC)
GLOBAL_URL = "https://sts.amazonaws.com"


def signed_fields(**kwargs: Any) -> dict[str, Any]:
    """sign_get_caller_identity with fake credentials, dated NOW unless told otherwise."""
    kwargs.setdefault("amz_date", NOW)
    return sign_get_caller_identity(FAKE_CREDENTIALS, **kwargs)


def signed_request(**kwargs: Any) -> UnverifiedStsRequest:
    """A correctly signed request, decoded from its cloud_id."""
    return decode_cloud_id(signed_fields(**kwargs)["cloud_id"])


def with_headers(
    request: UnverifiedStsRequest,
    *,
    drop: tuple[str, ...] = (),
    set_: Mapping[str, str] | None = None,
    add: tuple[tuple[str, str], ...] = (),
) -> UnverifiedStsRequest:
    """A copy with headers dropped (by lower-case name), replaced, or appended."""
    replacements = {name.lower(): (name, value) for name, value in (set_ or {}).items()}
    headers: list[tuple[str, str]] = []
    for name, value in request.headers:
        lower = name.lower()
        if lower in drop:
            continue
        if lower in replacements:
            headers.append(replacements.pop(lower))
        else:
            headers.append((name, value))
    headers.extend(replacements.values())
    headers.extend(add)
    return UnverifiedStsRequest(request.method, request.url, request.body, tuple(headers))


def vet(
    request: UnverifiedStsRequest,
    *,
    sts_url: str = GLOBAL_URL,
    server_id: str | None = None,
    now: datetime = NOW,
) -> VettedStsRequest:
    return vet_sts_request(request, sts_url=sts_url, server_id=server_id, now=now)
