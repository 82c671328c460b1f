"""What ``GET /metrics`` serves (strongroom.metrics): build info, process metrics, login
outcomes, and route labels that name the route's template, never the raw path. In-process
here; tests/e2e/test_observability.py reads them from a real server's processes."""

from __future__ import annotations

import re
import secrets
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from strongroom import __version__
from strongroom.auth.login_outcome import METHODS, OUTCOMES, outcome_of
from strongroom.errors import (
    AuthenticationDenied,
    InvalidRequestError,
    PayloadTooLargeError,
    RateLimitedError,
    ServiceUnavailableError,
    UpstreamUnavailableError,
)
from strongroom.metrics.processes import ServerProcesses, parse_max_fds, parse_stat, parse_title
from tests.support.harness import Harness

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(harness: Harness) -> Samples:
    text = harness.client.get("/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


# -- pure parts -----------------------------------------------------------------------------


def test_stat_is_read_after_the_command_names_last_parenthesis() -> None:
    fields = ["S", "41", *["0"] * 9, "250", "50", *["0"] * 6, "12345", "4096000", "300"]
    stat = parse_stat("77 (strongroom: worker ) 0) " + " ".join(fields) + " 0 0\n")
    assert (stat.ppid, stat.utime, stat.stime) == (41, 250, 50)
    assert (stat.starttime, stat.vsize, stat.rss_pages) == (12345, 4096000, 300)
    with pytest.raises(ValueError, match="no command name"):
        parse_stat("77 no parenthesis")


@pytest.mark.parametrize(
    ("cmdline", "expected"),
    [
        (b"strongroom: supervisor\0", ("supervisor", "0")),
        (b"strongroom: worker 3", ("worker", "3")),
        (b"strongroom: login process 12", ("login_process", "12")),
        (b"/usr/bin/python3\0-m\0pytest", None),
        (b"strongroom: worker x", None),
        (b"", None),
    ],
)
def test_titles_name_kind_and_index(cmdline: bytes, expected: tuple[str, str] | None) -> None:
    assert parse_title(cmdline) == expected


def test_the_soft_descriptor_limit_is_read() -> None:
    limits = (
        "Limit                     Soft Limit           Hard Limit           Units     \n"
        "Max open files            4096                 524288               files     \n"
    )
    assert parse_max_fds(limits) == 4096
    assert parse_max_fds(limits.replace("4096 ", "unlimited ")) is None
    assert parse_max_fds("") is None


def test_a_supervisor_that_is_gone_reports_nothing_of_its_children(tmp_path: Path) -> None:
    collector = ServerProcesses(supervisor=2**22 + 12345, proc=tmp_path)
    families = {f.name: f.samples for f in collector.collect()}
    assert families["strongroom_process_resident_memory_bytes"] == []


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (None, "success"),
        (AuthenticationDenied("bad key"), "denied"),
        (RateLimitedError(5), "rate_limited"),
        (InvalidRequestError("bad body"), "invalid"),
        (PayloadTooLargeError("too big"), "invalid"),
        (UpstreamUnavailableError("sts down"), "upstream_unavailable"),
        (ServiceUnavailableError("database down"), "unavailable"),
        (RuntimeError("a bug"), "error"),
    ],
)
def test_login_outcomes_are_a_fixed_set(error: Exception | None, outcome: str) -> None:
    assert outcome_of(error) == outcome
    assert outcome in OUTCOMES


# -- through the app ------------------------------------------------------------------------


def test_build_info_and_this_process(harness: Harness) -> None:
    samples = scrape(harness)
    python = re.escape(".".join(str(n) for n in sys.version_info[:3]))
    (info,) = [key for key in samples if key[0] == "strongroom_build_info"]
    labels = dict(info[1])
    assert labels["version"] == __version__
    assert re.fullmatch(python, labels["python"])
    assert samples[info] == 1
    # The app in the caller's process describes that process alone.
    memory = value(samples, "strongroom_process_resident_memory_bytes", kind="app", index="0")
    assert memory > 10 * 1024 * 1024
    assert value(samples, "strongroom_process_cpu_seconds_total", kind="app", index="0") > 0
    assert value(samples, "strongroom_process_open_fds", kind="app", index="0") > 3
    assert value(samples, "strongroom_process_start_time_seconds", kind="app", index="0") > 1e9


def test_route_labels_are_templates_never_raw_paths(harness: Harness) -> None:
    client = harness.client
    marker = secrets.token_hex(8)
    secret_name = f"/dev/{marker}-db"
    client.post(
        "/v1/secrets", json={"name": secret_name, "value": "v"}, headers=harness.admin.headers
    )
    for method, path in [
        ("GET", f"/v1/secrets{secret_name}"),
        ("GET", f"/v1/secret/data/dev/{marker}-db"),
        ("LIST", f"/v1/secret/metadata/dev/{marker}"),
        ("GET", f"/{marker}/no/such/path"),
        ("GET", f"/v1/{marker}"),
        ("GET", f"/ui/{marker}"),
        ("GET", "/openapi.json"),
        ("GET", "/ui/static/console.css"),
    ]:
        client.request(method, path, headers=harness.admin.headers)
    text = client.get("/metrics").text
    assert marker not in text
    routes = {
        sample.labels["route"]
        for family in text_string_to_metric_families(text)
        if family.name == "strongroom_http_requests"
        for sample in family.samples
    }
    assert {
        "/v1/secrets",
        "/v1/secrets/{name:path}",
        "/v1/secret/data/{path:path}",
        "/v1/secret/metadata/{path:path}",
        "/v1/auth/login",
        "/ui/{rest:path}",
        "/openapi.json",  # a route of Starlette's own: matched, so named too
        "/ui/static/{path:path}",
        "unmatched",
    } <= routes
    assert all(route == "unmatched" or route.startswith("/") for route in routes)


def test_logins_are_counted_by_method_and_outcome(harness: Harness) -> None:
    client = harness.client
    before = scrape(harness)
    admin = {"access_id": harness.admin.access_id, "access_type": "access_key"}
    assert client.post("/v1/auth/login", json={**admin, "access_key": harness.admin.access_key})
    assert client.post("/v1/auth/login", json={**admin, "access_key": "wrong"}).status_code == 401
    assert client.post("/v1/auth/login", content=b"{not json").status_code == 400
    aws = {"access_id": harness.admin.access_id, "access_type": "aws_iam"}
    assert client.post("/v1/auth/login", json=aws).status_code == 401  # not an AWS IAM method
    # Vault's login is the same service: counted too.
    vault = client.post(
        "/v1/auth/aws/login",
        json={
            "role": harness.admin.access_id,
            "iam_http_request_method": "POST",
            "iam_request_url": "aHR0cHM6Ly9zdHMuYW1hem9uYXdzLmNvbS8=",
            "iam_request_body": "",
            "iam_request_headers": "e30=",
        },
    )
    assert vault.status_code in (400, 403)
    after = scrape(harness)

    def delta(method: str, outcome: str) -> float:
        name = "strongroom_logins_total"
        return value(after, name, method=method, outcome=outcome) - value(
            before, name, method=method, outcome=outcome
        )

    assert delta("api_key", "success") == 1
    assert delta("api_key", "denied") == 1
    assert delta("unknown", "invalid") == 1
    assert delta("aws_iam", "denied") >= 1
    assert sum(delta("aws_iam", outcome) for outcome in OUTCOMES) == 2  # Vault's one too
    for method in METHODS:  # every series exists from the start
        for outcome in OUTCOMES:
            name = "strongroom_logins_total"
            assert (name, (("method", method), ("outcome", outcome))) in after
