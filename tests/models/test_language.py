from __future__ import annotations

import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from voce.models.language import (
    PREFERRED,
    DecisionRule,
    LangidDetector,
    LanguageDetector,
    LanguageGuess,
    LinguaDetector,
    clean_for_detection,
    default_detector,
    detect_languages,
)


@pytest.fixture(
    scope="module",
    params=["langid", pytest.param("lingua", marks=pytest.mark.slow)],  # lingua preloads ~650 MB
)
def detector(request: pytest.FixtureRequest) -> LanguageDetector:
    d = LangidDetector() if request.param == "langid" else LinguaDetector()
    d.load()
    return d


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("Il personale è stato gentilissimo, ma la camera era sporca.", "it"),
        ("Consegna in ritardo di una settimana e nessuno risponde al telefono.", "it"),
        ("Ottimo rapporto qualità prezzo, lo consiglio a tutti!", "it"),
        ("The staff were friendly but the room was dirty.", "en"),
        ("My flight was delayed three hours and nobody told us anything.", "en"),
        ("Great value for money, would definitely recommend it!", "en"),
    ],
)
def test_typical_comments(detector: LanguageDetector, text: str, code: str) -> None:
    guess = detector.detect(text)
    assert guess.code == code
    assert guess.reliable
    assert 0.0 <= guess.confidence <= 1.0


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("Le service était très lent et le personnel n'était pas aimable.", "fr"),
        ("Die Lieferung kam viel zu spät und niemand hat auf meine E-Mails geantwortet.", "de"),
    ],
)
def test_other_languages_are_named(detector: LanguageDetector, text: str, code: str) -> None:
    guess = detector.detect(text)
    assert guess.code == code
    assert guess.reliable


@pytest.mark.parametrize("text", ["10", "👍", "", "   ", "10/10 👍👍", "@mario https://t.co/x #", "!!!", "3.5"])
def test_texts_without_letters_get_the_default(detector: LanguageDetector, text: str) -> None:
    assert detector.detect(text) == LanguageGuess("en", 0.0, False)
    assert detector.detect(text, default="it") == LanguageGuess("it", 0.0, False)


@pytest.mark.parametrize("text", ["ok", "Ok!", "nulla", "top", "fine", "super", "boh", "grazie", "thanks", "va bene"])
def test_short_answers_are_not_a_random_language(detector: LanguageDetector, text: str) -> None:
    guess = detector.detect(text)
    assert guess.code in PREFERRED
    assert not guess.reliable


def test_mentions_urls_and_hashtags_are_stripped() -> None:
    cleaned = clean_for_detection("@Trattoria_Bella http://t.co/xYz www.example.it info@example.it #ServizioTop 5⭐️ 😍")
    assert cleaned == "ServizioTop"
    assert clean_for_detection("  L'hotel è   ok!! ") == "L'hotel è ok"


def test_mentions_do_not_mislead(detector: LanguageDetector) -> None:
    text = "@LufthansaDE @AirFranceFR @IberiaEsp http://t.co/abc il volo è stato cancellato e nessuno ci ha avvisato"
    assert detector.detect(text).code == "it"
    text = "@RistoranteDaMario @TrattoriaBella https://t.co/xyz great food and really friendly staff"
    assert detector.detect(text).code == "en"


def test_detect_languages_keeps_order_and_default() -> None:
    d = LangidDetector()
    guesses = detect_languages(["La camera era pulita e silenziosa.", "👍", "The room was clean and quiet."], d,
                               default="it")
    assert [g.code for g in guesses] == ["it", "it", "en"]
    assert [g.reliable for g in guesses] == [True, False, True]


def test_decision_rule() -> None:
    rule = DecisionRule()
    # thin evidence for a third language loses to a close Italian/English score
    assert rule.decide([("hu", 0.13), ("fi", 0.12), ("it", 0.05), ("en", 0.04)], "va bene", "en") == LanguageGuess(
        "it", 0.05, False
    )
    # ... and a lone word never gets a non-confident third language, however far behind it/en are
    assert rule.decide([("hu", 0.5), ("en", 0.02), ("it", 0.01)], "ok", "it").code == "en"
    assert rule.decide([("de", 0.5), ("en", 0.02), ("it", 0.01)], "sehr gut", "it").code == "de"
    # a featureless text (uniform scores): the caller's default breaks the tie
    uniform = [(c, 0.25) for c in ("ar", "en", "fr", "it")]
    assert rule.decide(uniform, "boh", "it").code == "it"
    assert rule.decide(uniform, "boh", "en").code == "en"
    # a confident third language stands
    fr = "le service était lent"
    assert rule.decide([("fr", 0.9), ("en", 0.03), ("it", 0.02)], fr, "en") == LanguageGuess("fr", 0.9, True)
    # confident but too few letters to trust
    assert not rule.decide([("it", 0.95), ("en", 0.01)], "si ok", "en").reliable


@pytest.mark.parametrize("make", [LangidDetector, lambda: LinguaDetector(low_accuracy=True), default_detector])
def test_every_detector_keeps_the_contract(make) -> None:  # type: ignore[no-untyped-def]
    """What the analyzer relies on: clear Italian and English are told apart, reliably, with a probability."""
    detector: LanguageDetector = make()
    it = detector.detect("Il pacco è arrivato in ritardo e il corriere è stato scortese con me.")
    en = detector.detect("The parcel arrived late and the courier was rude to me.")
    assert (it.code, en.code) == ("it", "en")
    assert it.reliable and en.reliable
    assert 0.5 < it.confidence <= 1.0 and 0.5 < en.confidence <= 1.0


def test_backend_is_built_once_under_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    d = LangidDetector()
    calls = 0
    build = d._build
    gate = threading.Barrier(4)

    def counting_build() -> object:
        nonlocal calls
        calls += 1
        return build()

    monkeypatch.setattr(d, "_build", counting_build)

    def work(text: str) -> LanguageGuess:
        gate.wait()
        return d.detect(text)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, ["Servizio ottimo, grazie mille a tutti."] * 4))
    assert calls == 1
    assert {r.code for r in results} == {"it"}


def test_import_is_light() -> None:
    code = "import sys, voce.models.language; assert not {'lingua', 'py3langid'} & set(sys.modules), sys.modules.keys()"
    subprocess.run([sys.executable, "-c", code], check=True)
