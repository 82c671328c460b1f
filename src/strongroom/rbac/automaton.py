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

Both questions are a breadth-first search of the product candidate x universe x (subset
construction of the union of the other patterns). The search is capped; on reaching the cap
it answers as if a witness existed, which makes the no-escalation check refuse.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from enum import Enum
from itertools import chain
from typing import NamedTuple

from strongroom.rbac.capability import RuleType
from strongroom.rbac.pattern import SEGMENT_CHARS, BoundToken, Token, Wildcard

# The symbol standing for every segment character that no pattern in the question names.
OTHER = ""
MAX_PRODUCT_STATES = 50_000


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

    def __init__(self, patterns: Sequence[Sequence[Token | BoundToken]]) -> None:
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
        self.start = frozenset(chain.from_iterable(self._closure[s] for s in starts))
        self._steps: dict[tuple[frozenset[int], str], frozenset[int]] = {}

    def accepts(self, states: frozenset[int]) -> bool:
        return any(self._atoms[state] is None for state in states)

    def step(self, states: frozenset[int], symbol: str) -> frozenset[int]:
        key = (states, symbol)
        cached = self._steps.get(key)
        if cached is not None:
            return cached
        reached: set[int] = set()
        for state in states:
            atom = self._atoms[state]
            if atom is None:
                continue
            if atom is _Atom.ANY_RUN or (atom is _Atom.NON_SLASH_RUN and symbol != "/"):
                reached |= self._closure[state]
            elif atom == symbol or (atom is _Atom.NON_SLASH and symbol != "/"):
                reached |= self._closure[state + 1]
        result = frozenset(reached)
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
    candidate: Sequence[Token | BoundToken],
    others: Sequence[Sequence[Token | BoundToken]],
    universe: Universe,
    *,
    others_accept: bool,
) -> bool:
    """Whether some well-formed path matched by ``candidate`` is matched (``others_accept``)
    or not matched (``not others_accept``) by the union of ``others``."""
    mine, theirs = _Nfa([candidate]), _Nfa(others)
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
        for symbol in alphabet:
            next_here = mine.step(here, symbol)
            next_where = _universe_step(universe, where, symbol)
            if not next_here or next_where is None:
                continue
            next_there = theirs.step(there, symbol)
            if others_accept and not next_there:
                continue
            following = (next_here, next_where, next_there)
            if following not in seen:
                if len(seen) >= MAX_PRODUCT_STATES:
                    return True  # too big to decide: assume the witness, so callers refuse
                seen.add(following)
                queue.append(following)
    return False


def contained(
    candidate: Sequence[Token | BoundToken],
    others: Sequence[Sequence[Token | BoundToken]],
    universe: Universe,
) -> bool:
    """Whether every well-formed path that ``candidate`` matches is matched by one of
    ``others``. Templates in ``candidate`` stand for any single segment; ``others`` should be
    bound. False when undecidable within :data:`MAX_PRODUCT_STATES`."""
    return not _search(candidate, others, universe, others_accept=False)


def intersects(
    candidate: Sequence[Token | BoundToken],
    others: Sequence[Sequence[Token | BoundToken]],
    universe: Universe,
) -> bool:
    """Whether some well-formed path is matched by ``candidate`` and by one of ``others``.
    True when undecidable within :data:`MAX_PRODUCT_STATES`."""
    return _search(candidate, others, universe, others_accept=True)
