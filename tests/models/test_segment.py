from __future__ import annotations

import pytest

from voce.models.segment import Span, split_sentences, window_spans

TRICKY = [
    "",
    "   ",
    "\n\n\r\n",
    "ok",
    "10/10",
    "👍",
    "!!!",
    "...",
    "!!! Pessimo",
    "Ottimo!!!Tornerò",
    "Il servizio è stato ottimo! Tornerò sicuramente.",
    "pessimo servizio. non ci torno più",
    "Costo € 12.50 per 3.5 stelle?! Assurdo!!! Mai più",
    "Il servizio... beh, poteva andare meglio… Comunque ok",
    "Ottimo servizio 😍😍 Tornerò presto 👍🏻👍🏻",
    "Grazie mille! 👍 Alla prossima. ❤️",
    "Family 👨‍👩‍👧 trip. Great 🇮🇹 food!",
    "- camera pulita\n- staff gentile\n• colazione scarsa\n1. primo punto\n2) secondo\n-\n* ",
    "Visit www.example.com. Then email mario.rossi@example.it. Thanks",
    "Vedi https://example.com/faq?id=3&x=1. Non funziona!",
    "Mr. Smith and Dr. Who met e.g. at 5 p.m. We loved it, i.e. truly.",
    "Ordine n. 12345 non arrivato. Tel. 06 1234567.",
    'Ha detto "basta." Poi è andato via.',
    "(vedi p.es. pag. 3) Ok.",
    "Great :) Will come back :(",
    "\tTab\tseparated.\tSentences!\t",
    "Riga uno\r\nRiga due\rRiga tre\u2028Riga quattro",
    " . . . ",
    "a.b.c. d.e.f. G.",
    "È la terza volta… ?!? …",
    "x" * 300,
    "parola " * 80,
]


def _check_invariants(text: str, spans: list[Span]) -> None:
    prev_end = 0
    for s in spans:
        assert text[s.offset : s.offset + s.length] == s.text
        assert s.text and s.text == s.text.strip()
        assert s.length == len(s.text)
        assert s.offset >= prev_end  # in order, no overlap
        prev_end = s.end
    # nothing but whitespace and leading bullet markers is left out
    covered = [False] * len(text)
    for s in spans:
        covered[s.offset : s.end] = [True] * s.length
    line_start, seen_span = 0, False
    for i, ch in enumerate(text):
        if ch in "\n\r\v\f\x85\u2028\u2029":
            line_start, seen_span = i + 1, False
        elif covered[i]:
            seen_span = True
        elif not ch.isspace():  # only a bullet marker at the start of its line may be left out
            assert not seen_span and len(text[line_start : i + 1].lstrip()) <= 3, f"{text!r}: {ch!r} at {i} dropped"


@pytest.mark.parametrize("text", TRICKY)
def test_offsets_point_into_the_original(text: str) -> None:
    _check_invariants(text, split_sentences(text))


try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # hypothesis is a dev extra; the hand-written list above still runs
    given = None

if given is not None:
    _ALPHABET = st.sampled_from(
        list("aZè ..!?…\n\r\t-•1)\"'(«»") + ["😍", "👍🏻", "€", "e.g.", "Sig.", "ecc.", "3.5", ":)", "No. "]
    )

    @settings(max_examples=300, deadline=None)
    @given(st.lists(_ALPHABET, max_size=60).map("".join) | st.text(max_size=80))
    def test_offsets_property(text: str) -> None:
        _check_invariants(text, split_sentences(text))


def _texts(text: str) -> list[str]:
    return [s.text for s in split_sentences(text)]


def test_basic_punctuation_and_runs() -> None:
    assert _texts("Il servizio è stato ottimo! Tornerò sicuramente.") == [
        "Il servizio è stato ottimo!", "Tornerò sicuramente."]
    assert _texts("Costo assurdo?! Mai più!!! davvero") == ["Costo assurdo?!", "Mai più!!!", "davvero"]
    assert _texts("pessimo servizio. non ci torno più") == ["pessimo servizio.", "non ci torno più"]
    assert _texts("!!! Pessimo") == ["!!! Pessimo"]


@pytest.mark.parametrize(
    "text",
    [
        "Ho parlato con il sig. Rossi e con la dott.ssa Bianchi del reparto.",
        "Prodotti vari, es. pasta e pizza, tutti buoni.",
        "Vedi p.es. la pag. 3 del contratto.",
        "Ordine n. 12345 e tel. 06 1234567 indicati.",
        "Frutta, verdura ecc. e anche dolci.",
        "Mr. Smith and Mrs. Jones met Dr. Who there.",
        "Some dishes, e.g. the pasta, i.e. the best part, etc. were cold.",
        "Team A vs. team B was fun.",
        "We sat at table No. 5 all night.",
    ],
)
def test_abbreviations_do_not_split(text: str) -> None:
    assert _texts(text) == [text]


def test_abbreviation_rules_that_depend_on_the_next_word() -> None:
    assert _texts("Pasta, pizza ecc. Il servizio era lento.") == ["Pasta, pizza ecc.", "Il servizio era lento."]
    assert _texts("No. I did not like it.") == ["No.", "I did not like it."]


@pytest.mark.parametrize(
    "text",
    [
        "Ho pagato € 12.50 per un caffè.",
        "Rated 3.5 stars out of 5.",
        "Prezzo 1.299,00 euro, troppo.",
        "Scrivete a info@hotel-roma.it per info.",
        "Vedi www.example.com/pagina.html per i dettagli.",
        "Link https://example.com/faq?id=3!x=1 non funziona.",
    ],
)
def test_decimals_prices_urls_and_emails_do_not_split(text: str) -> None:
    assert _texts(text) == [text]


def test_newlines_and_bullets() -> None:
    text = "Pro:\n- camera pulita\n- staff gentile\n\nContro:\n1. colazione scarsa\n2) parcheggio caro\n• wifi lento"
    assert _texts(text) == [
        "Pro:", "camera pulita", "staff gentile", "Contro:", "colazione scarsa", "parcheggio caro", "wifi lento",
    ]
    assert _texts("senza punto finale\ne un'altra riga") == ["senza punto finale", "e un'altra riga"]


def test_emoji_stay_with_their_sentence() -> None:
    assert _texts("Grazie mille! 👍 Alla prossima. ❤️") == ["Grazie mille! 👍", "Alla prossima. ❤️"]
    assert _texts("Ottimo servizio 😍😍 Tornerò presto") == ["Ottimo servizio 😍😍", "Tornerò presto"]
    assert _texts("La pizza 🍕 era buona") == ["La pizza 🍕 era buona"]
    assert _texts("Great :) Will come back") == ["Great :)", "Will come back"]


def test_ellipsis() -> None:
    assert _texts("Il servizio... beh, poteva andare meglio.") == ["Il servizio... beh, poteva andare meglio."]
    assert _texts("Aspettavo di meglio… Comunque grazie.") == ["Aspettavo di meglio…", "Comunque grazie."]
    assert _texts("Hmm... Not great.") == ["Hmm...", "Not great."]


def test_quotes_close_the_sentence() -> None:
    assert _texts('Ha detto "basta." Poi è andato via.') == ['Ha detto "basta."', "Poi è andato via."]


# ----------------------------------------------------------------- windows
LONG = (
    "La camera era pulita e spaziosa. Il personale è stato gentile!\n"
    "- colazione scarsa\n- parcheggio caro\n"
    + "Una frase molto lunga " * 12
    + "fine.\n"
    + "x" * 70
    + " Ultima frase?"
)


def _pieces_cover_spans(text: str, spans: list[Span], windows: list[Span]) -> None:
    """Every non-space character of every sentence lies in exactly one window."""
    for s in spans:
        for p in range(s.offset, s.end):
            if not text[p].isspace():
                assert sum(w.offset <= p < w.end for w in windows) == 1, (p, text[p])


@pytest.mark.parametrize("max_chars", [1, 7, 20, 40, 64, 100, 1000])
def test_windows_never_drop_text(max_chars: int) -> None:
    spans = split_sentences(LONG)
    for source in (None, LONG):
        windows = window_spans(spans, max_chars, source=source)
        _pieces_cover_spans(LONG, spans, windows)
        for w in windows:
            assert 0 < len(w.text) <= max_chars
        if source is not None:
            assert all(LONG[w.offset : w.end] == w.text for w in windows)
        else:  # the sentences themselves, joined by single spaces
            assert "".join("".join(w.text.split()) for w in windows) == "".join("".join(s.text.split()) for s in spans)
        assert [w.offset for w in windows] == sorted(w.offset for w in windows)


def test_windows_group_sentences_and_cut_long_ones_at_whitespace() -> None:
    spans = split_sentences(LONG)
    windows = window_spans(spans, 64, source=LONG)
    assert windows[0].text == "La camera era pulita e spaziosa. Il personale è stato gentile!"
    long_sentence = next(s for s in spans if s.text.startswith("Una frase"))
    cut = [w for w in windows if long_sentence.offset <= w.offset < long_sentence.end]
    assert len(cut) > 1
    assert all(not w.text.startswith(" ") and w.text.split()[0] in {"Una", "frase", "molto", "lunga", "fine."}
               for w in cut)  # cut between words, never inside one
    assert window_spans(spans, 10_000, source=LONG) == [Span(spans[0].offset, spans[-1].end - spans[0].offset,
                                                             LONG[spans[0].offset : spans[-1].end])]


def test_windows_without_source_join_sentences() -> None:
    spans = split_sentences("Uno.\n\nDue.   Tre.")
    assert [w.text for w in window_spans(spans, 9)] == ["Uno. Due.", "Tre."]
    with pytest.raises(ValueError):
        window_spans(spans, 0)


def test_a_word_longer_than_the_window_is_cut_hard() -> None:
    text = "a" * 25
    windows = window_spans(split_sentences(text), 10, source=text)
    assert [w.text for w in windows] == ["a" * 10, "a" * 10, "a" * 5]
    assert [w.offset for w in windows] == [0, 10, 20]
