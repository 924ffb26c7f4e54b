"""Applying a :data:`~voce.service.privacy.modes.PiiMode` to text and values, and keeping offsets true.

:class:`Redactor` turns a text into a :class:`Redacted`: the new text plus the edits that made it, so an
evidence span computed on the original text (the analysis always runs on the original, in memory) can be moved
onto the stored text with :meth:`Redacted.span`.  ``mask`` keeps every character's position (a masked string
is as long as the original), ``redact`` shifts what follows a placeholder, ``keep`` changes nothing.

The splicing is ours, not presidio-anonymizer's: the anonymizer merges adjacent findings and reorders its
output, and what the stored rows need is the exact old-span -> new-span pairs.
"""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from voce.models.caches import LRUCache
from voce.service.privacy.modes import PiiMode, placeholder

if TYPE_CHECKING:
    from voce.service.privacy.detect import Finding, PiiDetector

#: short cell values repeat (regions, products, dates): remembered per redactor
_CACHE_CHARS, _CACHE_SIZE = 64, 4096


@dataclass(frozen=True)
class Edit:
    """``original[start:end]`` became ``redacted[new_start:new_end]``."""

    start: int
    end: int
    new_start: int
    new_end: int
    kind: str


@dataclass(frozen=True)
class Redacted:
    """A text after redaction, and how to move positions of the original onto it."""

    text: str
    edits: tuple[Edit, ...] = ()
    _starts: list[int] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._starts.extend(e.start for e in self.edits)

    @property
    def kinds(self) -> list[str]:
        return [e.kind for e in self.edits]

    def position(self, pos: int, *, end: bool = False) -> int:
        """Where original position ``pos`` lands: inside a replaced span, a start moves to the replacement's start
        and an end to its end, so a span that touched personal data covers all of its placeholder."""
        i = bisect.bisect_right(self._starts, pos) - 1
        if i < 0:
            return pos
        e = self.edits[i]
        if pos >= e.end:
            return pos + e.new_end - e.end
        if pos == e.start:
            return e.new_start
        return e.new_end if end else e.new_start

    def span(self, offset: int, length: int) -> tuple[int, int]:
        """An ``(offset, length)`` span of the original, as a span of the redacted text."""
        start = self.position(offset)
        if length <= 0:
            return start, 0
        return start, max(self.position(offset + length, end=True) - start, 0)


# ------------------------------------------------------------------- masking
def _starred(s: str, keep: set[int]) -> str:
    """Letters and digits become "*" unless their index is kept; separators (space, ".", "-", "@", "+") stay."""
    return "".join(ch if i in keep or not ch.isalnum() else "*" for i, ch in enumerate(s))


def _alnum_positions(s: str) -> list[int]:
    return [i for i, ch in enumerate(s) if ch.isalnum()]


def mask(kind: str, s: str) -> str:
    """``s`` with the same length and shape, most of it starred: enough left to recognise one's own data
    (first letters, a country code, the last four digits), not enough to read anyone else's."""
    if kind == "EMAIL" and "@" in s:
        local, _, domain = s.rpartition("@")
        labels = domain.split(".")
        masked = [_starred(lab, {0} if i == 0 else set()) for i, lab in enumerate(labels[:-1])] + labels[-1:]
        return _starred(local, {0}) + "@" + ".".join(masked)
    alnum = _alnum_positions(s)
    if kind in ("PHONE", "CARD", "IBAN"):
        keep = set(alnum[-4:])
        if kind == "PHONE" and s.startswith("+"):
            m = re.match(r"\+\d{1,3}(?=\D)", s)  # the country code when it is written apart: "+39 333 ..."
            keep |= set(range(1, m.end())) if m else set()
        if kind == "IBAN":
            keep |= set(alnum[:2])  # the country
        return _starred(s, keep if len(alnum) > 8 else set())
    if kind == "NAME":
        return "".join(ch if i == 0 or not s[i - 1].isalnum() or not ch.isalnum() else "*" for i, ch in enumerate(s))
    return _starred(s, set())


def splice(text: str, findings: list[Finding], mode: PiiMode) -> Redacted:
    """``text`` with each (non-overlapping, ordered) finding replaced as ``mode`` says."""
    if mode == "keep" or not findings:
        return Redacted(text)
    parts: list[str] = []
    edits: list[Edit] = []
    pos = out = 0
    for f in findings:
        before = text[pos : f.start]
        parts.append(before)
        out += len(before)
        new = placeholder(f.kind) if mode == "redact" else mask(f.kind, text[f.start : f.end])
        parts.append(new)
        edits.append(Edit(f.start, f.end, out, out + len(new), f.kind))
        out += len(new)
        pos = f.end
    parts.append(text[pos:])
    return Redacted("".join(parts), tuple(edits))


# ------------------------------------------------------------------- columns
_HEADER_KINDS: dict[str, set[str]] = {
    "NAME": {"name", "nome", "cognome", "surname", "first name", "last name", "firstname", "lastname", "full name",
             "fullname", "nome cognome", "nome e cognome", "cognome nome", "cognome e nome", "nominativo",
             "customer name", "client name", "nome cliente", "contact name", "nome contatto", "referente",
             "intestatario", "titolare", "agent name", "nome operatore", "operatore", "sender", "mittente",
             "author", "autore"},
    "EMAIL": {"email", "e mail", "mail", "email address", "indirizzo email", "indirizzo e mail", "posta elettronica",
              "pec", "customer email", "email cliente"},
    "PHONE": {"phone", "telephone", "tel", "telefono", "cellulare", "cell", "mobile", "phone number",
              "numero di telefono", "numero telefono", "recapito", "recapito telefonico", "whatsapp"},
    "ADDRESS": {"address", "indirizzo", "street", "home address", "residenza", "indirizzo di residenza",
                "street address"},
    "CODICE_FISCALE": {"codice fiscale", "cf", "c f", "fiscal code", "tax code", "tax id", "codicefiscale"},
    "PARTITA_IVA": {"partita iva", "piva", "p iva", "vat", "vat number", "partitaiva"},
    "IBAN": {"iban"},
    "CARD": {"card number", "credit card", "numero carta", "carta di credito", "pan"},
    "BIRTH_DATE": {"data di nascita", "date of birth", "dob", "birth date", "birthdate", "birthday", "nato il"},
}
_HEADER_KIND = {name: kind for kind, names in _HEADER_KINDS.items() for name in names}


def column_kind(header: str) -> str | None:
    """The personal-data kind a column's name announces ("Email", "Nome e cognome", "telefono_cliente" is not one:
    only whole names count), or None.  Such a column is redacted whole, found or not."""
    key = " ".join(re.sub(r"[^0-9a-zà-ÿ]+", " ", header.lower()).split())
    return _HEADER_KIND.get(key)


# ------------------------------------------------------------------- the redactor
class Redactor:
    """One mode over one detector; redacts texts (with their edits), strings, nested values and table cells."""

    def __init__(self, mode: PiiMode, detector: PiiDetector | None = None) -> None:
        self.mode = mode
        self._detector = detector
        self._cache: LRUCache[tuple[str, str | None], str] = LRUCache(_CACHE_SIZE)

    @property
    def active(self) -> bool:
        return self.mode != "keep"

    @property
    def detector(self) -> PiiDetector:
        if self._detector is None:
            from voce.service.privacy.loader import detect_module

            self._detector = detect_module().default_detector()
        return self._detector

    def text(self, text: str, language: str | None = None) -> Redacted:
        """``text`` redacted, with the edits that move evidence offsets onto it."""
        if not self.active or not text:
            return Redacted(text)
        return splice(text, self.detector.find(text, language), self.mode)

    def string(self, s: str, language: str | None = None) -> str:
        if not self.active or not s:
            return s
        if len(s) > _CACHE_CHARS:
            return self.text(s, language).text
        hit = self._cache.get((s, language))
        if hit is None:
            hit = self.text(s, language).text
            self._cache.put((s, language), hit)
        return hit

    def value(self, v: Any, language: str | None = None) -> Any:
        """Every string inside ``v`` (a JSON value: dicts, lists, scalars) redacted; other values unchanged."""
        if isinstance(v, str):
            return self.string(v, language)
        if isinstance(v, list):
            return [self.value(x, language) for x in v]
        if isinstance(v, dict):
            return {k: self.value(x, language) for k, x in v.items()}
        return v

    def whole(self, kind: str, v: Any) -> Any:
        """A value that is personal data as a whole (a "Nome" column's cell): its placeholder, or masked."""
        if not self.active or v is None or v == "":
            return v
        s = v if isinstance(v, str) else str(v)
        return placeholder(kind) if self.mode == "redact" else mask(kind, s)

    def cell(self, column: str, v: Any, language: str | None = None) -> Any:
        """One cell of an uploaded table: whole if its column's name announces personal data, else searched."""
        kind = column_kind(column)
        if kind is not None:
            return self.whole(kind, v)
        return self.value(v, language)

    def record(self, cells: dict[str, Any], language: str | None = None) -> dict[str, Any]:
        """An uploaded row's cells (column -> value), each through :meth:`cell`."""
        if not self.active:
            return cells
        return {k: self.cell(k, v, language) for k, v in cells.items()}
