"""The ASGI factory uvicorn workers call: settings come from the environment."""

from __future__ import annotations

import gc

from fastapi import FastAPI

from strongroom.api.app import create_app
from strongroom.config import Settings
from strongroom.kit.logging import configure_logging
from strongroom.serving.descriptors import presize_descriptor_table


def make_app() -> FastAPI:
    # First, while this worker has one thread: later growth would stall its event loop.
    presize_descriptor_table()
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(
        settings,
        login_processes=True,
        login_inline_when_idle=settings.login_inline_when_idle,
        audit_journal=True,
    )
    # Start-up leaves ~140k long-lived objects; a full collection walking them stalled the
    # event loop for ~40 ms. Freezing them takes them out of every later collection.
    gc.collect()
    gc.freeze()
    return app
