"""KV version 2 at the mount ``secret``, in Strongroom's terms. Pure.

Paths: ``secret/data/<p>`` and ``secret/metadata/<p>`` name the item ``/<p>``; item names are
then checked as everywhere else (``kit.names``), so one item has one name whichever API names it.

Values: a Vault secret is a JSON object, a Strongroom value a string. An item whose value is the
text of a JSON object reads as that object; any other value reads as ``{"value": "<text>"}``.
A Vault write stores its ``data`` object as compact JSON text, so it reads back unchanged from
either API (and ``{"value": "x"}`` written here reads as the JSON text ``{"value":"x"}``
natively, not as ``x``: a value is never silently reinterpreted).

Bodies follow what OpenBao answers (``internal/builtin/logical/kv``): a version's metadata has
``created_time``, ``custom_metadata`` (always null here), ``deletion_time`` (always ``""``: there
is no soft delete), ``destroyed`` (false) and ``version``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from strongroom.errors import InvalidRequestError
from strongroom.vault.schemas import KvMetadata, KvMount, KvMountConfig, KvVersion, KvVersionState

MOUNT = "secret"
MOUNT_PATH = MOUNT + "/"
MAX_CAS = 2**31
# What `bao kv …` and Vault Agent's templates ask before anything else (the "preflight"):
# which engine and version serve a path. Only the type and options.version are read.
# Never changed after this (nothing assigns to its fields): every answer may send this one.
MOUNT_DESCRIPTION = KvMount(
    type="kv",
    path=MOUNT_PATH,
    description="Strongroom items (key/value version 2)",
    accessor="kv_strongroom",
    options={"version": "2"},
    config=KvMountConfig(default_lease_ttl=0, max_lease_ttl=0, force_no_cache=False),
    local=False,
    seal_wrap=False,
    external_entropy_access=False,
    plugin_version="",
)


def item_name(unverified_path: str) -> str:
    """The item name for the part of a KV path after ``data/`` or ``metadata/`` (unchecked:
    the secrets service normalises it and raises InvalidNameError)."""
    return "/" + unverified_path.strip("/")


def is_in_mount(unverified_path: str) -> bool:
    """Whether a path the preflight asks about (``secret``, ``secret/``, ``secret/a/b``) lies
    under the one KV mount."""
    path = unverified_path.strip("/")
    return path == MOUNT or path.startswith(MOUNT_PATH)


def _exact_int(literal: str) -> int:
    number = int(literal)
    if not -(2**63) <= number < 2**64:
        raise ValueError("an integer beyond 64 bits")
    return number


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_json(text: str | bytes) -> Any:
    """JSON as every answer can carry it back unchanged; ValueError otherwise.

    Integers beyond 64 bits (which orjson would turn into inexact floats, and could not
    write back), ``NaN`` and ``Infinity`` (not JSON) and nesting too deep are refused.
    """
    try:
        return json.loads(text, parse_int=_exact_int, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def data_of(value: str) -> dict[str, Any]:
    """The ``data`` object Vault clients read for an item's value (see the module docstring)."""
    if value.startswith("{"):
        try:
            parsed = parse_json(value)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return parsed
    return {"value": value}


def value_of(data: Mapping[str, Any]) -> str:
    """The value stored for a written ``data`` object: its compact JSON text."""
    return orjson.dumps(data).decode()


def version_metadata(version: int, created_time: datetime) -> KvVersion:
    return KvVersion(
        created_time=created_time,
        custom_metadata=None,
        deletion_time="",
        destroyed=False,
        version=version,
    )


@dataclass(frozen=True, slots=True)
class KvWrite:
    """A checked ``POST``/``PUT secret/data/<p>`` body."""

    data: dict[str, Any]
    cas: int | None  # None: no check; 0: only if absent; N: only if N is the current version


def parse_write(unverified: Any) -> KvWrite:
    """Check a KV write body ``{"data": {…}, "options": {"cas": N}}``; raise
    InvalidRequestError as Vault does (``no data provided``). Other keys are ignored, as
    Vault's framework ignores fields it does not know."""
    if not isinstance(unverified, dict):
        raise InvalidRequestError("the body must be a JSON object")
    data = unverified.get("data")
    if data is None:
        raise InvalidRequestError("no data provided")
    if not isinstance(data, dict):
        raise InvalidRequestError("data must be a JSON object")
    options = unverified.get("options")
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise InvalidRequestError("options must be a JSON object")
    cas = options.get("cas")
    # bool is an int in Python: {"cas": true} must not read as 1.
    if cas is not None and (
        isinstance(cas, bool) or not isinstance(cas, int) or not 0 <= cas <= MAX_CAS
    ):
        raise InvalidRequestError(f"options.cas must be a whole number from 0 to {MAX_CAS}")
    return KvWrite(data=data, cas=cas)


def list_keys(folders: Sequence[str], item_names: Sequence[str]) -> list[str]:
    """Vault's ``keys`` for a listing: item names and folders (``name/``) relative to it."""
    keys = [name.rsplit("/", 1)[-1] for name in item_names]
    keys += [folder.rsplit("/", 1)[-1] + "/" for folder in folders]
    return sorted(keys)


def key_metadata(current_version: int, versions: Sequence[tuple[int, datetime]]) -> KvMetadata:
    """``GET secret/metadata/<p>``: ``versions`` are the (number, created_time) that exist,
    oldest first; never none (a secret always has a version)."""
    oldest = min(number for number, _ in versions)
    return KvMetadata(
        cas_required=False,
        created_time=versions[0][1],
        current_version=current_version,
        custom_metadata=None,
        delete_version_after="0s",
        max_versions=0,
        oldest_version=oldest,
        updated_time=versions[-1][1],
        versions={
            str(number): KvVersionState(created_time=created, deletion_time="", destroyed=False)
            for number, created in versions
        },
    )
