"""Whether a change to an auth method's settings can let more in (SPEC section 4). Pure.

Whoever logs in through an auth method receives the rules of every role associated with it.
Widening who may log in (or for how long a token lasts) hands those rules to new holders, just
as a new association does, so it needs what an association needs: the caller must hold
everything those roles grant. A change that can only narrow needs no more than ``update`` on
the method, so that an operator can always tighten a method it manages.

A setting *narrows* when it cannot admit a login, or keep a token, that the old one would not;
anything else counts as widening. Deliberately syntactic, so that it is easy to see it is
sound (``web-*`` to ``web-a*`` is a narrowing in fact, but is treated as widening):

* a bound list (``bound_aws_account_id``, ``bound_role_name``, …): the same values, or a
  non-empty subset of them; a list that was not set may become set (one more condition to
  meet), except ``bound_arn``, which also lets in a root or federated principal whose exact
  ARN it lists (SPEC section 3);
* ``bound_ips``: the same, or non-empty with every network inside one of the old ones (or
  newly set);
* ``sts_url``: unchanged (another STS endpoint vouches for other identities);
* ``jwt_ttl``: unchanged, or set and no longer than an old value that was set (unset means
  the server's default, which may be anything);
* ``access_expires``: unchanged, or set and no later than the old one (or newly set).

``description`` is not a login setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from ipaddress import ip_network
from typing import Any

from strongroom.auth_methods.schemas import AWS_IAM_BOUND_LISTS

# Setting one of these where it was not set adds a condition, and so narrows.
_SET_NARROWS = frozenset(AWS_IAM_BOUND_LISTS) - {"bound_arn"}


def widened_settings(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The login settings (names, in a fixed order) in which configuration ``new`` may admit a
    login or keep a token that ``old`` would not; empty when the change only narrows.

    Both are stored configurations (JSON values: lists of strings, ISO 8601 text, numbers);
    a missing key is an unset setting.
    """
    widened = [
        name
        for name in AWS_IAM_BOUND_LISTS
        if not _list_narrows(name, old.get(name), new.get(name))
    ]
    if not _networks_narrow(old.get("bound_ips"), new.get("bound_ips")):
        widened.append("bound_ips")
    if old.get("sts_url") != new.get("sts_url"):
        widened.append("sts_url")
    # An unset jwt_ttl is the server's default, which may be longer than any value set here.
    if not _at_most(old.get("jwt_ttl"), new.get("jwt_ttl"), unset_is_unbounded=False):
        widened.append("jwt_ttl")
    old_expiry, new_expiry = _time(old.get("access_expires")), _time(new.get("access_expires"))
    if not _at_most(old_expiry, new_expiry, unset_is_unbounded=True):
        widened.append("access_expires")
    return widened


def _list_narrows(name: str, old: Any, new: Any) -> bool:
    before, after = set(old or ()), set(new or ())
    if after == before:
        return True
    if not after:
        return False  # an emptied list is no condition at all
    return after <= before if before else name in _SET_NARROWS


def _networks_narrow(old: Any, new: Any) -> bool:
    before = [ip_network(text) for text in old or ()]
    after = [ip_network(text) for text in new or ()]
    if set(after) == set(before):
        return True
    if not after:
        return False
    return not before or all(
        any(
            network.version == outer.version and network.subnet_of(outer)  # type: ignore[arg-type]
            for outer in before
        )
        for network in after
    )


def _at_most(old: Any, new: Any, *, unset_is_unbounded: bool) -> bool:
    """Unchanged, or a set limit no larger than the old one; an unset old one is exceeded by
    nothing when ``unset_is_unbounded``, and unknown (so never narrowed) otherwise."""
    if new == old:
        return True
    if new is None:
        return False
    if old is None:
        return unset_is_unbounded
    return bool(new <= old)


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None
