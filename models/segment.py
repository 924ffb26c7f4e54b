"""Sentence spans for Italian and English feedback, with offsets into the original text.

Sentence-level results (evidence, highlights) are shown back on the customer's own
words, so every :class:`Span` satisfies ``text[span.offset:span.end] == span.text``;
nothing is normalised or dropped except surrounding whitespace and bullet markers.

Rules, in the order they apply:

* a line break always ends a sentence; a leading bullet (``-``, ``•``, ``1.``, ``a)``)
  is not part of the sentence;
* ``.``, ``!``, ``?``, ``…`` and runs of them (``!!!``, ``?!``) end a sentence when
  whitespace or the end of the line follows; closing quotes/brackets and emoji right
  after stay with the sentence they close.  Survey answers are often written in
  lower case, so the next word's case does not matter — except after an ellipsis
  (``Beh... poteva andare meglio`` is one sentence) and after "etc."-like
  abbreviations, which end a sentence only before a capital letter;
* an emoji followed by a capitalised word ends a sentence (``Ottimo 😍 Tornerò``);
* titles and other abbreviations never end one (``Sig.``, ``dott.``, ``p.es.``,
  ``Mr.``, ``e.g.``, ``n.``); ``No.``/``nr.``-style ones only before a number;
* decimals, prices, URLs and e-mails need no rule: their dots are not followed by
  whitespace.

Deliberately not handled: sentences glued without a space (``pessimo.non``), which
would break URLs and e-mails, and initials (``J. Smith``).
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Span:
    """A piece of a text: ``text == original[offset:offset + length]``."""

    offset: int
    length: int
    text: str

    @property
    def end(self) -> int:
        return self.offset + self.length


_EMOJI_CHARS = r"\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\u2300-\u23FF\uFE0F\u200D\u20E3"
_EMOJI = (
    rf"(?:[{_EMOJI_CHARS}]"
    r"|[:;]-?[()DPp/]|<3)"  # plain-text emoticons
)
_LINE_RE = re.compile(r"[^\n\r\v\f\x85\u2028\u2029]+")
_BULLET_RE = re.compile(r"\s*(?:[-*•·▪►–—]|\d{1,2}[.)]|[a-zA-Z]\))\s+")
# Linear time on any input.  The runs are possessive (``++``, ``*+``) and start only where a run starts (the
# lookbehinds): with plain ``+`` and ``*``, a run of emoji followed by a letter made the engine try every split
# of the run between ``term`` and the trailing emoji at every position (2,000 emoji + "x" took 76 s).  Neither
# changes a match: a run given back could only end before another emoji or terminator, where no boundary can
# end, and a match from inside a run ends where the one from its start does (checked on 400,000 random strings
# and 7,500 real texts).
_BOUNDARY_RE = re.compile(
    r"(?P<term>(?<![.!?…])[.!?…]++"  # terminator run,
    rf"|(?<![{_EMOJI_CHARS}])(?<![:;][()DPp/])(?<![:;]-[()DPp/])(?<!<3){_EMOJI}++)"  # or emoji standing in for one
    r"[\"'”’»)\]]*+"  # closing quotes and brackets stay with the sentence
    rf"(?:\s*{_EMOJI})*"  # so do emoji after the punctuation
    r"(?=\s+(?P<next>\S)|\s*$)"  # only before whitespace or the end of the line
)
_OPENERS = "([{\"'«“‘"

#: never end a sentence (titles, "for example", "number", ...)
_ABBREV_ALWAYS = frozenset({
    "sig", "sigg", "sig.ra", "sig.na", "dott", "dott.ssa", "prof", "prof.ssa", "avv", "ing", "geom", "rag", "arch",
    "egr", "gent", "gent.mo", "gent.ma", "spett", "es", "p.es", "ad.es", "n", "nr", "num", "tel", "cell", "cfr",
    "c.a", "c.so", "v.le", "p.za", "p.zza",
    "mr", "mrs", "ms", "dr", "jr", "sr", "st", "e.g", "i.e", "eg", "ie", "vs", "approx", "dept", "ref", "cf", "apt",
    "ave", "ext",
})
#: end a sentence only before a capital letter ("pasta, pizza ecc. e dolci")
_ABBREV_BEFORE_CAPITAL = frozenset({
    "etc", "ecc", "ecc.ecc", "inc", "ltd", "co", "corp", "spa", "s.p.a", "srl", "s.r.l", "a.m", "p.m",
})
#: not a sentence end before a number ("No. 5", "pag. 3", "art. 2")
_ABBREV_BEFORE_NUMBER = frozenset({"no", "nos", "art", "pag", "pagg", "p", "pp", "fig", "vol", "cap", "ca"})


def _trimmed(text: str, start: int, end: int) -> Span | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return Span(start, end - start, text[start:end]) if end > start else None


def _token_before(text: str, start: int, end: int) -> str:
    """The run of non-blank characters that ends at ``end`` (not before ``start``): what ``(\\S+)$`` finds, but
    read backwards from ``end``, so a sentence of many "Sig." costs linear time, not quadratic."""
    i = end
    while i > start and not text[i - 1].isspace():
        i -= 1
    return text[i:end]


def _ends_sentence(text: str, sent_start: int, m: re.Match[str]) -> bool:
    nxt = m.group("next")
    if nxt is None:  # end of the line: the line break ends it anyway
        return True
    term = m.group("term")
    if term[0] not in ".!?…":  # emoji without punctuation
        return nxt.isupper()
    if "!" in term or "?" in term:
        return True
    if term != ".":  # "..", "...", "…": an ellipsis usually trails off mid-sentence
        return nxt.isupper()
    word = _token_before(text, sent_start, m.start()).lstrip(_OPENERS).lower()
    if word in _ABBREV_ALWAYS:
        return False
    if word in _ABBREV_BEFORE_CAPITAL:
        return nxt.isupper()
    if word in _ABBREV_BEFORE_NUMBER:
        return not nxt.isdigit()
    return True


def _split_line(text: str, start: int, end: int, out: list[Span]) -> None:
    bullet = _BULLET_RE.match(text, start, end)
    if bullet:
        start = bullet.end()
    sent_start = start
    for m in _BOUNDARY_RE.finditer(text, start, end):
        if not text[sent_start : m.start()].strip():
            continue  # "!!! Pessimo": a leading terminator is not a sentence
        if _ends_sentence(text, sent_start, m):
            span = _trimmed(text, sent_start, m.end())
            if span:
                out.append(span)
            sent_start = m.end()
    span = _trimmed(text, sent_start, end)
    if span:
        out.append(span)


def split_sentences(text: str) -> list[Span]:
    """Sentences of ``text`` as trimmed, non-empty spans in reading order."""
    out: list[Span] = []
    for line in _LINE_RE.finditer(text):
        _split_line(text, line.start(), line.end(), out)
    return out


def _cut(span: Span, max_chars: int) -> list[Span]:
    """Cut an over-long span at whitespace (mid-word only when a word is longer than the limit)."""
    pieces: list[Span] = []
    t, pos = span.text, 0
    while len(t) - pos > max_chars:
        cut = next((i for i in range(pos + max_chars, pos, -1) if t[i].isspace()), pos + max_chars)
        piece = _trimmed(t, pos, cut)
        if piece:
            pieces.append(Span(span.offset + piece.offset, piece.length, piece.text))
        pos = cut
        while pos < len(t) and t[pos].isspace():
            pos += 1
    rest = _trimmed(t, pos, len(t))
    if rest:
        pieces.append(Span(span.offset + rest.offset, rest.length, rest.text))
    return pieces


def window_spans(spans: Sequence[Span], max_chars: int, *, source: str | None = None) -> list[Span]:
    """Group consecutive sentences into windows of at most ``max_chars`` characters.

    Long documents are encoded window by window instead of being truncated, so every
    character of every span lands in exactly one window.  A window's ``offset`` and
    ``length`` cover its first to last sentence in the original text.  Its ``text`` is
    that exact slice of ``source`` when given; otherwise the sentences joined by one
    space (the whitespace between them is not known here).
    """
    if max_chars < 1:
        raise ValueError("max_chars must be positive")
    windows: list[Span] = []
    group: list[Span] = []
    size = 0  # characters of the window's text so far

    def flush() -> None:
        start, end = group[0].offset, group[-1].end
        body = source[start:end] if source is not None else " ".join(s.text for s in group)
        windows.append(Span(start, end - start, body))

    for span in spans:
        for piece in [span] if span.length <= max_chars else _cut(span, max_chars):
            if group:
                grown = piece.end - group[0].offset if source is not None else size + 1 + piece.length
                if grown <= max_chars:
                    group.append(piece)
                    size = grown
                    continue
                flush()
            group, size = [piece], piece.length
    if group:
        flush()
    return windows
