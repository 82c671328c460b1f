"""The pure parts of the Vault surface: KV v2 translations and Vault's error answers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from strongroom.errors import (
    AuthenticationDenied,
    ConflictError,
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    StrongroomError,
    UnauthorizedError,
    UpstreamUnavailableError,
)
from strongroom.vault import kv
from strongroom.vault.errors import UnsupportedOperationError, VaultError, vault_error


@pytest.mark.parametrize(
    ("value", "data"),
    [
        ("hunter2", {"value": "hunter2"}),
        ('{"a": "b"}', {"a": "b"}),
        ('{"n": 1, "nested": {"x": [1, null]}}', {"n": 1, "nested": {"x": [1, None]}}),
        ("{}", {}),
        ("{not json", {"value": "{not json"}),
        ("[1, 2]", {"value": "[1, 2]"}),
        ('"a string"', {"value": '"a string"'}),
        (' {"a": 1}', {"value": ' {"a": 1}'}),
        (
            '{"big": 123456789012345678901234567890}',
            {"value": '{"big": 123456789012345678901234567890}'},
        ),
        ("[" * 2000, {"value": "[" * 2000}),
        ("{" * 2000, {"value": "{" * 2000}),
        ("", {"value": ""}),
    ],
)
def test_data_of(value: str, data: dict[str, Any]) -> None:
    assert kv.data_of(value) == data


def test_value_of_round_trips_through_data_of() -> None:
    data = {"user": "ü", "list": [1, 2], "flag": True}
    assert kv.value_of(data) == '{"user":"ü","list":[1,2],"flag":true}'
    assert kv.data_of(kv.value_of(data)) == data
    # {"value": "x"} written through Vault is stored as JSON, never unwrapped to "x".
    assert kv.value_of({"value": "x"}) == '{"value":"x"}'


@pytest.mark.parametrize(
    ("path", "name"), [("a/b", "/a/b"), ("/a/b/", "/a/b"), ("", "/"), ("a", "/a")]
)
def test_item_name(path: str, name: str) -> None:
    assert kv.item_name(path) == name


@pytest.mark.parametrize(
    ("path", "inside"),
    [
        ("secret", True),
        ("secret/", True),
        ("/secret/app/db", True),
        ("secrets", False),
        ("secret-other/x", False),
        ("kv/secret", False),
        ("", False),
    ],
)
def test_is_in_mount(path: str, inside: bool) -> None:
    assert kv.is_in_mount(path) is inside


@pytest.mark.parametrize(
    ("body", "write"),
    [
        ({"data": {"a": "b"}}, kv.KvWrite({"a": "b"}, None)),
        ({"data": {}, "options": {}}, kv.KvWrite({}, None)),
        ({"data": {}, "options": None}, kv.KvWrite({}, None)),
        ({"data": {}, "options": {"cas": 0}}, kv.KvWrite({}, 0)),
        ({"data": {}, "options": {"cas": 7}, "version": 3}, kv.KvWrite({}, 7)),
    ],
)
def test_parse_write(body: Any, write: kv.KvWrite) -> None:
    assert kv.parse_write(body) == write


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {},
        {"data": None},
        {"data": []},
        {"data": {}, "options": "x"},
        {"data": {}, "options": {"cas": -1}},
        {"data": {}, "options": {"cas": 1.5}},
        {"data": {}, "options": {"cas": "1"}},
        {"data": {}, "options": {"cas": False}},
        {"data": {}, "options": {"cas": 2**31 + 1}},
    ],
)
def test_parse_write_refuses(body: Any) -> None:
    with pytest.raises(InvalidRequestError):
        kv.parse_write(body)


def test_list_keys_are_relative_and_sorted_with_folders_marked() -> None:
    keys = kv.list_keys(["/app/sub", "/app/b-dir"], ["/app/z", "/app/a"])
    assert keys == ["a", "b-dir/", "sub/", "z"]
    assert kv.list_keys([], []) == []


def test_key_metadata() -> None:
    t3 = datetime(2025, 1, 31, 12, 0, 3, 500, tzinfo=UTC)
    t5 = datetime(2025, 1, 31, 12, 0, 5, tzinfo=UTC)
    metadata = kv.key_metadata(5, [(3, t3), (5, t5)]).model_dump(exclude_unset=True)
    assert metadata["current_version"] == 5
    assert metadata["oldest_version"] == 3
    assert metadata["created_time"] == "2025-01-31T12:00:03Z"
    assert metadata["updated_time"] == "2025-01-31T12:00:05Z"
    assert metadata["versions"] == {
        "3": {"created_time": "2025-01-31T12:00:03Z", "deletion_time": "", "destroyed": False},
        "5": {"created_time": "2025-01-31T12:00:05Z", "deletion_time": "", "destroyed": False},
    }


@pytest.mark.parametrize(
    ("error", "answer"),
    [
        (UnauthorizedError(reason="token expired"), VaultError(403, ["permission denied"])),
        (ForbiddenError(reason="read on /x"), VaultError(403, ["permission denied"])),
        (AuthenticationDenied("STS said no"), VaultError(400, ["access authentication failed"])),
        (NotFoundError("no item named /secret-name"), VaultError(404, [])),
        (ConflictError("exists"), VaultError(400, ["exists"])),
        (InvalidRequestError("bad"), VaultError(400, ["bad"])),
        (PayloadTooLargeError(), VaultError(413, ["the request body or value is too large"])),
        (
            RateLimitedError(7),
            VaultError(429, ["too many failed attempts; retry later"], {"Retry-After": "7"}),
        ),
        (UpstreamUnavailableError(), VaultError(502, ["AWS STS is unavailable; retry later"])),
        (UnsupportedOperationError(), VaultError(405, ["unsupported operation"])),
    ],
)
def test_vault_error(error: StrongroomError, answer: VaultError) -> None:
    assert vault_error(error) == answer
    # The precise reason never reaches the answer.
    assert error.reason not in answer.errors or error.reason == error.message


@pytest.mark.parametrize(
    "text",
    [
        '{"big": 123456789012345678901234567890}',
        '{"n": NaN}',
        '{"n": -Infinity}',
        "[" * 100_000,
        '{"n": ' + "9" * 5000 + "}",
        "{",
    ],
)
def test_parse_json_refuses_what_could_not_come_back_unchanged(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each cause has its own message
        kv.parse_json(text)


def test_parse_json_keeps_64_bit_integers_exact() -> None:
    assert kv.parse_json(b'{"a": 18446744073709551615, "b": -9223372036854775808}') == {
        "a": 2**64 - 1,
        "b": -(2**63),
    }
