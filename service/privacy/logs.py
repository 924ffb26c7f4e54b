"""Logs without personal data: the one logging configuration ``voce serve`` and ``voce worker`` install.

* :class:`RedactingFilter` runs every record of the service's own loggers (and uvicorn's error log) through the
  detector before a handler writes it: the message, its arguments and any traceback.  A database error's
  traceback lists the statement's parameters (customer text): that block is dropped whole.
* :class:`AccessPathFilter` logs each request's path without its query string (``/v1/batches/…/rows?q=
  mario.rossi@example.com`` is logged as ``/v1/batches/…/rows``).
* :func:`log_config` is the ``logging.config`` dict for both, handed to uvicorn (``log_config=``) so its own
  handlers get them too.  Logs are always redacted, whatever ``VOCE_PII_MODE`` stores.
"""
from __future__ import annotations

import logging
import re
from typing import Any

from voce.service.privacy.redact import Redactor

#: SQLAlchemy's "[parameters: (...)]" block in an error message or traceback
_SQL_PARAMETERS = re.compile(r"\[parameters: .*?\](?=\n|$|\s*\(Background)", re.DOTALL)


class RedactingFilter(logging.Filter):
    """Personal data out of a record (message, arguments, traceback) before any handler formats it."""

    def __init__(self, name: str = "", redactor: Redactor | None = None) -> None:
        super().__init__(name)
        self.redactor = redactor or Redactor("redact")

    def clean(self, text: str) -> str:
        return self.redactor.string(_SQL_PARAMETERS.sub("[parameters: hidden]", text))

    def filter(self, record: logging.LogRecord) -> bool:
        from voce.service.privacy.detect import inside_detector

        if inside_detector():  # logged by Presidio or spaCy while they search a text: may quote it, never asked
            record.msg, record.args, record.exc_info, record.exc_text = (
                f"({record.name}: a record logged while personal data was searched; withheld)", None, None, None)
            return True
        try:
            message = record.getMessage()
            cleaned = self.clean(message)
            if cleaned != message or record.args:
                record.msg, record.args = cleaned, None
                record.__dict__.pop("color_message", None)  # uvicorn's coloured copy of the raw message
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = self.clean(record.exc_text)
            if record.stack_info:
                record.stack_info = self.clean(record.stack_info)
        except Exception:  # a record the filter cannot read is written with its text withheld, never raw
            record.msg, record.args, record.exc_info, record.exc_text = "(log record withheld: unreadable)", None, None, None
        return True


class AccessPathFilter(logging.Filter):
    """uvicorn's access records with the path only: a query string (search terms, filters) is never logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], args[2].split("?", 1)[0], args[3], args[4])
        return True


def log_config(level: str = "info") -> dict[str, Any]:
    """uvicorn's logging (its formats, its loggers) plus the root logger, every handler filtered as above."""
    from uvicorn.config import LOGGING_CONFIG

    level = level.upper()
    cfg: dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "pii": {"()": RedactingFilter},
            "no_query": {"()": AccessPathFilter},
        },
        "formatters": {
            **LOGGING_CONFIG["formatters"],
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        },
        "handlers": {
            "default": {"formatter": "default", "class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                        "filters": ["pii"]},
            "access": {"formatter": "access", "class": "logging.StreamHandler", "stream": "ext://sys.stdout",
                       "filters": ["no_query"]},
            "plain": {"formatter": "plain", "class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                      "filters": ["pii"]},
        },
        "loggers": {
            # Presidio's debug and info records quote the words around a match: warnings only
            "presidio-analyzer": {"level": "WARNING"},
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": ["access"], "level": level, "propagate": False},
        },
        "root": {"handlers": ["plain"], "level": level},
    }
    return cfg


def install(level: str = "info") -> dict[str, Any]:
    """Configure this process's logging with :func:`log_config` and build the detector in the background (so the
    first record that needs it waits less); returns the config, for ``uvicorn.run(log_config=...)``."""
    import logging.config
    import threading

    from voce.service.privacy.loader import detect_module

    default_detector = detect_module().default_detector  # first, while this is the only thread (see loader)
    cfg = log_config(level)
    logging.config.dictConfig(cfg)
    threading.Thread(target=default_detector, name="voce-pii-detector", daemon=True).start()
    return cfg
