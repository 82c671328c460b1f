"""``strongroom_logins_total{method, outcome}``: every login, by auth method type and outcome.

Both labels take a few fixed values, whatever a client sends (each value is a time series):

- ``method``: ``api_key`` (access type ``access_key`` or ``api_key``), ``aws_iam``, or
  ``unknown`` for a body that does not say (malformed);
- ``outcome``: ``success``, or the failure's kind by its status: ``denied`` (401),
  ``rate_limited`` (429), ``invalid`` (400, 413), ``upstream_unavailable`` (502: STS),
  ``unavailable`` (503: the database or the audit trail), ``error`` (anything else).

Counted by the login service, so the native login, Vault's ``auth/aws/login`` and the
console's sign-in all count, in whichever process serves them.
"""

from __future__ import annotations

from prometheus_client import Counter

from strongroom.errors import StrongroomError

METHODS = ("api_key", "aws_iam", "unknown")
OUTCOMES = (
    "success",
    "denied",
    "rate_limited",
    "invalid",
    "upstream_unavailable",
    "unavailable",
    "error",
)
_BY_STATUS = {
    401: "denied",
    429: "rate_limited",
    400: "invalid",
    413: "invalid",
    502: "upstream_unavailable",
    503: "unavailable",
}

LOGINS = Counter(
    "strongroom_logins_total", "Logins by auth method type and outcome", ["method", "outcome"]
)
for _method in METHODS:  # every series from the start, at 0: a rate() needs a first sample
    for _outcome in OUTCOMES:
        LOGINS.labels(_method, _outcome)


def method_of(access_type: str | None) -> str:
    if access_type in ("access_key", "api_key"):
        return "api_key"
    return "aws_iam" if access_type == "aws_iam" else "unknown"


def outcome_of(error: BaseException | None) -> str:
    if error is None:
        return "success"
    if isinstance(error, StrongroomError):
        return _BY_STATUS.get(error.status, "error")
    return "error"


def count_login(access_type: str | None, error: BaseException | None) -> None:
    """Count one login that ended with ``error`` (None: it succeeded)."""
    LOGINS.labels(method_of(access_type), outcome_of(error)).inc()
