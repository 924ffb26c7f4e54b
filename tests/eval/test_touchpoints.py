"""Zero-shot touchpoints of the shipped bundle on the hand-written IT/EN check set.

A guard for the next fine-tune: the 2026-11-23 candidate that sharpened the
learned topics dropped recall here from 0.69/0.66 to 0.53/0.53
(reports/finetune/README.md).  The floor sits a little under the shipped
bundle's numbers (reports/touchpoints.json), so only a real regression trips it.
"""
from __future__ import annotations

import pytest

from voce.eval.touchpoints import LANGUAGES, load_checks, run_touchpoints


def test_check_set_covers_every_default_touchpoint_in_both_languages() -> None:
    from voce.models.taxonomy import default_taxonomy

    checks = load_checks()
    assert {c["touchpoint"] for c in checks} == set(default_taxonomy().touchpoints.ids)
    assert all(c[lang].strip() for c in checks for lang in LANGUAGES)
    examples = {x.strip().lower() for e in default_taxonomy().touchpoints.entries for x in e.prototype_texts()}
    assert not {c[lang].lower() for c in checks for lang in LANGUAGES} & examples  # unseen by the zero-shot scorer


@pytest.mark.real_model
@pytest.mark.slow
def test_shipped_bundle_finds_touchpoints_in_both_languages(real_analyzer) -> None:  # type: ignore[no-untyped-def]
    report = run_touchpoints(real_analyzer, load_checks())
    for lang in LANGUAGES:
        assert report[lang]["recall"] >= 0.6, (lang, report[lang], report["misses"])
        assert report[lang]["other_touchpoints_per_text"] <= 0.3, (lang, report[lang])
    assert report["top1_agreement_it_en"] >= 0.5
