"""Every server message of the upload and batch-status flow has words in both languages of the page
(service/static/i18n.js, parsed here): upload refusals (``err.<code>``), row warnings (``warn.<code>``), row errors
(``rowerr.<code>``) and the mapping summary (``summary.*``), with no placeholder the server does not send."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from voce.service import uploads

ROOT = Path(__file__).resolve().parents[2]
I18N = ROOT / "service" / "static" / "i18n.js"
#: the codes a stored row's error can carry (uploads.prepare_row, the JSONL reader, rows.unstorable)
ROW_ERROR_CODES = ("EmptyText", "UnreadableRow", "InvalidInput", "UnstorableRow")
#: what the page's summary says beyond the codes the server sends (static/upload.js summaryItems)
SUMMARY_KEYS = (
    "summary.title", "summary.sample", "summary.text", "summary.text.empty", "summary.score", "summary.score.invalid",
    "summary.date", "summary.date.invalid", "summary.dayfirst", "summary.monthfirst", "summary.id",
    "summary.id.duplicates", "summary.channel", "summary.kind", "summary.kind.invalid", "summary.language",
    "summary.language.invalid", "summary.segment", "summary.ignored", "notes.title", "notes.summary",
    "notes.errors_title", "notes.rows", "notes.more", "delimiter.semicolon", "delimiter.comma", "delimiter.tab",
    "delimiter.pipe",
)


def _labels() -> dict[str, dict[str, str]]:
    text = I18N.read_text("utf-8")
    body = text[text.index("const LABELS = {"): text.index("const SUPPORTED_LANGS")]
    en, it = body.split("\n  it: {", 1)
    pair = re.compile(r'^\s+"([^"]+)":\s*"((?:[^"\\]|\\.)*)",?\s*$', re.M)
    return {"en": dict(pair.findall(en)), "it": dict(pair.findall(it))}


LABELS = _labels()


def _placeholders(text: str) -> set[str]:
    return set(re.findall(r"\{(\w+)\}", text))


@pytest.mark.parametrize("lang", ["en", "it"])
def test_every_code_has_words_in_both_languages(lang: str) -> None:
    labels = LABELS[lang]
    assert len(labels) > 300  # the parse found the whole table
    missing = [f"err.{c}" for c in uploads.UPLOAD_ERROR_CODES if f"err.{c}" not in labels]
    missing += [f"warn.{c}" for c in uploads.ROW_WARNINGS if f"warn.{c}" not in labels]
    missing += [f"rowerr.{c}" for c in ROW_ERROR_CODES if f"rowerr.{c}" not in labels]
    missing += [k for k in SUMMARY_KEYS if k not in labels]
    assert not missing


@pytest.mark.parametrize("lang", ["en", "it"])
def test_translations_use_only_the_parameters_the_server_sends(lang: str) -> None:
    labels = LABELS[lang]
    for code, template in uploads.ROW_WARNINGS.items():
        assert _placeholders(labels[f"warn.{code}"]) <= _placeholders(template), code
    for code, template in uploads.ROW_ERRORS.items():
        assert _placeholders(labels[f"rowerr.{code}"]) <= _placeholders(template), code


def test_every_upload_error_code_raised_is_listed() -> None:
    """The codes written in the sources are the listed ones (a new refusal cannot go untranslated)."""
    sources = [ROOT / "service" / "uploads.py", ROOT / "service" / "batches" / "service.py"]
    written = {m for p in sources for m in re.findall(r'"(upload\.[a-z_]+)"', p.read_text("utf-8"))}
    assert written == set(uploads.UPLOAD_ERROR_CODES)


def test_no_english_worker_jargon_in_the_italian_page() -> None:
    assert not [k for k, v in LABELS["it"].items() if "worker" in v.lower() and k.startswith(("upload.", "progress."))]
