"""Rule path grammar (validate_rule_path), claim binding and the compiled matcher."""

import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strongroom.errors import InvalidRequestError, RuleTooComplexError
from strongroom.rbac import RuleType, validate_new_rule_path, validate_rule_path
from strongroom.rbac.automaton import UNIVERSE, contained
from strongroom.rbac.pattern import (
    Claim,
    Wildcard,
    bind,
    compile_bound,
    is_valid_claim_value,
    parse_rule_path,
)

ITEM, ROLE, AUTH, AUDIT = RuleType.ITEM, RuleType.ROLE, RuleType.AUTH_METHOD, RuleType.AUDIT


@pytest.mark.parametrize(
    ("rule_type", "unverified", "canonical"),
    [
        (ITEM, "/dev/*", "/dev/*"),
        (ITEM, "dev/*", "/dev/*"),  # a missing leading slash is added
        (ITEM, "/*", "/*"),
        (ITEM, "/a/**/b", "/a/*/b"),  # runs of '*' mean the same as one
        (ITEM, "/a***", "/a*"),
        (ITEM, "/dev/+/config", "/dev/+/config"),
        (ITEM, "/+", "/+"),
        (ITEM, "/apps/{{role_name}}/*", "/apps/{{role_name}}/*"),
        (ITEM, "/x-{{account_id}}-{{user_id}}*", "/x-{{account_id}}-{{user_id}}*"),
        (ITEM, "/{{arn}}", "/{{arn}}"),
        (ITEM, "/a.b/c_d-E9", "/a.b/c_d-E9"),
        (ITEM, "/.hidden/...", "/.hidden/..."),  # only '.' and '..' themselves are refused
        (ITEM, "/.*", "/.*"),
        (ITEM, "/" + "/".join(["s"] * 32), "/" + "/".join(["s"] * 32)),
        (ITEM, "/" + "a" * 511, "/" + "a" * 511),
        (ROLE, "/team-*", "/team-*"),
        (ROLE, "admin", "/admin"),
        (ROLE, "/{{role_name}}", "/{{role_name}}"),
        (AUTH, "/*", "/*"),
        (AUTH, "/+", "/+"),
        (AUDIT, "/", "/"),
        (AUDIT, "/*", "/*"),
    ],
)
def test_validate_rule_path_accepts(rule_type: RuleType, unverified: str, canonical: str) -> None:
    assert validate_rule_path(unverified, rule_type) == canonical
    # The canonical form is a fixed point.
    assert validate_rule_path(canonical, rule_type) == canonical


@pytest.mark.parametrize(
    ("rule_type", "unverified", "message"),
    [
        (ITEM, "", "non-empty string"),
        (ITEM, None, "non-empty string"),
        (ITEM, b"/a", "non-empty string"),
        (ITEM, "/", "no empty segments"),
        (ROLE, "/", "no empty segments"),
        (AUTH, "/", "no empty segments"),
        (ITEM, "/dev/", "no empty segments"),
        (ITEM, "/a//b", "no empty segments"),
        (ITEM, "//", "no empty segments"),
        (ITEM, "/a/./b", "'.' or '..'"),
        (ITEM, "/a/../b", "'.' or '..'"),
        (ITEM, "/..", "'.' or '..'"),
        (ITEM, "/a+", r"unexpected '\+'"),  # '+' is a whole segment or nothing
        (ITEM, "/+*", r"unexpected '\+'"),
        (ITEM, "/++", r"unexpected '\+'"),
        (ITEM, "/a/{{nope}}", "unknown claim {{nope}}"),
        (ITEM, "/a/{{}}", "unknown claim"),
        (ITEM, "/a/{{ role_name }}", "unknown claim"),
        (ITEM, "/a/{{role_name}", "unexpected '{'"),
        (ITEM, "/a/{role_name}", "unexpected '{'"),
        (ITEM, "/a/role_name}}", "unexpected '}'"),
        (ITEM, "/a b", "unexpected ' '"),
        (ITEM, " /a", "unexpected ' '"),
        (ITEM, "/caf\u00e9", "unexpected"),
        (ITEM, "/a?", "unexpected '\\?'"),
        (ITEM, "/a[0]", "unexpected"),
        (ITEM, "/a\\b", "unexpected"),
        (ITEM, "/a\nb", "unexpected"),
        (ITEM, "/" + "/".join(["s"] * 33), "at most 32 segments"),
        (ITEM, "/" + "a" * 512, "at most 512 characters"),
        (ROLE, "/a/b", "exactly one segment"),
        (AUTH, "/team/*", "exactly one segment"),
        (AUDIT, "/a/b", "exactly one segment"),
    ],
)
def test_validate_rule_path_rejects(rule_type: RuleType, unverified: object, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        validate_rule_path(unverified, rule_type)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "path",
    [
        "/a*/b*/c*/d*/e*/f*/g*/h*",
        "/+/+/+/+/{{role_name}}/{{arn}}/x*y/*",
        "/a**b**c**d**e**f**g**h**",  # runs of '*' count once
    ],
)
def test_a_new_rule_path_may_hold_eight_wildcards(path: str) -> None:
    assert validate_new_rule_path(path, RuleType.ITEM) == validate_rule_path(path, RuleType.ITEM)


@pytest.mark.parametrize("path", ["/*a*b*c*d*e*f*g*h*", "/+/+/+/+/+/+/+/{{role_name}}/*"])
def test_a_new_rule_path_with_more_wildcards_is_too_complex(path: str) -> None:
    with pytest.raises(RuleTooComplexError, match="at most 8 wildcards"):
        validate_new_rule_path(path, RuleType.ITEM)
    # Stored rules written before the bound still parse, so that their holders keep access.
    assert validate_rule_path(path, RuleType.ITEM) == path


def test_tokens_merge_literals_and_keep_templates_apart() -> None:
    pattern = parse_rule_path("/a/x-{{role_name}}/+/*", ITEM)
    assert pattern.tokens == (
        "/a/x-",
        Claim("role_name"),
        "/",
        Wildcard.SEGMENT,
        "/",
        Wildcard.STAR,
    )


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("web", True),
        ("a.b_c-D9", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("", False),
        (".", False),
        ("..", False),
        ("...", True),
        ("a/b", False),
        ("*", False),
        ("+", False),
        ("arn:aws:iam::123456789012:role/web", False),
        ("caf\u00e9", False),
        ("web\n", False),
        (None, False),
        (7, False),
    ],
)
def test_claim_values_must_be_one_segment(value: object, valid: bool) -> None:
    assert is_valid_claim_value(value) is valid


def test_bind_substitutes_claims_as_literals() -> None:
    tokens = parse_rule_path("/apps/{{role_name}}-{{account_id}}/*", ITEM).tokens
    bound = bind(tokens, {"role_name": "web", "account_id": "123456789012"})
    assert bound == ("/apps/web-123456789012/", Wildcard.STAR)


@pytest.mark.parametrize(
    "claims",
    [{}, {"role_name": "a/b"}, {"role_name": ".."}, {"role_name": "*"}, {"user_id": "web"}],
)
def test_bind_refuses_missing_or_invalid_claims(claims: dict[str, str]) -> None:
    assert bind(parse_rule_path("/apps/{{role_name}}", ITEM).tokens, claims) is None


def _matcher(pattern: str) -> re.Pattern[str]:
    bound = bind(parse_rule_path(pattern, ITEM).tokens, {})
    assert bound is not None
    return compile_bound(bound)


def test_adversarial_pattern_matches_in_linear_time() -> None:
    # Attack: a rule author who may write rules stalls every worker with a backtracking bomb.
    # A plain translation of this pattern takes about 500**10 steps on this path.
    matcher = _matcher("/*a*a*a*a*a*a*a*a*a*a*b")
    path = "/" + "a" * 510
    started = time.perf_counter()
    assert matcher.fullmatch(path) is None
    assert matcher.fullmatch(path + "b") is not None
    matcher = _matcher("/*/+/*/+/*/+/*/+/*x")
    path = "/a" * 255
    assert matcher.fullmatch(path) is None
    assert time.perf_counter() - started < 1.0


# Property: the compiled matcher agrees with a plain reference translation of the grammar and
# with the automaton used by the no-escalation check, on small random patterns and paths.
_pieces = st.sampled_from(["a", "b", ".", "-", "*", "ab"])
_segment = st.one_of(
    st.just("+"),
    st.lists(_pieces, min_size=1, max_size=3).map("".join).filter(lambda s: s not in (".", "..")),
)
_patterns = st.lists(_segment, min_size=1, max_size=4).map(lambda s: "/" + "/".join(s))
_path_segment = st.text(alphabet="ab.-z", min_size=1, max_size=4).filter(
    lambda s: s not in (".", "..")
)
_paths = st.lists(_path_segment, min_size=1, max_size=5).map(lambda s: "/" + "/".join(s))


def _reference(pattern: str) -> re.Pattern[str]:
    parts = []
    for segment in pattern[1:].split("/"):
        if segment == "+":
            parts.append("[^/]+")
        else:
            parts.append("".join(".*" if c == "*" else re.escape(c) for c in segment))
    return re.compile("/" + "/".join(parts), re.DOTALL)


@given(pattern=_patterns, path=_paths)
def test_matcher_agrees_with_reference_and_automaton(pattern: str, path: str) -> None:
    canonical = validate_rule_path(pattern, ITEM)
    bound = bind(parse_rule_path(canonical, ITEM).tokens, {})
    assert bound is not None
    expected = _reference(pattern).fullmatch(path) is not None
    assert (compile_bound(bound).fullmatch(path) is not None) is expected
    assert contained((path,), [bound], UNIVERSE[ITEM]) is expected
