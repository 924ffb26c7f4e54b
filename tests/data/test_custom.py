"""A team's own labelled file: every format the loader promises, bad rows, and training on it alone."""
from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest

from voce.data.custom import CustomDataError, load_custom_file
from voce.training.config import TrainConfig


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


# ------------------------------------------------------------------- formats


@pytest.mark.parametrize(
    ("delimiter", "suffix"), [(",", ".csv"), (";", ".csv"), ("\t", ".csv"), ("\t", ".tsv"), ("|", ".csv")]
)
def test_every_delimiter(tmp_path: Path, delimiter: str, suffix: str) -> None:
    rows = [["id", "text", "sentiment", "language"], ["a", "Great coffee, really", "positive", "en"], ["b", "Caro", "neg", "it"]]
    text = "\n".join(delimiter.join(f'"{v}"' if delimiter in v else v for v in r) for r in rows) + "\n"
    data = load_custom_file(_write(tmp_path / f"shop{suffix}", text))
    assert data.delimiter == delimiter and not data.errors
    assert [(e.uid, e.text, e.sentiment) for e in data.examples] == [
        ("custom:shop:a", "Great coffee, really", "positive"),
        ("custom:shop:b", "Caro", "negative"),
    ]
    assert {e.source for e in data.examples} == {"custom:shop"}


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "latin-1", "cp1252"])
def test_encodings(tmp_path: Path, encoding: str) -> None:
    text = "text;sentiment;language\nPerché è così caro? Però il caffè è buono;misto;it\n"
    if encoding == "cp1252":
        text += "Costa 5€, “troppo”;negativo;it\n"
    data = load_custom_file(_write(tmp_path / "x.csv", text, encoding))
    assert data.examples[0].text == "Perché è così caro? Però il caffè è buono"
    assert data.examples[0].sentiment == "mixed"
    if encoding == "cp1252":
        assert data.examples[1].text == "Costa 5€, “troppo”"
    assert data.encoding == {"latin-1": "cp1252"}.get(encoding, encoding)


def test_italian_and_short_labels(tmp_path: Path) -> None:
    labels = ["positivo", "Neutro", "NEGATIVO", "misto", "pos", "neu", "neg", "mixed", "positiva", "negativa"]
    text = "text,sentiment,language\n" + "".join(f"riga {i},{lab},it\n" for i, lab in enumerate(labels))
    data = load_custom_file(_write(tmp_path / "it.csv", text))
    assert [e.sentiment for e in data.examples] == [
        "positive", "neutral", "negative", "mixed", "positive", "neutral", "negative", "mixed", "positive", "negative",
    ]


def test_topic_formats(tmp_path: Path) -> None:
    rows = [
        ("semicolons", "negative", "staff;price_value"),
        ("commas", "positive", "staff, Coffee"),
        ("json list", "", '["staff"]'),
        ("json object", "mixed", '{"staff": "positivo", "price_value": "neg", "coffee": ""}'),
        ("no topic", "neutral", "none"),
        ("empty list", "neutral", "[]"),
        ("not annotated", "neutral", ""),
    ]
    path = tmp_path / "t.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "sentiment", "topics", "language"])
        w.writerows([(t, s, top, "en") for t, s, top in rows])
    got = {e.text: e.topics for e in load_custom_file(path).examples}
    assert got == {
        "semicolons": {"staff": "negative", "price_value": "negative"},  # polarity from the row's sentiment
        "commas": {"staff": "positive", "coffee": "positive"},  # ids are lower-cased
        "json list": {"staff": "neutral"},  # no row sentiment -> neutral
        "json object": {"staff": "positive", "price_value": "negative", "coffee": "mixed"},
        "no topic": {},
        "empty list": {},
        "not annotated": None,  # unknown is not negative
    }


def test_detractor_from_nps_detractor_or_stars(tmp_path: Path) -> None:
    text = (
        "id,text,nps,detractor,stars,language\n"
        "n6,a,6,,,en\nn7,b,7,,,en\nn0,c,0,,,en\nn10,d,10,,,en\n"
        "dt,e,,true,,en\ndf,f,,0,,en\n"
        "s3,g,,,3,en\ns4,h,,,4,en\n"
        "both,i,3,1,2,en\n"
    )
    data = load_custom_file(_write(tmp_path / "d.csv", text))
    got = {e.raw["id"]: e.nps_detractor for e in data.examples}
    assert got == {"n6": 1, "n7": 0, "n0": 1, "n10": 0, "dt": 1, "df": 0, "s3": 1, "s4": 0, "both": 1}
    assert next(e for e in data.examples if e.raw["id"] == "s3").stars == 3


def test_bad_rows_are_reported_with_line_numbers_not_fatal(tmp_path: Path) -> None:
    text = (
        "id,text,sentiment,nps,stars,language\n"  # line 1
        'ok1,"fine, thanks",positive,9,,en\n'  # 2
        "bad1,hello,happy,,,en\n"  # 3: unknown sentiment
        'ok2,"two\nlines",negative,2,,en\n'  # 4-5: one record on two lines
        "bad2,,negative,,,en\n"  # 6: empty text
        "bad3,hi,neutral,11,,en\n"  # 7: nps out of range
        "bad4,hi,neutral,9,1,en\n"  # 8: nps and stars disagree
        "bad5,hi,neutral,,,fr\n"  # 9: unsupported language
        "bad6,hi,neutral,,,en,extra\n"  # 10: too many fields
        "\n"  # 11: blank lines are skipped silently
        "ok3,ciao,neutro,,,it\n"  # 12
    )
    data = load_custom_file(_write(tmp_path / "b.csv", text))
    assert [e.raw["id"] for e in data.examples] == ["ok1", "ok2", "ok3"]
    assert [e.raw["line"] for e in data.examples] == [2, 4, 12]
    reasons = {e.line: e.reason for e in data.errors}
    assert sorted(reasons) == [3, 6, 7, 8, 9, 10]
    assert "unknown sentiment 'happy'" in reasons[3]
    assert reasons[6] == "empty text"
    assert "nps must be 0-10" in reasons[7]
    assert "disagree" in reasons[8]
    assert "language 'fr'" in reasons[9]
    assert "7 fields but the header has 6" in reasons[10]
    assert str(data.errors[0]).startswith("line 3: ")


def test_jsonl_rows_ids_and_language_detection(tmp_path: Path) -> None:
    lines = [
        {"id": 7, "text": "Il personale è stato gentilissimo e disponibile.", "sentiment": "positivo", "topics": ["staff"]},
        {"text": "The room was dirty and the staff were rude.", "sentiment": "neg", "detractor": True},
        "not json",
        {"text": "Ok", "language": "de", "sentiment": "neutral"},
        {"text": 42, "sentiment": "neutral"},
        {"id": 7, "text": "Same id again", "language": "en", "nps": 8, "topics": {"staff": "neutral"}},
    ]
    body = "\n".join(x if isinstance(x, str) else json.dumps(x, ensure_ascii=False) for x in lines) + "\n"
    data = load_custom_file(_write(tmp_path / "feedback.jsonl", body))
    assert data.delimiter is None
    ex = data.examples
    assert [e.uid for e in ex] == ["custom:feedback:7", "custom:feedback:line-2", "custom:feedback:7~1"]
    assert [e.group for e in ex] == ["7", "line-2", "7"]  # a repeated id stays in one split group
    assert [e.language for e in ex] == ["it", "en", "en"]
    assert ex[0].raw["language_detected"] and not ex[2].raw["language_detected"]
    assert ex[0].topics == {"staff": "positive"} and ex[1].nps_detractor == 1 and ex[2].nps_detractor == 0
    assert [e.line for e in data.errors] == [3, 4, 5]
    assert "not valid JSON" in data.errors[0].reason and "must be a string" in data.errors[2].reason


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(CustomDataError, match="no 'text' column.*comment"):
        load_custom_file(_write(tmp_path / "a.csv", "id,comment,sentiment\n1,hello,positive\n"))
    with pytest.raises(CustomDataError, match="no label column"):
        load_custom_file(_write(tmp_path / "b.csv", "id,text\n1,hello\n"))
    with pytest.raises(CustomDataError, match="no usable row.*line 2"):
        load_custom_file(_write(tmp_path / "c.csv", "text,sentiment\n,positive\nhi,great\n"))
    with pytest.raises(CustomDataError, match="no 'text' column"):
        load_custom_file(_write(tmp_path / "d.jsonl", '{"comment": "x", "sentiment": "pos"}\n'))
    with pytest.raises(CustomDataError, match="JSONL"):
        load_custom_file(_write(tmp_path / "e.json", '[{"text": "x", "sentiment": "pos"}]\n'))
    with pytest.raises(CustomDataError, match="unsupported file type"):
        load_custom_file(_write(tmp_path / "f.xlsx", "x"))
    with pytest.raises(CustomDataError, match="does not exist"):
        load_custom_file(tmp_path / "missing.csv")


# --------------------------------------------------------------------- config


def test_config_needs_some_data_and_distinct_file_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nothing to train on"):
        TrainConfig(include_public_data=False)
    with pytest.raises(ValueError, match="different names"):
        TrainConfig(extra_data=[tmp_path / "a" / "x.csv", tmp_path / "b" / "x.jsonl"])
    base = TrainConfig()
    # locations are not hashed; leaving the public data out is
    assert TrainConfig(extra_data=[tmp_path / "x.csv"]).config_hash() == base.config_hash()
    assert TrainConfig(extra_data=[tmp_path / "x.csv"], include_public_data=False).config_hash() != base.config_hash()


# ------------------------------------------------------------------- training


def _tiny_csv(path: Path, *, extra_topic: str | None = None) -> Path:
    """The tiny corpus of tests/tiny.py as a team's semicolon CSV (Italian labels, JSON topics, nps)."""
    from tests.tiny import _ROWS

    it = {"positive": "positivo", "neutral": "neutro", "negative": "negativo", "mixed": "misto"}
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, delimiter=";")
        w.writerow(["id", "text", "language", "sentiment", "topics", "nps"])
        for r in range(4):
            for i, (text, lang, sent, topics, det) in enumerate(_ROWS):
                topics = dict(topics or {})
                if extra_topic and ("caffè" in text or "Ottimo" in text or "Great" in text):
                    topics[extra_topic] = sent
                nps = "" if det is None else (3 if det else 9)
                w.writerow([f"{r}-{i}", f"{text} {'!' * r}".strip(), lang, it[sent], json.dumps(topics), nps])
    return path


def _fake_encoder(tmp_path: Path):  # type: ignore[no-untyped-def]
    from voce.models.encoders.factory import EncoderSpec, load_encoder

    return load_encoder(EncoderSpec(backend="fake", model="fake", cache_dir=tmp_path))


def _custom_config(tmp_path: Path, data: Path, **extra: object) -> TrainConfig:
    return TrainConfig(
        output=tmp_path / "bundle", encoder_backend="fake", encoder_model="fake", include_public_data=False,
        extra_data=[data], min_topic_examples=4, min_polarity_examples=8, calibration_fraction=0.25,
        version="custom-test", touchpoint_data=False, **extra,  # type: ignore[arg-type]
    )


def test_train_on_custom_data_only(tmp_path: Path) -> None:
    from voce.models.bundle import VoceBundle
    from voce.models.spec import AnalyzerSpec, load_analyzer
    from voce.models.types import DocumentInput
    from voce.training.train import train

    data = _tiny_csv(tmp_path / "team_reviews.csv")
    cfg = _custom_config(tmp_path, data)
    said: list[str] = []
    bundle, report = train(cfg, _fake_encoder(tmp_path), progress=said.append)

    manifest = json.loads((cfg.output / "manifest.json").read_text("utf-8"))
    sha = hashlib.sha256(data.read_bytes()).hexdigest()
    assert manifest["data"] == {"custom/team_reviews.csv": sha}  # no public data was read
    (rec,) = manifest["custom_data"]
    assert rec["source"] == "custom:team_reviews" and rec["sha256"] == sha and rec["skipped_rows"] == 0
    assert rec["train"] + rec["dev"] == rec["rows"] == 96 and rec["dev"] > 0
    assert manifest["training_config"]["include_public_data"] is False
    assert manifest["taxonomy"]["custom"] is False and "definition" not in manifest["taxonomy"]
    assert "only on the team's own data" in manifest["licences"]
    assert {"staff", "price_value"} <= set(bundle.topics.labels)

    section = report["metrics"]["custom:team_reviews"]  # per-source dev section
    confusion = report["details"]["custom:team_reviews"]["sentiment_confusion"]
    assert set(confusion) == {"positive", "neutral", "negative", "mixed"}
    # the reported macro-F1 is the one the confusion matrix implies (over the classes the gold labels use)
    f1s = []
    for label in confusion:
        tp = confusion[label].get(label, 0)
        gold = sum(confusion[label].values())
        pred = sum(row.get(label, 0) for row in confusion.values())
        if gold:
            f1s.append(2 * tp / (gold + pred))
    assert section["examples"] == rec["dev"] == sum(sum(r.values()) for r in confusion.values())
    assert section["sentiment_macro_f1"] == pytest.approx(sum(f1s) / len(f1s), abs=1e-4)
    assert manifest["metrics"]["custom:team_reviews"] == section

    loaded = VoceBundle.load(cfg.output)
    assert loaded.manifest_extra["data"] == manifest["data"]
    # the saved bundle, served through the analyzer, predicts what the in-memory one predicts
    from voce.models.analyzer import Analyzer
    from voce.models.language import default_detector

    analyzer = load_analyzer(AnalyzerSpec(backend="fake", encoder="fake", cache_dir=tmp_path / "c", bundle=cfg.output))
    in_memory = Analyzer(analyzer.encoder, bundle, default_detector())
    doc = [DocumentInput(id="1", text="Personale scortese e maleducato.")]
    (served,), errors = analyzer.analyze(doc)
    (fresh,), _ = in_memory.analyze(doc)
    assert not errors and served.model_dump() == fresh.model_dump()


def test_train_with_custom_taxonomy_records_it(tmp_path: Path) -> None:
    from voce.models.taxonomy import parse_taxonomy
    from voce.training.train import train

    tax = _write(
        tmp_path / "tax.yaml",
        'version: "shop-1"\ntopics:\n'
        '  - id: staff\n    names: {it: "Personale", en: "Staff"}\n'
        '  - id: price_value\n    names: {it: "Prezzo", en: "Price"}\n'
        '  - id: coffee\n    names: {it: "Caffè", en: "Coffee"}\n',
    )
    data = _tiny_csv(tmp_path / "shop.csv", extra_topic="coffee")
    cfg = _custom_config(tmp_path, data, taxonomy=tax)
    bundle, _ = train(cfg, _fake_encoder(tmp_path), progress=lambda _m: None)
    assert set(bundle.topics.labels) == {"staff", "price_value", "coffee"}
    record = json.loads((cfg.output / "manifest.json").read_text("utf-8"))["taxonomy"]
    assert record["version"] == "shop-1" and record["custom"] is True
    restored = parse_taxonomy(record["definition"])
    assert restored.topics.ids == ["staff", "price_value", "coffee"]
    assert restored.topics.fingerprint() == record["topics_fingerprint"]


def test_custom_taxonomy_heads_are_used_when_serving(tmp_path: Path) -> None:
    from voce.models.spec import AnalyzerSpec, load_analyzer
    from voce.models.types import DocumentInput
    from voce.training.train import train

    tax = _write(tmp_path / "tax.yaml", 'version: "shop-1"\ntopics:\n  - id: coffee\n    names: {it: "Caffè", en: "Coffee"}\n')
    cfg = _custom_config(tmp_path, _tiny_csv(tmp_path / "shop.csv", extra_topic="coffee"), taxonomy=tax)
    train(cfg, _fake_encoder(tmp_path), progress=lambda _m: None)
    analyzer = load_analyzer(AnalyzerSpec(backend="fake", encoder="fake", cache_dir=tmp_path / "c", bundle=cfg.output))
    assert analyzer.taxonomy.version == "shop-1"
    (res,), _ = analyzer.analyze([DocumentInput(id="1", text="Ottimo rapporto qualità prezzo.", language="it")])
    assert any(t.id == "coffee" and t.source == "learned" for t in res.topics)


def test_training_on_labels_a_head_cannot_use_is_a_clear_error(tmp_path: Path) -> None:
    from voce.training.train import train

    data = _write(tmp_path / "only_sentiment.csv", "text,sentiment,language\n" + "".join(
        f"riga numero {i},{'positivo' if i % 2 else 'negativo'},it\n" for i in range(40)
    ))
    with pytest.raises(ValueError, match="no training rows with a detractor"):
        train(_custom_config(tmp_path, data), _fake_encoder(tmp_path), progress=lambda _m: None)
