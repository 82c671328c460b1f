"""Exact containment and intersection of pattern languages, for the no-escalation check.

Each pattern becomes a small NFA over an abstract alphabet: ``/``, ``.``, every literal
character that some pattern in the question names, and :data:`OTHER`, which stands for all the
remaining segment characters at once. No pattern can tell those characters apart, so one
representative decides for all of them and the answers are exact.

Languages are taken inside a *universe* of well-formed paths (SPEC section 2: no empty, ``.``
or ``..`` segments; one segment only for auth-method, role and audit rules), because those are
the only paths a decision is ever asked about. Segment and path length limits are left out;
ignoring them only makes a candidate's language larger, which can refuse a grant but never
allow one that should be refused.

Both questions are first put to cheap sound shortcuts (a pattern ``<literal>*`` that the
candidate starts with contains it; a pattern whose literal head or tail cannot agree with the
candidate's shares no path with it), then to a breadth-first search of the product
candidate x universe x (subset construction of the union of the other patterns). Every step of
the search is paid from a :class:`~strongroom.rbac.budget.Budget`, which raises
:class:`~strongroom.errors.RuleTooComplexError` when it runs out: a question too costly to
decide is refused, never answered late.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from enum import Enum
from itertools import chain
from typing import NamedTuple

from strongroom.rbac.budget import Budget
from strongroom.rbac.capability import RuleType
from strongroom.rbac.pattern import SEGMENT_CHARS, BoundToken, Token, Wildcard

# The symbol standing for every segment character that no pattern in the question names.
OTHER = ""
_NOWHERE: frozenset[int] = frozenset()

Tokens = Sequence[Token | BoundToken]


class Universe(NamedTuple):
    """The well-formed paths of a rule type: whether ``/`` itself is one, whether ``/a/b`` is."""

    root: bool
    nested: bool


UNIVERSE = {
    RuleType.ITEM: Universe(root=True, nested=True),
    RuleType.AUDIT: Universe(root=True, nested=False),
    RuleType.AUTH_METHOD: Universe(root=False, nested=False),
    RuleType.ROLE: Universe(root=False, nested=False),
}


class _Atom(Enum):
    ANY_RUN = "*"  # any symbols, '/' included, possibly none
    NON_SLASH = "?"  # exactly one symbol other than '/'
    NON_SLASH_RUN = "+*"  # any symbols other than '/', possibly none


class _Nfa:
    """The union of some patterns. A state is a position in one pattern's atom list."""

    def __init__(self, patterns: Sequence[Tokens], budget: Budget) -> None:
        self._budget = budget
        # atoms[i] is what state i consumes next; None marks a pattern's accepting end.
        self._atoms: list[str | _Atom | None] = []
        starts: list[int] = []
        for tokens in patterns:
            starts.append(len(self._atoms))
            for token in tokens:
                if isinstance(token, str):
                    self._atoms.extend(token)
                elif token is Wildcard.STAR:
                    self._atoms.append(_Atom.ANY_RUN)
                else:
                    # '+', or a template in a candidate, which other callers fill with any
                    # single segment: one or more characters other than '/'.
                    self._atoms += [_Atom.NON_SLASH, _Atom.NON_SLASH_RUN]
            self._atoms.append(None)
        self.literals = {atom for atom in self._atoms if isinstance(atom, str)}
        self._closure: list[frozenset[int]] = [frozenset()] * len(self._atoms)
        for state in reversed(range(len(self._atoms))):
            atom = self._atoms[state]
            skip = atom is _Atom.ANY_RUN or atom is _Atom.NON_SLASH_RUN
            # A run may be empty: being before it is also being after it.
            self._closure[state] = frozenset({state}) | (
                self._closure[state + 1] if skip else frozenset()
            )
        budget.spend(sum(len(closure) for closure in self._closure))
        self.start = frozenset(chain.from_iterable(self._closure[s] for s in starts))
        self._finals = frozenset(s for s, atom in enumerate(self._atoms) if atom is None)
        self._moves: dict[str, list[frozenset[int]]] = {}
        self._steps: dict[tuple[frozenset[int], str], frozenset[int]] = {}

    def accepts(self, states: frozenset[int]) -> bool:
        return not states.isdisjoint(self._finals)

    def _moves_on(self, symbol: str) -> list[frozenset[int]]:
        """For each state, the states reading ``symbol`` from it leads to (closed)."""
        moves = self._moves.get(symbol)
        if moves is None:
            moves = []
            for state, atom in enumerate(self._atoms):
                if atom is _Atom.ANY_RUN or (atom is _Atom.NON_SLASH_RUN and symbol != "/"):
                    moves.append(self._closure[state])
                elif atom is not None and (
                    atom == symbol or (atom is _Atom.NON_SLASH and symbol != "/")
                ):
                    moves.append(self._closure[state + 1])
                else:
                    moves.append(_NOWHERE)
            self._budget.spend(len(moves))
            self._moves[symbol] = moves
        return moves

    def step(self, states: frozenset[int], symbol: str) -> frozenset[int]:
        key = (states, symbol)
        cached = self._steps.get(key)
        if cached is not None:
            return cached
        moves = self._moves_on(symbol)
        reached = [moves[state] for state in states]
        self._budget.spend(len(states) + sum(map(len, reached)))
        result = _NOWHERE.union(*reached)
        self._steps[key] = result
        return result


# The universe automaton: where in a well-formed path we are. None is the dead state.
_START, _ROOT, _OPEN, _DOT, _DOT_DOT, _SEGMENT = range(6)


def _universe_step(universe: Universe, state: int, symbol: str) -> int | None:
    if symbol == "/":
        if state == _START:
            return _ROOT
        if state == _SEGMENT and universe.nested:
            return _OPEN
        return None  # an empty, '.' or '..' segment, or a second segment where none may be
    if state == _START:
        return None
    if symbol == "." and state in (_ROOT, _OPEN, _DOT):
        return _DOT if state != _DOT else _DOT_DOT
    return _SEGMENT


def _universe_accepts(universe: Universe, state: int) -> bool:
    return state == _SEGMENT or (state == _ROOT and universe.root)


def _search(
    candidate: Tokens,
    others: Sequence[Tokens],
    universe: Universe,
    budget: Budget,
    *,
    others_accept: bool,
) -> bool:
    """Whether some well-formed path matched by ``candidate`` is matched (``others_accept``)
    or not matched (``not others_accept``) by the union of ``others``."""
    mine, theirs = _Nfa([candidate], budget), _Nfa(others, budget)
    named = {"/", "."} | mine.literals | theirs.literals
    alphabet = sorted(named) + ([OTHER] if SEGMENT_CHARS - named else [])
    start = (mine.start, _START, theirs.start)
    seen = {start}
    queue = deque([start])
    while queue:
        here, where, there = queue.popleft()
        if (
            mine.accepts(here)
            and _universe_accepts(universe, where)
            and theirs.accepts(there) == others_accept
        ):
            return True
        # Trying a symbol is a step; one that leads somewhere costs about three more (the
        # other automata's moves, the visited-set probe). Charged so, a step of the budget
        # costs about the same time whichever part of the search dominates.
        tried = len(alphabet)
        for symbol in alphabet:
            next_here = mine.step(here, symbol)
            next_where = _universe_step(universe, where, symbol)
            if not next_here or next_where is None:
                continue
            tried += 3
            next_there = theirs.step(there, symbol)
            if others_accept and not next_there:
                continue
            following = (next_here, next_where, next_there)
            if following not in seen:
                seen.add(following)
                queue.append(following)
        budget.spend(tried)
    return False


def _head(tokens: Tokens) -> str:
    """The literal every path of the pattern starts with."""
    return tokens[0] if tokens and isinstance(tokens[0], str) else ""


def _tail(tokens: Tokens) -> str:
    """The literal every path of the pattern ends with."""
    return tokens[-1] if tokens and isinstance(tokens[-1], str) else ""


def _may_meet(candidate: Tokens, other: Tokens) -> bool:
    """False only when the two patterns surely share no path: their literal heads (or tails)
    disagree, so no string can start (or end) with both."""
    mine, theirs = _head(candidate), _head(other)
    if not (mine.startswith(theirs) or theirs.startswith(mine)):
        return False
    mine, theirs = _tail(candidate), _tail(other)
    return mine.endswith(theirs) or theirs.endswith(mine)


def _surely_contains(other: Tokens, candidate: Tokens, universe: Universe) -> bool:
    """True only when ``other`` matches every path ``candidate`` matches, seen from the text:
    ``other`` is ``<literal>*`` and the candidate starts with that literal, or ``other`` is
    ``/+`` among one-segment names, or the two are the same pattern without templates."""
    if len(other) == 2 and isinstance(other[0], str) and other[1] is Wildcard.STAR:
        return _head(candidate).startswith(other[0])
    if tuple(other) == ("/", Wildcard.SEGMENT) and not universe.root and not universe.nested:
        return True
    return tuple(other) == tuple(candidate) and all(
        isinstance(token, str | Wildcard) for token in candidate
    )


def contained(
    candidate: Tokens,
    others: Sequence[Tokens],
    universe: Universe,
    budget: Budget | None = None,
) -> bool:
    """Whether every well-formed path that ``candidate`` matches is matched by one of
    ``others``. Templates in ``candidate`` stand for any single segment; ``others`` should be
    bound. Raises RuleTooComplexError when ``budget`` runs out first."""
    budget = budget or Budget()
    budget.spend(len(others))
    if any(_surely_contains(other, candidate, universe) for other in others):
        return True
    # Patterns that share no path with the candidate cannot help cover it.
    others = [other for other in others if _may_meet(candidate, other)]
    return not _search(candidate, others, universe, budget, others_accept=False)


def intersects(
    candidate: Tokens,
    others: Sequence[Tokens],
    universe: Universe,
    budget: Budget | None = None,
) -> bool:
    """Whether some well-formed path is matched by ``candidate`` and by one of ``others``.
    Raises RuleTooComplexError when ``budget`` runs out first."""
    budget = budget or Budget()
    budget.spend(len(others))
    others = [other for other in others if _may_meet(candidate, other)]
    if not others:
        return False
    return _search(candidate, others, universe, budget, others_accept=True)
