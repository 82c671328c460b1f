"""The ASGI factory uvicorn workers call: settings come from the environment."""

from __future__ import annotations

from fastapi import FastAPI

from strongroom.api.app import create_app
from strongroom.config import Settings
from strongroom.kit.logging import configure_logging


def make_app() -> FastAPI:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
