"""Validation of item paths and object names (SPEC section 2). Pure; raises InvalidNameError."""

from __future__ import annotations

import re

from strongroom.errors import InvalidNameError

MAX_ITEM_PATH_LENGTH = 512
MAX_ITEM_SEGMENTS = 32
_SEGMENT = re.compile(r"[A-Za-z0-9._-]{1,128}")
_OBJECT_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")


def normalize_item_path(unverified: str) -> str:
    """Return the canonical absolute form of an item name, or raise InvalidNameError.

    ``a/b`` becomes ``/a/b``. Empty segments, ``.`` and ``..`` are refused rather than
    resolved, so two spellings never name one item (path confusion in rules and audit).
    """
    if not isinstance(unverified, str):
        raise InvalidNameError("an item name must be a string")
    path = unverified if unverified.startswith("/") else "/" + unverified
    if len(path) > MAX_ITEM_PATH_LENGTH:
        raise InvalidNameError(f"an item name is at most {MAX_ITEM_PATH_LENGTH} characters")
    segments = path[1:].split("/")
    if len(segments) > MAX_ITEM_SEGMENTS:
        raise InvalidNameError(f"an item name has at most {MAX_ITEM_SEGMENTS} segments")
    for segment in segments:
        if segment in (".", "..") or not _SEGMENT.fullmatch(segment):
            raise InvalidNameError(
                "an item name is /segment/segment… where each segment is 1-128 of "
                "A-Z a-z 0-9 . _ - and never '.' or '..'"
            )
    return path


def normalize_folder_path(unverified: str) -> str:
    """Return ``/`` or the canonical form of a folder path (no trailing slash)."""
    stripped = unverified.strip()
    if stripped in ("", "/"):
        return "/"
    return normalize_item_path(stripped.rstrip("/"))


def validate_object_name(unverified: str, *, kind: str) -> str:
    """Check an auth method or role name; return it unchanged."""
    # "." and ".." would be dropped from URLs by clients and proxies (path confusion).
    if (
        not isinstance(unverified, str)
        or not _OBJECT_NAME.fullmatch(unverified)
        or unverified in (".", "..")
    ):
        raise InvalidNameError(f"a {kind} name is 1-128 of A-Z a-z 0-9 . _ - (not . or ..)")
    return unverified
