"""Structured logging (structlog): JSON lines in production, readable lines in a terminal.

One format for everything a server process writes to stderr: the server's own events
(structlog) and the standard library's records (uvicorn's, httpx's, alembic's, Python's
warnings, an exception nobody caught) go through the same renderer, so in JSON mode every line
is one JSON object with ``event``, ``level`` and ``timestamp`` (records of the standard library
also name their ``logger``; a traceback is the ``exception`` field, never lines of its own).

uvicorn must be given ``log_config=None``: its default configuration installs handlers of its
own, with a plain-text format, on its loggers.
"""

from __future__ import annotations

import logging
import sys
import threading
from types import TracebackType

import structlog

# Libraries that narrate routine work at INFO: one line per STS round trip (httpx), per
# migration check (alembic). Their warnings still show; LOG_LEVEL=DEBUG shows everything.
_QUIET_BELOW_WARNING = ("alembic", "httpx", "httpcore")
_UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access")


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Configure structlog and the standard library once per process."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            timestamper,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.stdlib.add_log_level,
                timestamper,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in _UVICORN:  # whatever an earlier uvicorn configuration left on them
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    for name in _QUIET_BELOW_WARNING:
        quiet = numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING)
        logging.getLogger(name).setLevel(quiet)
    logging.captureWarnings(True)  # warnings.warn(...) as records of the "py.warnings" logger
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


_uncaught = logging.getLogger("strongroom.uncaught")


def _log_uncaught(
    kind: type[BaseException], value: BaseException, traceback: TracebackType | None
) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, traceback)
        return
    _uncaught.error("uncaught_exception", exc_info=(kind, value, traceback))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None or args.exc_type is SystemExit:
        return
    thread = args.thread.name if args.thread is not None else "?"
    _uncaught.error(
        "uncaught_exception_in_thread %s",
        thread,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )
