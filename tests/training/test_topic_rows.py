"""Which rows teach a topic head: only datasets that annotate the topic, plus the taxonomy's examples.

The failure this guards against: a topic labelled in one language only (airline complaints, English) learned
from every topic-labelled row saw every Italian hotel sentence as a negative, so "Italian" itself became
evidence against the topic. The vectors here are built by hand so the language and topic directions are exact.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from voce.data.datasets import Example, annotated_topics
from voce.models.taxonomy import default_taxonomy
from voce.training.config import TrainConfig
from voce.training.heads import learns_topic
from voce.training.train import train_heads

DIM = 8
# directions: 0 = Italian, 1 = English, 2 = staff, 3 = delays, 4.. = per-row noise
LANG = {"it": 0, "en": 1}
TOPIC = {"staff": 2, "delays_cancellations": 3}


class VectorEncoder:
    """Texts -> hand-made unit vectors (``lang|topic|n[|strength]``): language + topic direction + a little noise.

    A probe with a weaker topic direction stands for a sentence in the language the topic was never labelled in:
    the multilingual encoder carries the topic across, but not all of it.
    """

    name = "test/vectors"
    dim = DIM

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        out = np.zeros((len(texts), DIM), np.float32)
        for i, t in enumerate(texts):
            if "|" in t:
                lang, topic, n, *strength = t.split("|")
                out[i, LANG[lang]] = 1.0
                if topic in TOPIC:
                    out[i, TOPIC[topic]] = float(strength[0]) if strength else 1.2
                out[i, 4 + int(n) % 4] = 0.3
            else:  # taxonomy prose etc.: a generic direction
                out[i, 4 + len(t) % 4] = 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def _rows() -> list[Example]:
    """Italian hotel rows annotate staff only; English airline rows annotate delays only."""
    rows = []
    for n in range(60):
        it_topic = "staff" if n % 2 else "none"
        en_topic = "delays_cancellations" if n % 2 else "none"
        for src, lang, topic in (("hotels_it", "it", it_topic), ("airline_en", "en", en_topic)):
            rows.append(Example(source=src, uid=f"{src}-{n}", text=f"{lang}|{topic}|{n}", language=lang,  # type: ignore[arg-type]
                                group=f"{src}-{n}", sentiment="negative" if n % 3 else "positive",
                                topics={topic: "negative"} if topic != "none" else {}, nps_detractor=n % 2))  # fmt: skip
    return rows


def _config(tmp_path: Path, **kw: object) -> TrainConfig:
    return TrainConfig(output=tmp_path / "b", encoder_backend="fake", encoder_model="fake", min_topic_examples=4,
                       min_polarity_examples=1000, calibration_fraction=0.25, lexical_heads=[], version="t",
                       touchpoint_data=False,
                       **kw)  # type: ignore[arg-type]  # fmt: skip


def test_rows_of_datasets_that_do_not_annotate_a_topic_are_not_its_negatives(tmp_path: Path) -> None:
    rows = _rows()
    annotated = annotated_topics(rows)
    assert annotated == {"hotels_it": frozenset({"staff"}), "airline_en": frozenset({"delays_cancellations"})}
    keep = learns_topic(rows, "delays_cancellations", annotated, _config(tmp_path))
    assert {rows[i].source for i in np.flatnonzero(keep)} == {"airline_en"}
    assert learns_topic(rows, "delays_cancellations", annotated, _config(tmp_path, topic_negatives="all")).all()
    # a source whose every row has the topic gives no negatives: fall back to every row rather than fail
    only_pos = [r for r in rows if r.source == "hotels_it" or r.topics]
    assert learns_topic(only_pos, "delays_cancellations", annotated_topics(only_pos), _config(tmp_path)).all()


@pytest.mark.parametrize("weight", [0.0, 5.0])
def test_a_topic_labelled_in_english_only_is_found_in_italian(tmp_path: Path, weight: float) -> None:
    enc = VectorEncoder()
    probe = enc.encode(["it|delays_cancellations|1|0.6", "it|none|2"])
    old = train_heads(_config(tmp_path, topic_negatives="all", taxonomy_example_weight=0.0), enc, _rows(),
                      progress=lambda _m: None)  # fmt: skip
    new = train_heads(_config(tmp_path, taxonomy_example_weight=weight), enc, _rows(), progress=lambda _m: None)
    j_old, j_new = old.topics.labels.index("delays_cancellations"), new.topics.labels.index("delays_cancellations")
    p_old, p_new = old.topics.predict_proba(probe)[:, j_old], new.topics.predict_proba(probe)[:, j_new]
    assert p_old[0] < 0.5  # every Italian row was a negative: the language alone says "no delays"
    assert p_new[0] > 0.5 and p_new[0] > p_new[1] + 0.3


def test_taxonomy_examples_become_weighted_rows(tmp_path: Path) -> None:
    logs: list[str] = []
    train_heads(_config(tmp_path), VectorEncoder(), _rows(), progress=logs.append)
    n = sum(len(e.examples) for e in default_taxonomy().topics.entries if e.id in {"staff", "delays_cancellations"})
    assert n > 0 and any(f"learn from {n} taxonomy example sentences (weight 5)" in m for m in logs)
    logs.clear()
    train_heads(_config(tmp_path, taxonomy_example_weight=0.0), VectorEncoder(), _rows(), progress=logs.append)
    assert not any("taxonomy example" in m for m in logs)
    with pytest.raises(ValueError):
        _config(tmp_path, taxonomy_example_weight=-1.0)
