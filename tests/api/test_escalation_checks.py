"""What a no-escalation check judged is what gets written (SQLite and PostgreSQL): a change made
by someone else while the check ran is never overwritten unjudged, and the bounds on rule sets
hold. In-process app; the concurrent change is made from inside the check's wait."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from sqlalchemy import select

from strongroom.db.tables import roles
from strongroom.kit.clock import utc_now
from strongroom.rbac import Capability, Rule, RuleType
from strongroom.rbac.budget import Budget
from strongroom.roles import service as role_service
from strongroom.roles.checks import EscalationChecks
from strongroom.roles.service import upsert_rule
from tests.support.harness import Harness

T = TypeVar("T")


class Meddling(EscalationChecks):
    """Runs each check, then makes ``meddle``'s change before the service writes its own."""

    def __init__(self, meddle: Callable[[], None]) -> None:
        super().__init__(in_thread=False)
        self._meddle = meddle

    async def run(self, check: Callable[[Budget], T]) -> T:
        result = await super().run(check)
        self._meddle()
        return result


def _add_deny(harness: Harness, role: str, path: str) -> Callable[[], None]:
    def meddle() -> None:
        database = harness.services.database
        with database.write() as connection:
            role_id = connection.execute(
                select(roles.c.id).where(roles.c.name == role)
            ).scalar_one()
            deny = Rule(RuleType.ITEM, path, frozenset({Capability.DENY}))
            upsert_rule(connection, role_id, deny, utc_now())

    return meddle


def _meddle_with(harness: Harness, meddle: Callable[[], None]) -> None:
    checks = Meddling(meddle)
    harness.services.roles._checks = checks
    harness.services.auth_methods._checks = checks


def _rules(harness: Harness, role: str) -> list[dict[str, Any]]:
    answer = harness.client.get(f"/v1/roles/{role}", headers=harness.admin.headers)
    rules: list[dict[str, Any]] = answer.json()["rules"]
    return rules


def test_deleting_a_role_whose_denies_changed_during_the_check_is_a_conflict(
    harness: Harness,
) -> None:
    client, admin = harness.client, harness.admin.headers
    client.post("/v1/roles", json={"name": "victim"}, headers=admin).raise_for_status()
    client.put(
        "/v1/roles/victim/rules", json={"path": "/a", "capabilities": ["deny"]}, headers=admin
    ).raise_for_status()
    # Attack: a deny added while the deletion's check (which saw only /a) was running would
    # go with the role unjudged.
    _meddle_with(harness, _add_deny(harness, "victim", "/b"))
    answer = client.delete("/v1/roles/victim", headers=admin)
    assert answer.status_code == 409, answer.text
    assert [r["path"] for r in _rules(harness, "victim")] == ["/a", "/b"]


def test_replacing_a_rule_that_changed_during_the_check_is_a_conflict(harness: Harness) -> None:
    client, admin = harness.client, harness.admin.headers
    client.post("/v1/roles", json={"name": "target"}, headers=admin).raise_for_status()
    _meddle_with(harness, _add_deny(harness, "target", "/x"))
    # The check judged setting /x where nothing was; a deny is there by the time of writing.
    answer = client.put(
        "/v1/roles/target/rules", json={"path": "/x", "capabilities": ["read"]}, headers=admin
    )
    assert answer.status_code == 409, answer.text
    assert _rules(harness, "target")[0]["capabilities"] == ["deny"]


def test_removing_an_association_whose_role_changed_during_the_check_is_a_conflict(
    harness: Harness,
) -> None:
    client, admin = harness.client, harness.admin.headers
    client.post("/v1/roles", json={"name": "held"}, headers=admin).raise_for_status()
    client.put(
        "/v1/roles/held/rules", json={"path": "/a", "capabilities": ["deny"]}, headers=admin
    ).raise_for_status()
    client.post("/v1/auth-methods", json={"type": "api_key", "name": "held-key"}, headers=admin)
    assoc = client.post(
        "/v1/roles/held/associations", json={"auth_method": "held-key"}, headers=admin
    ).json()["assoc_id"]
    _meddle_with(harness, _add_deny(harness, "held", "/b"))
    answer = client.delete(f"/v1/roles/held/associations/{assoc}", headers=admin)
    assert answer.status_code == 409, answer.text
    role = client.get("/v1/roles/held", headers=admin).json()
    assert [a["assoc_id"] for a in role["associations"]] == [assoc]


def test_changing_an_auth_method_changed_during_the_check_is_a_conflict(
    harness: Harness,
) -> None:
    client, admin = harness.client, harness.admin.headers
    client.post(
        "/v1/auth-methods",
        json={"type": "api_key", "name": "moving", "bound_ips": ["10.0.0.0/8"]},
        headers=admin,
    ).raise_for_status()
    client.post("/v1/roles", json={"name": "moving-role"}, headers=admin).raise_for_status()
    client.put(
        "/v1/roles/moving-role/rules",
        json={"path": "/m/*", "capabilities": ["read"]},
        headers=admin,
    ).raise_for_status()
    client.post(
        "/v1/roles/moving-role/associations", json={"auth_method": "moving"}, headers=admin
    ).raise_for_status()

    def narrow_elsewhere() -> None:
        from sqlalchemy import update

        from strongroom.db.tables import auth_methods

        with harness.services.database.write() as connection:
            connection.execute(
                update(auth_methods)
                .where(auth_methods.c.name == "moving")
                .values(config={"bound_ips": ["10.1.0.0/16"]})
            )

    _meddle_with(harness, narrow_elsewhere)
    # Judged against 10.0.0.0/8; written over 10.1.0.0/16 it would let more in unjudged.
    answer = client.patch(
        "/v1/auth-methods/moving",
        json={"bound_ips": ["10.0.0.0/8", "192.168.0.0/16"]},
        headers=admin,
    )
    assert answer.status_code == 409, answer.text
    method = client.get("/v1/auth-methods/moving", headers=admin).json()
    assert method["bound_ips"] == ["10.1.0.0/16"]


def test_a_role_holds_a_bounded_number_of_rules(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(role_service, "MAX_RULES_PER_ROLE", 2)
    client, admin = harness.client, harness.admin.headers
    client.post("/v1/roles", json={"name": "full"}, headers=admin).raise_for_status()
    for path in ("/a", "/b"):
        client.put(
            "/v1/roles/full/rules", json={"path": path, "capabilities": ["read"]}, headers=admin
        ).raise_for_status()
    third = client.put(
        "/v1/roles/full/rules", json={"path": "/c", "capabilities": ["read"]}, headers=admin
    )
    assert third.status_code == 400
    assert third.json() == {
        "error": "RuleTooComplex",
        "message": "a role holds at most 2 rules",
    }
    # Replacing one of its rules adds none.
    replaced = client.put(
        "/v1/roles/full/rules", json={"path": "/a", "capabilities": ["list"]}, headers=admin
    )
    assert replaced.status_code == 200, replaced.text
