"""Property tests of the two parsers that read what customers and teams send as text: chat transcripts
(:mod:`voce.models.chat`) and taxonomies (:mod:`voce.models.taxonomy`).

* the transcript parser never raises, every turn points at exactly its words, turns do not overlap and keep their
  order, and rendering turns then parsing them gives the same turns back;
* roles and signals never raise, keep the turns and point inside the document;
* a taxonomy is either parsed or refused with :class:`TaxonomyError`, never another exception, and a parsed one
  survives its own round trip (object, YAML file) unchanged.

Bounded for CI: a fixed number of examples per property, derandomized, no example database, no deadline.
"""
from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voce.models.chat import (
    ChatTurn,
    classify_roles,
    detect_signals,
    parse_transcript,
    render_turns,
)
from voce.models.taxonomy import Taxonomy, TaxonomyError, default_taxonomy, load_taxonomy, parse_taxonomy

BOUNDED = settings(
    max_examples=150, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# ------------------------------------------------------------------ chats
_LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"
# what a transcript line is made of: words in any script, digits, the punctuation of headers ([10:32] - | : ( ) /)
_CHAT_CHARS = st.characters(codec="utf-8", exclude_categories=["Cs"])
_HEADERISH = st.sampled_from(["Cliente: ", "Operatore: ", "[10:32] ", "10:32 - ", "01/03/24, 10:32 - ", "(10:32)",
                              ": ", "\n", "\r\n", "\t", "Assistente virtuale: ", "https://x.it/a:b ", " ", "\u2028"])
transcripts = st.lists(st.one_of(_HEADERISH, st.text(_CHAT_CHARS, max_size=12)), max_size=25).map("".join)


@BOUNDED
@given(transcripts)
def test_parse_transcript_any_text(text: str) -> None:
    turns = parse_transcript(text)
    end = 0
    for t in turns:
        assert text[t.offset : t.offset + t.length] == t.text
        assert t.offset >= end  # in order, no overlap
        end = t.offset + t.length
        assert t.text == t.text.strip() and t.speaker == t.speaker.strip() and t.speaker
        assert ":" not in t.speaker and "\n" not in t.speaker


_SPEAKER = st.lists(
    st.text(st.characters(codec="utf-8", categories=["L"]), min_size=1, max_size=8), min_size=1, max_size=4
).map(" ".join)
_BODY = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp"),
                              exclude_characters=_LINE_BREAKS), max_size=40).map(str.strip)


@BOUNDED
@given(st.lists(st.tuples(_SPEAKER, _BODY), min_size=1, max_size=8))
def test_render_then_parse_gives_the_turns_back(pairs: list[tuple[str, str]]) -> None:
    """Structured turns (a JSONL chat) rendered into one document and parsed back: the same speakers, texts and
    offsets (what lets a pasted transcript and a structured one give the same evidence)."""
    document, rendered = render_turns(pairs)
    for t in rendered:
        assert document[t.offset : t.offset + t.length] == t.text
    parsed = parse_transcript(document)
    assert [(t.speaker, t.text, t.offset, t.length) for t in parsed] == [
        (t.speaker, t.text, t.offset, t.length) for t in rendered
    ]


_ROLE = st.sampled_from(["customer", "agent", "bot", "system", "unknown"])
_TURN_TEXT = st.one_of(
    st.text(_CHAT_CHARS, max_size=60),
    st.sampled_from([
        "vorrei parlare con un responsabile", "ho già chiamato tre volte", "ti passo un collega",
        "I want to speak to a manager", "I've been on hold for 40 minutes", "still not fixed",
        "il mio ordine non è arrivato", "how can I help you today?", "sono Marco del servizio clienti",
    ]),
)


@BOUNDED
@given(st.lists(st.tuples(st.text(_CHAT_CHARS, max_size=15), _TURN_TEXT, _ROLE), max_size=8))
def test_roles_and_signals_any_turns(raw: list[tuple[str, str, Any]]) -> None:
    """Roles: one per turn, a role the caller gave is kept.  Signals: evidence inside the document, on the words
    it quotes, from a turn that exists."""
    document, turns = render_turns([ChatTurn(s, t, r) for s, t, r in raw])
    classified = classify_roles(turns)
    assert len(classified) == len(turns)
    for before, after in zip(turns, classified, strict=True):
        assert (before.offset, before.length, before.text) == (after.offset, after.length, after.text)
        assert after.role != "unknown" or not after.speaker.strip() and before.role == "unknown"
        if before.role != "unknown":
            assert after.role == before.role
    signals = detect_signals(turns)
    assert signals.escalation_requested == bool(signals.escalation_evidence)
    for span in signals.escalation_evidence:
        assert span.offset >= 0 and span.offset + span.length <= len(document)
    for e in signals.effort_signals:
        assert 0 <= e.turn_index < len(turns)
        assert document[e.offset : e.offset + e.length] == e.text


# ------------------------------------------------------------------ taxonomies
_ID = st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True)
_WORDS = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)


@st.composite
def taxonomy_entries(draw: st.DrawFn, touchpoints: bool = False) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": draw(_ID),
        "names": draw(st.dictionaries(st.sampled_from(["it", "en", "de"]), _WORDS, min_size=1, max_size=3)),
    }
    if draw(st.booleans()):
        entry["descriptions"] = draw(st.dictionaries(st.sampled_from(["it", "en"]), _WORDS, max_size=2))
    if draw(st.booleans()):
        entry["examples"] = draw(st.lists(_WORDS, max_size=4))
    if touchpoints and draw(st.booleans()):
        entry["channels"] = draw(st.lists(_WORDS, max_size=3))
    return entry


@st.composite
def taxonomy_objects(draw: st.DrawFn) -> dict[str, Any]:
    """Taxonomies as teams write them: valid ones, and ones a typo away from valid."""
    data: dict[str, Any] = {"version": draw(st.one_of(st.text(max_size=70), st.integers(), st.floats(), st.none()))}
    for section in ("topics", "touchpoints"):
        if draw(st.booleans()):
            entries = draw(st.lists(taxonomy_entries(touchpoints=section == "touchpoints"), max_size=4))
            data[section] = {"mode": draw(st.sampled_from(["multi", "single", "both"])), "entries": entries} \
                if draw(st.booleans()) else entries
    if draw(st.integers(0, 4)) == 0:  # a typo: an unknown key somewhere
        data[draw(st.sampled_from(["topic", "extra", "Topics"]))] = []
    return data


_json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=20,
)


def _parse(data: Any) -> Taxonomy | None:
    try:
        return parse_taxonomy(data)
    except TaxonomyError as exc:
        assert str(exc)  # says why
        return None


@BOUNDED
@given(st.one_of(taxonomy_objects(), _json_value,
                 st.dictionaries(st.sampled_from(["version", "topics", "touchpoints"]), _json_value)))
def test_parse_taxonomy_any_object_is_a_taxonomy_or_a_taxonomy_error(data: Any) -> None:
    t = _parse(data)
    if t is None:
        return
    # what was parsed keeps its round trip: dumped and parsed again, the same taxonomy and fingerprints
    again = parse_taxonomy(json.loads(t.model_dump_json()))
    assert again == t
    assert again.topics.fingerprint() == t.topics.fingerprint()
    assert len(set(t.topics.ids)) == len(t.topics.ids) and len(set(t.touchpoints.ids)) == len(t.touchpoints.ids)


# what a hand-written YAML file holds (no NEL / line or paragraph separators: YAML reads them as line breaks)
_FILE_WORDS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")), max_size=30)
_NAME = st.text(st.characters(codec="utf-8", categories=("L", "N", "P", "Zs")), min_size=1, max_size=20).filter(str.strip)


@st.composite
def valid_taxonomies(draw: st.DrawFn) -> dict[str, Any]:
    def entries(touchpoints: bool) -> list[dict[str, Any]]:
        ids = draw(st.lists(_ID, min_size=1, max_size=4, unique=True))
        out = []
        for i in ids:
            e: dict[str, Any] = {"id": i, "names": {draw(st.sampled_from(["it", "en"])): draw(_NAME)}}
            e["descriptions"] = draw(st.dictionaries(st.sampled_from(["it", "en"]), _FILE_WORDS, max_size=2))
            e["examples"] = draw(st.lists(_FILE_WORDS, max_size=3))
            if touchpoints:
                e["channels"] = draw(st.lists(_FILE_WORDS, max_size=2))
            out.append(e)
        return out

    data: dict[str, Any] = {"version": draw(_NAME)}
    sections = draw(st.sampled_from([("topics",), ("touchpoints",), ("topics", "touchpoints")]))
    for section in sections:
        found = entries(section == "touchpoints")
        data[section] = {"mode": draw(st.sampled_from(["multi", "single"])), "entries": found} \
            if draw(st.booleans()) else found
    return data


@BOUNDED
@given(valid_taxonomies())
def test_taxonomy_file_round_trip(data: dict[str, Any]) -> None:
    """A taxonomy written as YAML and loaded from the file is the one parsed from the object."""
    parsed = parse_taxonomy(data)
    path = Path(tempfile.mkdtemp(prefix="voce-tax-")) / "taxonomy.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    assert load_taxonomy(path) == parsed


@settings(BOUNDED, max_examples=80)
@given(st.text(max_size=300))
def test_load_taxonomy_any_text_file(text: str) -> None:
    """Any text in a taxonomy file: a taxonomy or a TaxonomyError (bad YAML included), never another exception."""
    path = Path(tempfile.mkdtemp(prefix="voce-tax-")) / "taxonomy.yaml"
    path.write_text(text, "utf-8", errors="surrogatepass")
    with contextlib.suppress(TaxonomyError):
        load_taxonomy(path)


def test_load_taxonomy_of_a_latin1_file_is_a_taxonomy_error(tmp_path: Path) -> None:
    path = tmp_path / "taxonomy.yaml"
    path.write_bytes('version: "1"\ntopics:\n  - id: prezzo\n    names: {it: "Più caro"}\n'.encode("latin-1"))
    with pytest.raises(TaxonomyError):
        load_taxonomy(path)


def test_the_default_taxonomy_survives_its_round_trip() -> None:
    t = default_taxonomy()
    assert parse_taxonomy(json.loads(t.model_dump_json())) == t
