"""Server settings, read once from ``STRONGROOM_*`` environment variables and passed down.

Nothing reads the environment after start-up: ``create_app(settings)`` receives this object and
hands the parts each component needs to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from strongroom.kit.cpu_quota import available_cpus, whole_cpus
from strongroom.kit.forwarded import TrustedProxies

# The default worker count stops here: past four, a server of this kind gains little from more
# processes (each holds its own caches and connections), and a quota-less machine with many
# cores should not get one per core by surprise.
DEFAULT_WORKERS_AT_MOST = 4


def default_workers() -> int:
    """Worker processes when STRONGROOM_WORKERS is not set: the CPUs this process may use (the
    container's CPU quota, the machine's, or its CPU affinity, whichever is least), at most 4."""
    return whole_cpus(available_cpus(), DEFAULT_WORKERS_AT_MOST)


class Settings(BaseSettings):
    """Configuration of one server process (SPEC section 1)."""

    model_config = SettingsConfigDict(env_prefix="STRONGROOM_", extra="ignore")

    database_url: str = "sqlite:///./strongroom-data/strongroom.db"
    # Where `strongroom server` listens (its --host/--port win) and `strongroom healthcheck`
    # asks: a container sets these once for both.
    host: str = "127.0.0.1"
    port: int = Field(default=8300, ge=1, le=65535)
    workers: int = Field(default_factory=default_workers, ge=1, le=64)
    master_key: SecretStr | None = None
    master_key_file: Path | None = None
    kms_key_id: str | None = None
    kms_endpoint_url: str | None = None
    kms_region: str = "us-east-1"
    server_id: str | None = None
    sts_extra_endpoints: Annotated[list[str], NoDecode] = Field(default_factory=list)
    sts_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # host=URL pairs: replays of requests signed for host connect to URL's address instead
    # (SPEC section 3); parsed and checked by auth.aws_iam.parse_connect_to at start-up.
    sts_connect_to: Annotated[list[str], NoDecode] = Field(default_factory=list)
    default_token_ttl_minutes: int = Field(default=30, ge=1, le=720)
    audit_file: Path | None = None
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    # Failed logins tolerated in one window before 429, per (source address, access ID) and
    # per source address (default: five times the first), never per access ID alone: access
    # IDs are not secret, and failing logins in someone's name must not lock them out.
    login_failure_limit: int = Field(default=20, ge=1)
    login_source_failure_limit: int | None = Field(default=None, ge=1)
    login_failure_window_seconds: int = Field(default=60, ge=1)
    # Allowed clock difference for a signed STS request's X-Amz-Date (SPEC section 3, check 4).
    sts_max_clock_skew_seconds: int = Field(default=900, ge=1, le=900)
    # Console cookies get the Secure flag unless explicitly served over plain HTTP for dev.
    behind_https: bool = False
    # Login processes each server worker starts (0: logins are served in the workers), and
    # how they yield the CPU to reads: "idle" (Linux's SCHED_IDLE, in their worker's CPU group:
    # a worker that wakes up takes the CPU from them at once) or "nice" (login_process_nice
    # steps lower, in a CPU group of their own). "idle" falls back to "nice" where refused.
    login_processes: int = Field(default=1, ge=0, le=32)
    login_process_scheduling: Literal["idle", "nice"] = "idle"
    login_process_nice: int = Field(default=10, ge=0, le=19)
    # A worker serving no other request runs a login itself, on its event loop (the fastest
    # path); a busy one hands it to a login process. False: always hand off (if one is ready).
    login_inline_when_idle: bool = True
    # Trust X-Forwarded-For from these proxy addresses only (empty: never); CIDRs or addresses.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("sts_extra_endpoints", "sts_connect_to", "trusted_proxies", mode="before")
    @classmethod
    def _split_comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_proxies(cls, value: list[str]) -> list[str]:
        TrustedProxies.from_cidrs(value)  # ValueError names the bad entry
        return value

    @property
    def source_failure_limit(self) -> int:
        """Failed logins tolerated per source address in one window."""
        return self.login_source_failure_limit or 5 * self.login_failure_limit

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
