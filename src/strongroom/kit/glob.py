"""The one wildcard syntax of Strongroom: ``*`` matches any run of characters, all else is literal.

Used for AWS bound lists (SPEC section 3) and association sub-claims. Matching is case-sensitive
and always covers the whole value. There is no ``?``, no character class and no escape: every
character other than ``*`` stands for itself.

Matching does not use regular expressions. A pattern such as ``*a*a*a*a*b`` compiled to a
backtracking regex can take time polynomial in the value's length to the power of the number of
stars (a denial of service from whoever may write a bound). Here a pattern is split on ``*`` once
(cached) and the pieces are located left to right with ``str.find``, which is greedy-safe for
star-only globs and costs at most O(len(pattern) * len(value)).
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=4096)
def _compile(pattern: str) -> tuple[str, ...]:
    """Split ``pattern`` on ``*``: ``("prefix", *middles, "suffix")``; a literal is one piece."""
    return tuple(pattern.split("*"))


def glob_match(pattern: str, value: str) -> bool:
    """Whether ``value`` as a whole matches ``pattern`` (``*`` = any run, including none)."""
    pieces = _compile(pattern)
    if len(pieces) == 1:
        return pattern == value
    prefix, *middles, suffix = pieces
    if len(value) < len(prefix) + len(suffix):
        return False
    if not value.startswith(prefix) or not value.endswith(suffix):
        return False
    position = len(prefix)
    end = len(value) - len(suffix)
    for middle in middles:
        if not middle:
            continue
        # Leftmost occurrence is always right for '*'-only globs: taking an earlier match never
        # leaves less room for the pieces that follow.
        found = value.find(middle, position, end)
        if found < 0:
            return False
        position = found + len(middle)
    return True
