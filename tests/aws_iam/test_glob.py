"""kit.glob: '*' is the only wildcard; everything else is literal; whole-value, case-sensitive."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.kit.glob import glob_match


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("app-role", "app-role", True),
        ("app-role", "app-role2", False),
        ("app-role", "App-Role", False),  # case-sensitive
        ("*", "", True),
        ("*", "anything", True),
        ("app-*", "app-", True),
        ("app-*", "app-role", True),
        ("app-*", "my-app-role", False),  # anchored at the start
        ("*-role", "app-role", True),
        ("*-role", "app-roles", False),  # anchored at the end
        ("a*b*c", "abc", True),
        ("a*b*c", "aXbYc", True),
        ("a*b*c", "acb", False),
        ("ab*ba", "aba", False),  # prefix and suffix must not overlap
        ("a**b", "ab", True),
        ("i-*", "i-0abc1234567890def", True),
        ("arn:aws:iam::123456789012:role/team/*", "arn:aws:iam::123456789012:role/team/x", True),
        ("arn:aws:iam::123456789012:role/team/*", "arn:aws:iam::999999999999:role/team/x", False),
        # Regex and fnmatch metacharacters are literal.
        ("a.c", "abc", False),
        ("a.c", "a.c", True),
        ("a?c", "abc", False),
        ("a?c", "a?c", True),
        ("[ab]", "a", False),
        ("[ab]", "[ab]", True),
        ("a\\*", "a\\xyz", True),  # no escaping: the backslash is literal, the star a wildcard
        ("(x|y)+", "(x|y)+", True),
        ("^$", "^$", True),
        ("line*", "line1\nline2", True),  # '*' spans newlines
        ("", "", True),
        ("", "x", False),
    ],
)
def test_glob_match(pattern: str, value: str, expected: bool) -> None:
    assert glob_match(pattern, value) is expected


def _reference(pattern: str, value: str) -> bool:
    regex = "".join(".*" if c == "*" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.DOTALL) is not None


@settings(max_examples=300, deadline=None)
@given(
    pattern=st.text(alphabet="ab*.?[]", max_size=8),
    value=st.text(alphabet="ab.?[]", max_size=10),
)
def test_glob_match_agrees_with_a_regex_reference(pattern: str, value: str) -> None:
    assert glob_match(pattern, value) is _reference(pattern, value)


def test_many_stars_do_not_backtrack_catastrophically() -> None:
    pattern = "*a" * 40 + "*b"
    value = "a" * 5000
    started = time.perf_counter()
    assert glob_match(pattern, value) is False
    assert time.perf_counter() - started < 0.5
