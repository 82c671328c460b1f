"""The containment and intersection procedures behind RuleSet.covers, at their edges."""

import pytest

from strongroom.rbac import RuleType, automaton
from strongroom.rbac.automaton import UNIVERSE, contained, intersects
from strongroom.rbac.pattern import Claim, Wildcard

ITEMS = UNIVERSE[RuleType.ITEM]
NAMES = UNIVERSE[RuleType.ROLE]
STAR, SEGMENT = Wildcard.STAR, Wildcard.SEGMENT


@pytest.mark.parametrize(
    ("candidate", "well_formed"),
    [
        (("/a",), True),
        (("/a/b",), True),
        (("/...",), True),
        (("/.a",), True),
        (("/a.",), True),
        (("/",), True),  # the root, as an audit or folder path
        (("/a/.",), False),
        (("/a/..",), False),
        (("/../a",), False),
        (("/a//b",), False),
        (("/a/",), False),
        (("//",), False),
        (("a",), False),
        (("",), False),
    ],
)
def test_only_well_formed_item_paths_count(candidate: tuple[str], well_formed: bool) -> None:
    # A language of malformed paths only is empty: contained in nothing, meeting nothing.
    assert contained(candidate, [], ITEMS) is not well_formed
    assert intersects(candidate, [(STAR,), ("/",)], ITEMS) is well_formed


@pytest.mark.parametrize(
    ("candidate", "well_formed"),
    [(("/a",), True), (("/",), False), (("/a/b",), False), (("/a", STAR), True)],
)
def test_names_are_one_segment(candidate: tuple[str], well_formed: bool) -> None:
    assert contained(candidate, [], NAMES) is not well_formed


def test_a_candidate_template_is_any_single_segment() -> None:
    template = ("/apps/", Claim("role_name"))
    assert contained(template, [("/apps/", SEGMENT)], ITEMS)
    assert not contained(template, [("/apps/web",)], ITEMS)
    assert intersects(template, [("/apps/web",)], ITEMS)
    assert not intersects(template, [("/apps/a/b",)], ITEMS)


def test_search_fails_closed_when_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    candidate = ("/", STAR)
    others = [("/", STAR)]
    assert contained(candidate, others, ITEMS)
    assert intersects(("/a/b/c",), others, ITEMS)
    monkeypatch.setattr(automaton, "MAX_PRODUCT_STATES", 2)
    # Undecided within the cap: the answers that make covers() refuse, even where the true
    # answer would let it through (/x/y/z*q and /x/y/z/q/r share no path).
    assert not contained(candidate, others, ITEMS)
    assert intersects(("/x/y/z", STAR, "q"), [("/x/y/z/q/r",)], ITEMS)
