"""The ASGI factory uvicorn workers call: settings come from the environment."""

from __future__ import annotations

import gc
import sys

from fastapi import FastAPI

from strongroom.api.app import create_app
from strongroom.config import Settings
from strongroom.kit.logging import configure_logging


def make_app() -> FastAPI:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    # Start-up leaves ~140k long-lived objects; a full collection walking them stalled the
    # event loop for ~40 ms. Freezing them takes them out of every later collection.
    gc.collect()
    gc.freeze()
    # While logins run on their own thread, the reads' loop waits for the GIL at each I/O
    # wake-up; a 1 ms switch interval (not 5) bounds that wait (bench/login.py).
    sys.setswitchinterval(0.001)
    return app
