"""`voce eval --data FILE`: a bundle scored on a team's own labelled file (fake encoder, tiny bundle)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from voce.service.cli import app

runner = CliRunner()

LABELS = {"positive", "neutral", "negative", "mixed"}


def _team_file(path: Path) -> Path:
    path.write_bytes(
        (
            "id;text;sentiment;topics;nps;language\n"
            "1;Il personale è stato gentilissimo e disponibile.;positivo;staff;10;it\n"
            "2;Personale scortese e maleducato alla reception.;negativo;staff;2;it\n"
            "3;Prezzo troppo alto per quello che offre.;negativo;price_value;4;it\n"
            "4;Great value for money.;pos;price_value;9;en\n"
            "5;The shop opens at nine.;neu;none;8;en\n"
            "6;Buono il cibo, pessimo il servizio.;misto;staff;5;it\n"
            "7;Ottimo caffè;positivo;coffee;9;it\n"
            "8;;positivo;;;it\n"
            "9;Bello;felice;;;it\n"
        ).encode("latin-1")
    )
    return path


def test_eval_on_own_file_writes_per_class_report_and_confusion(env: Path) -> None:
    out = env / "reports" / "mine.json"
    r = runner.invoke(app, ["eval", "--data", str(_team_file(env / "team.csv")), "--out", str(out)])
    assert r.exit_code == 0, r.output
    report = json.loads(out.read_text("utf-8"))
    m, d = report["metrics"], report["details"]

    assert m["examples"] == m["sentiment_examples"] == 7  # every usable row, no split
    assert set(d["sentiment_per_class"]) == LABELS
    assert {"precision", "recall", "f1", "support"} <= set(d["sentiment_per_class"]["positive"])
    assert d["sentiment_per_class"]["positive"]["support"] == 3
    confusion = d["sentiment_confusion"]
    assert set(confusion) == LABELS and all(set(row) == LABELS for row in confusion.values())
    assert sum(sum(row.values()) for row in confusion.values()) == 7
    assert sum(confusion["negative"].values()) == 2
    assert 0.0 <= m["sentiment_macro_f1"] <= 1.0 and 0.0 <= m["sentiment_ece"] <= 1.0

    # topics: only those the file labels; "coffee" is not in the default taxonomy, so it cannot be found
    assert set(d["topic_per_class"]) == {"staff", "price_value", "coffee"}
    assert d["topics_not_in_taxonomy"] == ["coffee"]
    assert d["topic_per_class"]["coffee"]["recall"] == 0.0
    assert 0.0 <= m["topic_micro_f1"] <= 1.0

    # nps 0-6 = detractor: rows 2, 3, 6 of 7
    assert m["detractor_examples"] == 7 and m["detractor_rate"] == round(3 / 7, 4)
    assert 0.0 <= m["detractor_auc"] <= 1.0

    assert report["data"]["source"] == "custom:team" and report["data"]["encoding"] == "cp1252"
    assert [row["line"] for row in report["data"]["skipped_rows"]] == [9, 10]
    assert report["bundle"]["version"] == "tiny-test"

    for text in ("Sentiment", "confusion", "macro-F1", "Topics", "ROC-AUC", "line 10"):
        assert text in r.stdout


def test_eval_default_out_names_the_file(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(env)
    jsonl = env / "chats.jsonl"
    jsonl.write_text(
        '{"text": "Rude staff at the front desk.", "sentiment": "negative", "detractor": 1, "language": "en"}\n'
        '{"text": "The staff were friendly and helpful.", "sentiment": "positive", "detractor": 0, "language": "en"}\n',
        "utf-8",
    )
    r = runner.invoke(app, ["eval", "--data", str(jsonl)])
    assert r.exit_code == 0, r.output
    report = json.loads((env / "reports" / "eval_chats.json").read_text("utf-8"))
    assert report["metrics"]["detractor_examples"] == 2 and "topic_per_class" not in report["details"]


def test_eval_on_file_without_text_column_is_a_clear_error(env: Path) -> None:
    bad = env / "bad.csv"
    bad.write_text("id,comment,sentiment\n1,hello,positive\n", "utf-8")
    r = runner.invoke(app, ["eval", "--data", str(bad), "--out", str(env / "o.json")])
    assert r.exit_code == 2 and "no 'text' column" in r.output
