"""Logs: records redacted (message, arguments, traceback, SQL parameters), access lines without query strings,
through the configuration ``voce serve`` hands to uvicorn."""
from __future__ import annotations

import io
import logging
import logging.config
from collections.abc import Iterator

import pytest

from voce.service.privacy.logs import AccessPathFilter, RedactingFilter, log_config


def _record(msg: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc else None
    return logging.LogRecord("voce.jobs", logging.ERROR, __file__, 1, msg, args or None, exc_info)


def test_message_arguments_and_traceback_are_redacted() -> None:
    try:
        raise ValueError("could not store 'scrivete a mario.rossi@example.com'")
    except ValueError as exc:
        rec = _record("row %s: %s", 3, "chiamate il 333 123 4567", exc=exc)
    f = RedactingFilter()
    assert f.filter(rec)
    out = logging.Formatter("%(message)s").format(rec)
    assert "row 3: chiamate il <PHONE>" in out and "<EMAIL>" in out
    assert "mario.rossi" not in out and "333 123" not in out


def test_sql_parameters_are_dropped_whole() -> None:
    text = ('(psycopg.errors.DataError) invalid\n[SQL: INSERT INTO batch_rows (text) VALUES (%(text)s)]\n'
            "[parameters: {'text': 'Giulia dice che il pacco è rotto'}]\n(Background on this error at: https://sqlalche.me)")
    rec = _record("%s", text)
    RedactingFilter().filter(rec)
    assert "Giulia" not in rec.getMessage() and "[parameters: hidden]" in rec.getMessage()


def test_access_lines_lose_their_query_string() -> None:
    rec = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                            ("127.0.0.1:5000", "GET", "/v1/batches/ab12/rows?q=mario.rossi@example.com", "1.1", 200), None)
    AccessPathFilter().filter(rec)
    assert rec.args == ("127.0.0.1:5000", "GET", "/v1/batches/ab12/rows", "1.1", 200)


@pytest.fixture()
def configured(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """The serve configuration with its two streams captured."""
    err, out = io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    monkeypatch.setattr("sys.stdout", out)
    before = logging.root.handlers[:], logging.root.level
    logging.config.dictConfig(log_config("info"))
    yield err, out
    logging.root.handlers[:], _ = before
    logging.root.setLevel(before[1])
    for name in ("uvicorn", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()


def test_the_served_configuration(configured: tuple[io.StringIO, io.StringIO]) -> None:
    err, out = configured
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET",
                                             "/v1/batches/ab12/rows?q=mario.rossi@example.com", "1.1", 200)
    logging.getLogger("voce.jobs").warning("batch %s: row from %s", "ab12", "anna@example.org")
    logging.getLogger("uvicorn.error").info("client said %s", "IBAN IT60 X054 2811 1010 0000 0123 456")
    assert '"GET /v1/batches/ab12/rows HTTP/1.1" 200' in out.getvalue() and "mario" not in out.getvalue()
    assert "batch ab12: row from <EMAIL>" in err.getvalue() and "client said IBAN <IBAN>" in err.getvalue()
    assert "anna@" not in err.getvalue() and "X054" not in err.getvalue()


def test_records_logged_while_the_detector_is_built_do_not_wait_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Presidio logs while its recognizers load; the filter on that record must not wait for the detector the same
    thread is building (it did: `voce serve` hung at start)."""
    import threading

    from voce.service.privacy import detect

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    presidio = logging.getLogger("presidio-analyzer")
    monkeypatch.setattr(presidio, "level", logging.INFO)
    presidio.addHandler(handler)
    detect._detector.cache_clear()
    try:
        builder = threading.Thread(target=detect.default_detector, daemon=True)
        builder.start()
        builder.join(timeout=120)
        assert not builder.is_alive(), "building the detector waited for itself"
    finally:
        presidio.removeHandler(handler)
    assert "withheld" in stream.getvalue()  # Presidio's own records, their words not searched and not written
    assert detect.default_detector().find("a@example.com")
