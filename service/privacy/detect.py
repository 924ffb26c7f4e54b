"""Finding personal data in free text: Microsoft Presidio's pattern recognizers, offline, for Italian and English.

What Presidio brings (each with its own validation): e-mail addresses (checked against the public-suffix snapshot
bundled with tldextract, never fetched), phone numbers (Google's libphonenumber: Italian numbers with or without
``+39``, and any international number written with ``+``), IBANs (mod-97 checksum), credit cards (Luhn), the
codice fiscale (its check character), the partita IVA (its check digit) and Italian identity cards, passports and
driving licences (weak patterns that count only next to a context word such as "carta d'identità").  Every one is
registered for both ``it`` and ``en`` with Italian and English context words.

What Presidio cannot do here: person names.  Its name detection is a spaCy NER model (or GLiNER, or a hosted
service), and there is no maintained Italian model on PyPI to install; Voce never downloads one at run time.  So
names are found only after an explicit cue (:mod:`.names`), and that limit is measured and documented.

No spaCy model is loaded at all: :class:`BlankNlpEngine` gives Presidio spaCy's *blank* Italian/English tokenizers
(shipped inside the spacy package) so context words still raise a weak match, which :class:`NoOpNlpEngine` could
not do.
"""
from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import spacy
import tldextract
from presidio_analyzer import AnalyzerEngine, EntityRecognizer, RecognizerRegistry
from presidio_analyzer.nlp_engine import NlpArtifacts, NlpEngine
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    ItDriverLicenseRecognizer,
    ItFiscalCodeRecognizer,
    ItIdentityCardRecognizer,
    ItPassportRecognizer,
    ItVatCodeRecognizer,
    PhoneRecognizer,
)

from voce.service.privacy.names import NameCueRecognizer

LANGUAGES = ("it", "en")
#: Presidio's own bar for a match that context words raised (``min_score_with_context_similarity``); a weak
#: pattern (an identity-card shape, 0.01) passes only next to a context word, a checksum-valid one (1.0) always
SCORE_THRESHOLD = 0.4
#: regions whose national formats are read without a "+": Italy first, then the ones Italian CX sees most;
#: any number written with "+" is read whatever its country
PHONE_REGIONS = ("IT", "GB", "US", "DE", "FR", "ES", "CH")
#: the shortest personal phone number kept (Italian numbers have 6 to 11 digits); shorter matches are service codes
MIN_PHONE_DIGITS = 6

#: Presidio entity -> Voce kind (the placeholder ``redact`` writes)
KIND_OF = {
    "EMAIL_ADDRESS": "EMAIL", "PHONE_NUMBER": "PHONE", "IBAN_CODE": "IBAN", "CREDIT_CARD": "CARD",
    "IT_FISCAL_CODE": "CODICE_FISCALE", "IT_VAT_CODE": "PARTITA_IVA", "IT_IDENTITY_CARD": "ID_DOCUMENT",
    "IT_PASSPORT": "ID_DOCUMENT", "IT_DRIVER_LICENSE": "ID_DOCUMENT", "PERSON": "NAME",
}
#: which kind wins when two findings overlap with the same score: a checksum beats a phone-number shape
_PRIORITY = {"IBAN": 7, "CARD": 6, "CODICE_FISCALE": 5, "PARTITA_IVA": 4, "EMAIL": 3, "ID_DOCUMENT": 2, "PHONE": 1,
             "NAME": 0}

# context words, Italian and English together (a comment may mix them): they raise a match within 5 tokens
_CONTEXT = {
    "phone": ["phone", "telephone", "tel", "cell", "mobile", "call", "number", "whatsapp", "telefono", "cellulare",
              "chiamare", "chiamato", "richiamare", "numero", "fisso", "recapito"],
    "email": ["email", "mail", "posta", "indirizzo", "address"],
    "card": ["credit", "card", "visa", "mastercard", "amex", "maestro", "carta", "credito", "bancomat", "prepagata",
             "postepay"],
    "iban": ["iban", "conto", "bonifico", "account", "bank", "banca"],
    "fiscal": ["codice fiscale", "cf", "fiscal code", "tax code"],
    "vat": ["piva", "partita iva", "iva", "vat"],
    "identity": ["carta", "identità", "identita", "elettronica", "cie", "documento", "riconoscimento", "identity",
                 "document"],
    "passport": ["passaporto", "passport", "documento", "document"],
    "licence": ["patente", "licenza", "licence", "license", "driving"],
}


class Finding(NamedTuple):
    """One piece of personal data: ``text[start:end]`` is of ``kind`` (a key of :data:`KIND_OF`'s values)."""

    start: int
    end: int
    kind: str
    score: float


class BlankNlpEngine(NlpEngine):
    """Presidio's NLP engine over spaCy's blank tokenizers: tokens and lower-cased words as lemmas, no model.

    Presidio needs tokens only to find context words near a match; a trained pipeline would add lemmas and named
    entities, which the pattern recognizers do not use.
    """

    def __init__(self, languages: Iterable[str] = LANGUAGES) -> None:
        self.languages = tuple(languages)
        self.nlp: dict[str, Any] | None = None

    def load(self) -> None:
        self.nlp = {lang: spacy.blank(lang) for lang in self.languages}

    def is_loaded(self) -> bool:
        return self.nlp is not None

    def process_text(self, text: str, language: str) -> NlpArtifacts:
        assert self.nlp is not None, "load() first"
        doc = self.nlp[language](text)
        return NlpArtifacts(
            entities=[], tokens=doc, tokens_indices=[t.idx for t in doc], lemmas=[t.lower_ for t in doc],
            nlp_engine=self, language=language, scores=[],
        )

    def process_batch(  # type: ignore[override]
        self, texts: Iterable[str], language: str, batch_size: int = 1, n_process: int = 1, as_tuples: bool = False,
        **_: Any,
    ) -> Iterator[tuple[str, NlpArtifacts]]:
        for text in texts:
            yield text, self.process_text(text, language)

    def is_stopword(self, word: str, language: str) -> bool:
        assert self.nlp is not None
        return bool(self.nlp[language].vocab[word].is_stop)

    def is_punct(self, word: str, language: str) -> bool:
        assert self.nlp is not None
        return bool(self.nlp[language].vocab[word].is_punct)

    def get_supported_entities(self) -> list[str]:
        return []

    def get_supported_languages(self) -> list[str]:
        return list(self.languages)


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail recognizer with its domain check on the public-suffix list *bundled* with tldextract.

    The stock one calls ``tldextract.extract``, whose first use downloads the list (an outbound request from
    inside the service); this one never fetches and never writes a cache.
    """

    _suffixes = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=())

    def validate_result(self, pattern_text: str) -> bool:
        return self._suffixes(pattern_text).fqdn != ""


def _recognizers(language: str) -> list[EntityRecognizer]:
    c = _CONTEXT
    return [
        OfflineEmailRecognizer(supported_language=language, context=c["email"]),
        PhoneRecognizer(supported_language=language, context=c["phone"], supported_regions=PHONE_REGIONS),
        IbanRecognizer(supported_language=language, context=c["iban"]),
        CreditCardRecognizer(supported_language=language, context=c["card"]),
        ItFiscalCodeRecognizer(supported_language=language, context=c["fiscal"]),
        ItVatCodeRecognizer(supported_language=language, context=c["vat"]),
        ItIdentityCardRecognizer(supported_language=language, context=c["identity"]),
        ItPassportRecognizer(supported_language=language, context=c["passport"]),
        ItDriverLicenseRecognizer(supported_language=language, context=c["licence"]),
        NameCueRecognizer(supported_language=language),
    ]


#: cheap test for "could the pattern recognizers find anything here": every pattern above holds a digit or an "@"
#: (a codice fiscale too); names need a cue, which :meth:`NameCueRecognizer.may_match` tests
_MAYBE = re.compile(r"[\d@]")


class PiiDetector:
    """Finds personal data in a text: Presidio's analyzer over the recognizers above, both languages.

    Overlapping findings are merged into one span (the higher score names its kind), so a replacement never cuts
    another.  Thread-safe for ``find`` (the analyzer keeps no per-call state).
    """

    def __init__(self, threshold: float = SCORE_THRESHOLD) -> None:
        self.threshold = threshold
        registry = RecognizerRegistry(
            recognizers=[r for lang in LANGUAGES for r in _recognizers(lang)], supported_languages=list(LANGUAGES)
        )
        self.engine = AnalyzerEngine(
            registry=registry, nlp_engine=BlankNlpEngine(LANGUAGES), supported_languages=list(LANGUAGES),
            default_score_threshold=threshold,
        )

    def find(self, text: str, language: str | None = None) -> list[Finding]:
        """Non-overlapping findings in ``text``, in order.  ``language`` picks the tokenizer (it/en; else it)."""
        if not text or (not _MAYBE.search(text) and not NameCueRecognizer.may_match(text)):
            return []
        lang = language if language in LANGUAGES else "it"
        with _Inside():
            raw = self.engine.analyze(text, language=lang, score_threshold=self.threshold)
        found = (Finding(r.start, r.end, KIND_OF[r.entity_type], float(r.score)) for r in raw)
        # libphonenumber accepts some regions' short codes ("flt 1687"): a person's number has at least 6 digits
        return merge(f for f in found if f.kind != "PHONE" or _digits(text[f.start : f.end]) >= MIN_PHONE_DIGITS)


def _digits(s: str) -> int:
    return sum(ch.isdigit() for ch in s)


def merge(findings: Iterable[Finding]) -> list[Finding]:
    """Overlapping findings as one span each: the union of their extents, the kind of the strongest."""
    out: list[Finding] = []
    for f in sorted(findings, key=lambda f: (f.start, -f.end)):
        if f.end <= f.start:
            continue
        if out and f.start < out[-1].end:
            last = out[-1]
            best = max((last, f), key=lambda x: (x.score, _PRIORITY.get(x.kind, 0)))
            out[-1] = Finding(last.start, max(last.end, f.end), best.kind, best.score)
        else:
            out.append(f)
    return out


_BUILD = threading.Lock()
#: set while this thread builds or runs a detector: a log record emitted from in there must not ask for a detector
#: (the redacting log filter would wait for the lock this thread holds)
_INSIDE = threading.local()


def inside_detector() -> bool:
    """Whether the calling thread is building or running a detector right now."""
    return getattr(_INSIDE, "depth", 0) > 0


class _Inside:
    def __enter__(self) -> None:
        _INSIDE.depth = getattr(_INSIDE, "depth", 0) + 1

    def __exit__(self, *_: object) -> None:
        _INSIDE.depth -= 1


@functools.cache
def _detector() -> PiiDetector:
    return PiiDetector()


def default_detector() -> PiiDetector:
    """The detector every redactor shares, built once per process (seconds: Presidio, spaCy's tokenizers and the
    recognizers' patterns), by whichever thread asks first while the others wait."""
    with _BUILD, _Inside():
        return _detector()
