"""Person names after an explicit cue: the part of name detection that works offline without a trained model.

No maintained Italian NER model can be installed from PyPI (spaCy's are downloaded from GitHub; GLiNER's from the
Hugging Face hub), and Voce never downloads at run time.  What is left is what people write around a name:

* introductions: "mi chiamo Mario Rossi", "il mio nome è …", "my name is …", "sono Marco del servizio clienti",
  "I'm Sarah" (not "this is …": "This is Ridiculous" is how reviews are written);
* titles: "Sig. Rossi", "la Sig.ra Bianchi", "Dott.ssa Verdi", "Ing.", "Avv.", "Mr", "Mrs", "Ms", "Dr";
* who served the customer: "l'operatrice Giulia", "il consulente Paolo", "the agent, Sarah", "ho parlato con Luca",
  "spoke to John", "grazie a Roberta", "thanks to Kevin";
* family and colleagues: "mio marito Tom", "la mia collega Chiara", "my wife Anna";
* a signature closing the text: "Cordiali saluti, Mario Rossi", "Grazie, Anna", "Regards, John Smith".

A name is one to three capitalised words (particles such as "De", "di", "della" and "D'" inside), so a lower-case
word after a cue is never taken ("sono molto deluso").  Capitalised common words after a cue ("sono Cliente da
anni", "I'm Italian") are refused by a stop list.  A name written without any cue ("Mario è stato gentile") is
NOT found: that is the documented limit, measured in tests/service/privacy/test_detect.py.
"""
from __future__ import annotations

import re

from presidio_analyzer import LocalRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts
from spacy.lang.en.stop_words import STOP_WORDS as EN_STOP
from spacy.lang.it.stop_words import STOP_WORDS as IT_STOP

_UP, _LOW = "A-ZÀ-ÖØ-Þ", "a-zà-öø-ÿ"
#: Mario, D'Angelo, Anna-Maria, McBride
_WORD = rf"(?:[{_UP}]['’])?[{_UP}][{_LOW}]+(?:[-][{_UP}][{_LOW}]+)?(?:[{_UP}][{_LOW}]+)?"
_PARTICLE = r"(?:de|di|da|del|della|dello|dei|dal|dalla|van|von|der|den|du|le)"
_NAME = rf"(?P<name>{_WORD}(?:[ \t]+(?:{_PARTICLE}[ \t]+)?{_WORD}){{0,2}})"

#: the cues, case-insensitive; each group is one way people put a name into feedback
_INTRO = (r"mi\s+chiamo", r"il\s+mio\s+nome\s+(?:è|e'|é)", r"my\s+name\s+is", r"my\s+name's", r"(?:io\s+)?sono",
          r"i\s+am", r"i['’]m")
_TITLE = (r"sig(?:\.|nor|nora|norina|\.ra\.?|\.na\.?|ra\.?)", r"sig", r"dott(?:\.ssa|oressa|ore|or|\.)\.?",
          r"dr\.?", r"ing\.", r"avv(?:\.to)?\.", r"prof(?:\.ssa|essoressa|essore|\.)\.?", r"geom\.", r"rag\.",
          r"mr\.?", r"mrs\.?", r"ms\.?", r"miss", r"sir", r"madam")
_ROLE = (r"(?:l['’]\s*)?operat(?:ore|rice)", r"(?:il|la)?\s*consulente", r"(?:l['’]\s*)?addett[oa]",
         r"(?:il|la)?\s*tecnic[oa]", r"(?:l['’]\s*)?agente", r"(?:the\s+)?agent", r"(?:the\s+)?representative",
         r"(?:the\s+)?advisor", r"(?:the\s+)?adviser", r"(?:the\s+)?technician", r"(?:the\s+)?driver",
         r"attendant", r"steward", r"stewardess", r"hostess", r"receptionist", r"cashier", r"waiter", r"waitress",
         r"manager", r"supervisor", r"cameriere", r"cameriera", r"commess[oa]", r"cassier[ea]", r"responsabile",
         r"(?:il|la)\s+corriere", r"(?:ho\s+)?parlato\s+con", r"(?:spoke|talked|spoken)\s+(?:to|with)",
         r"chiesto\s+di", r"a\s+nome\s+di", r"intestat[oa]\s+a", r"firmato", r"signed",
         r"grazie(?:\s+mille)?\s+a(?:l|lla)?", r"thanks\s+to", r"thank\s+you", r"marito", r"moglie", r"figli[oa]",
         r"collega", r"amic[oa]", r"fratello", r"sorella", r"madre", r"padre", r"mamma", r"papà", r"compagn[oa]",
         r"husband", r"wife", r"son", r"daughter", r"colleague", r"friend", r"brother", r"sister", r"mother",
         r"father", r"mum", r"mom", r"dad", r"partner")
_SIGN = (r"cordiali\s+saluti", r"distinti\s+saluti", r"saluti", r"un\s+saluto", r"grazie(?:\s+mille)?",
         r"best\s+regards", r"kind\s+regards", r"regards", r"many\s+thanks", r"thanks", r"thank\s+you", r"cheers",
         r"sincerely", r"best")


def _cues(words: tuple[str, ...]) -> str:
    return "(?i:" + "|".join(words) + ")"


_B = r"(?<![\w.'’])"  # a cue starts a word
_CUED = (
    re.compile(rf"{_B}(?:{_cues(_INTRO)}|{_cues(_ROLE)})[ \t]*,?[ \t]+{_NAME}"),
    re.compile(rf"{_B}{_cues(_TITLE)}[ \t]*{_NAME}"),
    # a signature opens a sentence or a line and its name closes the text
    re.compile(rf"(?:^|(?<=[.!?\n]))\s*{_cues(_SIGN)}[ \t]*[,!.]?\s+{_NAME}[ \t]*[.!]?\s*$"),
)
#: the cheap test run before the whole pattern: is there any cue word at all (a superset of the cues' stems)
_ANY_CUE = re.compile(
    r"(?i:chiamo|nome|name|sono|i am|i'm|i’m|this|sig|dott|dr|ing\.|avv|prof|geom|rag\.|mr|ms|miss|sir|madam|operat|"
    r"consulente|addett|tecnic|agent|represent|advis|technician|driver|corriere|parlato|spoke|talked|chiesto|intestat|"
    r"firmato|signed|salut|grazie|regards|thank|cheers|sincerely|best|marito|moglie|figli|collega|amic|fratell|"
    r"sorell|madre|padre|mamma|papà|compagn|husband|wife|son|daughter|colleague|friend|brother|sister|mother|"
    r"father|mum|mom|dad|partner|attendant|steward|hostess|receptionist|cashier|waite|manager|supervisor|camerier|"
    r"commess|cassier|responsabile)"
)

#: capitalised words a cue may be followed by that are not names (compared lower-cased), besides stop words
_COMMON = """
    cliente clienti customer customers servizio service assistenza support supporto ufficio office negozio store
    shop app sito website ordine order prodotto product team staff personale grazie thanks mille tutti tutto
    buongiorno buonasera salve ciao hello hi dear gentile gentili spettabile molto very davvero really proprio
    sempre never mai italiano italiana italiani italian english inglese british american americano french
    francese german tedesco spanish spagnolo european europeo irish scottish canadian australian swiss svizzero
    dutch chinese indian happy sorry sad disappointed deluso delusa soddisfatto soddisfatta contento contenta
    arrabbiato arrabbiata stanco stanca here qui qua lunedì martedì mercoledì giovedì venerdì sabato domenica
    monday tuesday wednesday thursday friday saturday sunday gennaio febbraio marzo aprile maggio giugno luglio
    agosto settembre ottobre novembre dicembre january february march april may june july august september
    october november december covid dio god ok okay yes no sì si not non nessuno nobody someone qualcuno still
    ancora already già
"""
_NOT_NAMES = frozenset(IT_STOP | EN_STOP) | frozenset(_COMMON.split())


class NameCueRecognizer(LocalRecognizer):
    """Presidio recognizer for ``PERSON``: capitalised words after a cue (introduction, title, role, signature)."""

    SCORE = 0.6

    def __init__(self, supported_language: str = "it") -> None:
        super().__init__(
            supported_entities=["PERSON"], supported_language=supported_language, name="NameCueRecognizer",
            context=[],
        )

    def load(self) -> None:
        """Nothing to load: the patterns are compiled at import."""

    @staticmethod
    def may_match(text: str) -> bool:
        """Whether ``text`` holds a cue word at all (cheap; the detector skips texts without digits, "@" or cues)."""
        return _ANY_CUE.search(text) is not None

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        meta = {RecognizerResult.RECOGNIZER_NAME_KEY: "NameCueRecognizer", RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id}
        return [
            RecognizerResult(entity_type="PERSON", start=s, end=e, score=self.SCORE, recognition_metadata=dict(meta))
            for s, e in find_cued_names(text)
        ]


def find_cued_names(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of every name that follows a cue; common words after a cue are cut off or refused."""
    out = []
    for m in (m for pattern in _CUED for m in pattern.finditer(text)):
        start, end = m.span("name")
        words = list(re.finditer(r"\S+", text[start:end]))
        kept = []
        for i, w in enumerate(words):
            word = w.group()
            if i and re.fullmatch(_PARTICLE, word, re.IGNORECASE):  # "De Luca", "della Valle": part of the name
                kept.append(w)
                continue
            if word.lower().strip("'’") in _NOT_NAMES:
                break
            kept.append(w)
        while kept and re.fullmatch(_PARTICLE, kept[-1].group(), re.IGNORECASE):
            kept.pop()
        if kept:
            out.append((start + kept[0].start(), start + kept[-1].end()))
    return sorted(set(out))
