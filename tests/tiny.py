"""A tiny labelled corpus and a bundle trained on it with the fake encoder.

Fast API and pipeline tests need a bundle whose heads match the fake encoder's
vector space; training one from these sentences takes well under a second.
"""
from __future__ import annotations

from pathlib import Path

from voce.data.datasets import Example
from voce.training.config import TrainConfig

_ROWS: list[tuple[str, str, str, dict[str, str] | None, int | None]] = [
    # text, language, sentiment, topics, detractor
    ("Il personale è stato gentilissimo e disponibile.", "it", "positive", {"staff": "positive"}, 0),
    ("Personale scortese e maleducato alla reception.", "it", "negative", {"staff": "negative"}, 1),
    ("The staff were friendly and helpful.", "en", "positive", {"staff": "positive"}, 0),
    ("Rude staff at the front desk.", "en", "negative", {"staff": "negative"}, 1),
    ("Prezzo troppo alto per quello che offre.", "it", "negative", {"price_value": "negative"}, 1),
    ("Ottimo rapporto qualità prezzo.", "it", "positive", {"price_value": "positive"}, 0),
    ("Way overpriced, not worth the money.", "en", "negative", {"price_value": "negative"}, 1),
    ("Great value for money.", "en", "positive", {"price_value": "positive"}, 0),
    ("La camera era sporca e puzzava.", "it", "negative", {"cleanliness": "negative"}, 1),
    ("Camera pulitissima, bagno impeccabile.", "it", "positive", {"cleanliness": "positive"}, 0),
    ("The room was dirty and smelly.", "en", "negative", {"cleanliness": "negative"}, 1),
    ("Spotless room and clean bathroom.", "en", "positive", {"cleanliness": "positive"}, 0),
    ("Il volo è stato cancellato senza preavviso.", "it", "negative", {"delays_cancellations": "negative"}, 1),
    ("My flight was delayed three hours.", "en", "negative", {"delays_cancellations": "negative"}, 1),
    ("Flight cancelled again, unbelievable.", "en", "negative", {"delays_cancellations": "negative"}, 1),
    ("Il treno era in ritardo di due ore.", "it", "negative", {"delays_cancellations": "negative"}, 1),
    ("Oggi è martedì.", "it", "neutral", {}, None),
    ("The shop opens at nine.", "en", "neutral", {}, None),
    ("Il negozio apre alle nove.", "it", "neutral", {}, None),
    ("It is Tuesday today.", "en", "neutral", {}, None),
    ("Bello ma caro.", "it", "mixed", {"price_value": "mixed"}, 1),
    ("Nice food but slow service.", "en", "mixed", {"staff": "negative"}, 1),
    ("Buono il cibo, pessimo il servizio.", "it", "mixed", {"staff": "negative"}, 1),
    ("Great room but the price is high.", "en", "mixed", {"price_value": "negative"}, 1),
]


def tiny_examples(repeat: int = 4) -> list[Example]:
    """The corpus, repeated with distinct groups so calibration slices are not empty."""
    out = []
    for r in range(repeat):
        for i, (text, lang, sent, topics, det) in enumerate(_ROWS):
            variant = text if r == 0 else f"{text} {'!' * r}"
            out.append(
                Example(
                    source="tiny", uid=f"t{r}-{i}", text=variant, language=lang,  # type: ignore[arg-type]
                    group=f"{r}-{i}", sentiment=sent, topics=topics, nps_detractor=det,  # type: ignore[arg-type]
                )
            )
    return out


def tiny_config(output: Path) -> TrainConfig:
    return TrainConfig(
        output=output, encoder_backend="fake", encoder_model="fake", min_topic_examples=4,
        min_polarity_examples=8, calibration_fraction=0.25, version="tiny-test",
        touchpoint_data=False,  # the corpus-trained heads have their own tests (tests/training/test_touchpoints.py)
    )
