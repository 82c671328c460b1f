"""Server settings, read once from ``STRONGROOM_*`` environment variables and passed down.

Nothing reads the environment after start-up: ``create_app(settings)`` receives this object and
hands the parts each component needs to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Configuration of one server process (SPEC section 1)."""

    model_config = SettingsConfigDict(env_prefix="STRONGROOM_", extra="ignore")

    database_url: str = "sqlite:///./strongroom-data/strongroom.db"
    master_key: SecretStr | None = None
    master_key_file: Path | None = None
    kms_key_id: str | None = None
    kms_endpoint_url: str | None = None
    kms_region: str = "us-east-1"
    server_id: str | None = None
    sts_extra_endpoints: Annotated[list[str], NoDecode] = Field(default_factory=list)
    sts_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    default_token_ttl_minutes: int = Field(default=30, ge=1, le=720)
    audit_file: Path | None = None
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    # Failed logins tolerated per source IP and per access ID in one window before 429.
    login_failure_limit: int = Field(default=20, ge=1)
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
    # No-escalation checks of role and auth method changes run on a thread of their own, so
    # that a costly one (bounded by its budget) never holds up the event loop. False: inline.
    rbac_check_thread: bool = True
    # Trust X-Forwarded-For from these proxy addresses only (empty: never).
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("sts_extra_endpoints", "trusted_proxies", mode="before")
    @classmethod
    def _split_comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
