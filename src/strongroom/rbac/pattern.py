"""Rule path patterns: parse, bind the caller's claims, compile to a matcher.

Grammar (SPEC section 4)::

    pattern  = "/" segment *( "/" segment )        ; at most 512 characters, 32 segments
             | "/"                                 ; audit-rule only: the audit log itself
    segment  = "+"                                 ; exactly one whole segment
             | 1*( char | "*" | "{{" claim "}}" )  ; never "." or ".."
    char     = A-Z / a-z / 0-9 / "." / "_" / "-"
    claim    = account_id | arn | role_name | role_id | resource_id | user_name | user_id

``*`` matches any run of characters including ``/`` (and the empty run); ``+`` matches one
or more characters other than ``/``; ``{{claim}}`` is replaced by the caller's claim value;
everything else is literal. For auth-method, role and audit rules the path is ``/<name>``:
exactly one segment.

A pattern goes through three stages: :func:`parse_rule_path` checks untrusted text once, on
write; :func:`bind` substitutes one caller's claims; :func:`compile_bound` builds the regex
that the decision loop calls.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

from strongroom.errors import InvalidRequestError, RuleTooComplexError
from strongroom.rbac.capability import RuleType

MAX_PATTERN_LENGTH = 512
MAX_PATTERN_SEGMENTS = 32
# Wildcards ('*', '+') and templates in a new rule's path. Each one multiplies what the
# no-escalation check may have to explore; real rules need two or three.
MAX_PATTERN_WILDCARDS = 8
# The claims a login produces (SPEC section 3), in SPEC order: what a {{claim}} template and an
# association's sub-claims may name. Logins (auth/aws_iam/identity.py) and association bodies
# (roles/schemas.py) use this one definition.
CLAIM_NAMES = (
    "account_id",
    "arn",
    "role_name",
    "role_id",
    "resource_id",
    "user_name",
    "user_id",
)
# The characters of a path segment (SPEC section 2); '/' separates segments.
SEGMENT_CHARS = frozenset(string.ascii_letters + string.digits + "._-")

_PIECE = re.compile(r"\{\{([^{}]*)\}\}|(\*+)|([A-Za-z0-9._-]+)")
_CLAIM_VALUE = re.compile(r"[A-Za-z0-9._-]{1,128}")
_SEGMENT_HELP = (
    "each segment of a rule path is '+' or is made of A-Z a-z 0-9 . _ -, '*' and "
    "{{claim}} templates"
)


class Wildcard(Enum):
    STAR = "*"
    SEGMENT = "+"


@dataclass(frozen=True, slots=True)
class Claim:
    """A ``{{name}}`` template, replaced by the caller's claim of that name."""

    name: str


# A literal run (which may contain '/'), a wildcard, or a claim template.
Token = str | Wildcard | Claim
# A pattern after claim substitution: only literal runs and wildcards remain.
BoundToken = str | Wildcard


class RulePattern(NamedTuple):
    """A parsed pattern: its canonical text and its tokens (adjacent literals merged)."""

    text: str
    tokens: tuple[Token, ...]


def validate_rule_path(unverified: str, rule_type: RuleType) -> str:
    """Return the canonical form of a rule path; raise InvalidRequestError if it is not valid."""
    return parse_rule_path(unverified, rule_type).text


def validate_new_rule_path(unverified: str, rule_type: RuleType) -> str:
    """Like :func:`validate_rule_path`, for a rule about to be written: also raise
    RuleTooComplexError beyond :data:`MAX_PATTERN_WILDCARDS` wildcards and templates.

    Only new rules are held to it: stored rules written before the bound keep working.
    """
    parsed = parse_rule_path(unverified, rule_type)
    wildcards = sum(not isinstance(token, str) for token in parsed.tokens)
    if wildcards > MAX_PATTERN_WILDCARDS:
        # Attack: patterns dense in wildcards, written to make every later check costly.
        raise RuleTooComplexError(
            f"a rule path has at most {MAX_PATTERN_WILDCARDS} wildcards ('*', '+') and "
            "{{claim}} templates in all",
            reason=f"rule path with {wildcards} wildcards refused",
        )
    return parsed.text


def parse_rule_path(unverified: str, rule_type: RuleType) -> RulePattern:
    """Parse a rule path; raise InvalidRequestError with the reason if it is not valid.

    A missing leading ``/`` is added and runs of ``*`` are collapsed to one (they match the
    same paths), so equal patterns have equal text. Empty, ``.`` and ``..`` segments are
    refused rather than resolved, so that a pattern cannot mean something other than it reads.
    """
    if not isinstance(unverified, str) or not unverified:
        raise InvalidRequestError("a rule path must be a non-empty string")
    path = unverified if unverified.startswith("/") else "/" + unverified
    if len(path) > MAX_PATTERN_LENGTH:
        raise InvalidRequestError(f"a rule path is at most {MAX_PATTERN_LENGTH} characters")
    if path == "/" and rule_type == RuleType.AUDIT:
        return RulePattern("/", ("/",))
    segments = path[1:].split("/")
    if len(segments) > MAX_PATTERN_SEGMENTS:
        raise InvalidRequestError(f"a rule path has at most {MAX_PATTERN_SEGMENTS} segments")
    if rule_type != RuleType.ITEM and len(segments) != 1:
        raise InvalidRequestError(f"{rule_type} paths are /<name>: exactly one segment")
    tokens: list[Token] = []
    for segment in segments:
        _append(tokens, "/")
        for token in _parse_segment(segment):
            _append(tokens, token)
    return RulePattern(_render(tokens), tuple(tokens))


def _parse_segment(segment: str) -> list[Token]:
    if segment == "":
        raise InvalidRequestError("a rule path has no empty segments ('//' or a trailing '/')")
    if segment in (".", ".."):
        raise InvalidRequestError("a rule path has no '.' or '..' segments")
    if segment == "+":
        return [Wildcard.SEGMENT]
    tokens: list[Token] = []
    position = 0
    while position < len(segment):
        piece = _PIECE.match(segment, position)
        if piece is None:
            raise InvalidRequestError(
                f"unexpected {segment[position]!r} in rule path segment {segment[:64]!r}: "
                + _SEGMENT_HELP
            )
        claim, stars, literal = piece.groups()
        if claim is not None:
            if claim not in CLAIM_NAMES:
                raise InvalidRequestError(
                    f"unknown claim {{{{{claim[:64]}}}}} in a rule path; known claims: "
                    + ", ".join(sorted(CLAIM_NAMES))
                )
            tokens.append(Claim(claim))
        elif stars is not None:
            tokens.append(Wildcard.STAR)  # '**' matches what '*' matches: one spelling
        else:
            tokens.append(literal)
        position = piece.end()
    return tokens


def _append(tokens: list[Token], token: Token) -> None:
    # One token per literal run, so that a pattern with no wildcard is a single string.
    if tokens and isinstance(token, str) and isinstance(tokens[-1], str):
        tokens[-1] += token
    else:
        tokens.append(token)


def _render(tokens: list[Token]) -> str:
    return "".join(
        t if isinstance(t, str) else f"{{{{{t.name}}}}}" if isinstance(t, Claim) else t.value
        for t in tokens
    )


def is_valid_claim_value(value: object) -> bool:
    """Whether a claim value can stand in for a template: one valid path segment."""
    return (
        isinstance(value, str)
        and value not in (".", "..")
        and _CLAIM_VALUE.fullmatch(value) is not None
    )


def bind(tokens: tuple[Token, ...], claims: Mapping[str, str]) -> tuple[BoundToken, ...] | None:
    """Substitute the caller's claims; None if a claim is missing or not a single segment.

    The value check is the security boundary here: a role name such as ``a/b`` or ``..``, or
    one holding ``*``, would otherwise widen the rule beyond the caller's own folder.
    """
    bound: list[BoundToken] = []
    for token in tokens:
        part: BoundToken
        if isinstance(token, Claim):
            value = claims.get(token.name)
            if not is_valid_claim_value(value):
                return None
            part = str(value)
        else:
            part = token
        if isinstance(part, str) and bound and isinstance(bound[-1], str):
            bound[-1] += part
        else:
            bound.append(part)
    return tuple(bound)


def compile_bound(bound: tuple[BoundToken, ...]) -> re.Pattern[str]:
    """Compile a bound pattern to a regex for ``fullmatch``, free of catastrophic backtracking.

    Attack: a rule author stalling every worker with a backtracking bomb (``/*a*a*a*a*a*b``
    is exponential in a plain translation). The pattern is split at each ``*`` into pieces.
    A piece is deterministic once its start is fixed (``+`` is a whole segment, so
    ``[^/]++`` is always followed by ``/`` or the end), and of two matches of a piece the one
    that starts first also ends first (its literal head and its slashes fix its layout).
    Whatever follows a middle piece begins with ``*``, so committing to its first match loses
    nothing: middle pieces sit in atomic groups, and a match costs about path length x
    pattern length.
    """
    pieces: list[list[str]] = [[]]
    for token in bound:
        if token is Wildcard.STAR:
            pieces.append([])
        elif token is Wildcard.SEGMENT:
            pieces[-1].append("[^/]++")
        else:
            pieces[-1].append(re.escape(token))
    texts = ["".join(piece) for piece in pieces]
    if len(texts) == 1:
        regex = texts[0]
    else:
        middle = "".join(f"(?>.*?{text})" for text in texts[1:-1])
        regex = f"{texts[0]}{middle}.*{texts[-1]}"
    return re.compile(regex, re.DOTALL)
