"""The containment and intersection procedures behind RuleSet.covers, at their edges."""

import pytest

from strongroom.errors import RuleTooComplexError
from strongroom.rbac import RuleType
from strongroom.rbac.automaton import UNIVERSE, contained, intersects
from strongroom.rbac.budget import Budget
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


def test_a_question_beyond_its_budget_is_refused_not_answered() -> None:
    # The shortcut decides these without a search, whatever is left of the budget.
    assert contained(("/", STAR), [("/", STAR)], ITEMS, Budget(10))
    assert not intersects(("/a/b/c",), [("/x", STAR)], ITEMS, Budget(10))
    # A search that needs more steps than the budget holds raises instead of answering,
    # even where the true answer would let a grant through (/a/+ and /a/*/b share no path).
    with pytest.raises(RuleTooComplexError):
        intersects(("/a/", SEGMENT), [("/a/", STAR, "/b")], ITEMS, Budget(50))
    assert not intersects(("/a/", SEGMENT), [("/a/", STAR, "/b")], ITEMS, Budget(100_000))
    with pytest.raises(RuleTooComplexError):
        contained(("/a/", STAR), [("/a/", SEGMENT), ("/a/", SEGMENT, "/", STAR)], ITEMS, Budget(50))
    assert contained(
        ("/a/", STAR), [("/a/", SEGMENT), ("/a/", SEGMENT, "/", STAR)], ITEMS, Budget(100_000)
    )


def test_the_budget_counts_across_questions() -> None:
    budget = Budget(100_000)
    others = [("/a/", SEGMENT), ("/a/", SEGMENT, "/", STAR)]
    contained(("/a/", STAR), others, ITEMS, budget)
    once = budget.spent
    assert once > 0
    contained(("/a/", STAR), others, ITEMS, budget)
    assert budget.spent == 2 * once  # deterministic: the same question costs the same


@pytest.mark.parametrize(
    ("candidate", "other", "meet"),
    [
        (("/dev/", STAR), ("/prod/", STAR), False),  # heads disagree
        (("/dev/", STAR), ("/de", STAR), True),
        (("/", STAR, ".json"), ("/", STAR, ".yaml"), False),  # tails disagree
        (("/", STAR, ".json"), ("/", STAR, "json"), True),
        (("/apps/", Claim("role_name")), ("/apps/web",), True),
    ],
)
def test_shortcuts_only_drop_patterns_that_share_no_path(
    candidate: tuple[str | Wildcard | Claim, ...],
    other: tuple[str | Wildcard, ...],
    meet: bool,
) -> None:
    # Dropped patterns must truly be disjoint: the search with them agrees.
    assert intersects(candidate, [other], ITEMS) is meet
