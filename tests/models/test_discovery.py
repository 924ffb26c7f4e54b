"""Topic discovery on synthetic embeddings: bilingual merging, reproducibility, outliers, labels, taxonomy mapping.

The vectors imitate what multilingual e5 does to a bilingual batch: each
comment is its theme's direction plus a strong per-language offset plus noise,
so without centering the nearest neighbours are same-language comments and
every theme splits in two.  No encoder runs here (the real-encoder measurement
is ``eval/bench_discovery.py``).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

from voce.models.discovery import (
    MIN_DOCS,
    DiscoveryResult,
    balancing_topics,
    center_by_language,
    discover_topics,
    normalize_language,
    reassign_outliers,
    resolve_min_topic_size,
    stopwords,
    taxonomy_topic_labels,
)
from voce.models.taxonomy import default_taxonomy

DIM = 384
PER_LANGUAGE = 20
N_NOISE = 24
SEED = 13

#: theme -> (taxonomy id, Italian vocabulary, English vocabulary)
THEMES: dict[str, tuple[str, list[str], list[str]]] = {
    "rooms": (
        "cleanliness",
        ["camera", "sporca", "bagno", "lenzuola", "polvere"],
        ["room", "dirty", "bathroom", "sheets", "dust"],
    ),
    "delivery": (
        "delivery",
        ["consegna", "pacco", "corriere", "ritardo", "spedizione"],
        ["delivery", "parcel", "courier", "late", "shipping"],
    ),
    "price": (
        "price_value",
        ["prezzo", "caro", "costo", "sconto", "tariffa"],
        ["price", "expensive", "cost", "discount", "fare"],
    ),
    "staff": (
        "staff",
        ["personale", "gentile", "cortese", "cameriere", "sorriso"],
        ["staff", "friendly", "polite", "waiter", "smile"],
    ),
    "app": (
        "digital_experience",
        ["applicazione", "aggiornamento", "schermata", "accesso", "crash"],
        ["app", "update", "screen", "login", "crashes"],
    ),
    "wait": (
        "waiting_time",
        ["attesa", "coda", "fila", "aspettato", "sportello"],
        ["wait", "queue", "line", "waited", "counter"],
    ),
}
FILLER = {"it": ["il", "la", "era", "molto", "e", "non", "della"], "en": ["the", "was", "very", "and", "not", "of"]}


def make_batch(seed: int = 0) -> dict[str, Any]:
    """6 themes x 2 languages x 20 comments, plus 24 unrelated comments (pure noise vectors).

    Each theme is ~15 % of the batch, under the default 20 % topic cap.
    """
    rng = np.random.default_rng(seed)
    theme_vecs = rng.normal(size=(len(THEMES), DIM))
    lang_vecs = {"it": rng.normal(size=DIM), "en": rng.normal(size=DIM)}
    texts: list[str] = []
    vecs: list[np.ndarray] = []
    langs: list[str | None] = []
    assigned: list[list[str]] = []
    theme_of: list[str | None] = []
    for t, (theme, (tax_id, it_words, en_words)) in enumerate(THEMES.items()):
        for lang, words in (("it", it_words), ("en", en_words)):
            for i in range(PER_LANGUAGE):
                picked = list(rng.choice(words, size=3, replace=False)) + list(rng.choice(FILLER[lang], size=3))
                texts.append(" ".join(rng.permutation(picked)))
                vecs.append(theme_vecs[t] + 1.5 * lang_vecs[lang] + 0.6 * rng.normal(size=DIM))
                langs.append(lang)
                # the analyzer found the taxonomy topic in two comments out of three
                assigned.append([tax_id] if i % 3 else [])
                theme_of.append(theme)
    for i in range(N_NOISE):
        lang = "it" if i % 2 else "en"
        texts.append(f"{'varie cose diverse' if lang == 'it' else 'various unrelated things'} {i}")
        vecs.append(lang_vecs[lang] * 1.5 + 2.0 * rng.normal(size=DIM))
        langs.append(lang)
        assigned.append([])
        theme_of.append(None)
    matrix = np.asarray(vecs, dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return {"texts": texts, "embeddings": matrix, "languages": langs, "assigned": assigned, "theme": theme_of}


@pytest.fixture(scope="module")
def batch() -> dict[str, Any]:
    return make_batch()


@pytest.fixture(scope="module")
def labels() -> dict[str, str]:
    return taxonomy_topic_labels(default_taxonomy())


def _run(batch: dict[str, Any], labels: dict[str, str], **kwargs: Any) -> DiscoveryResult:
    return discover_topics(
        batch["texts"], batch["embeddings"], batch["languages"], assigned_topics=batch["assigned"], topic_labels=labels,
        seed=SEED, **kwargs,
    )  # fmt: skip


@pytest.fixture(scope="module")
def centered(batch: dict[str, Any], labels: dict[str, str]) -> DiscoveryResult:
    """The main run, under guards that make any attempt to load or download a model fail loudly."""
    assert os.environ.get("HF_HUB_OFFLINE") == "1"

    def refuse(*_a: Any, **_k: Any) -> None:
        raise AssertionError("topic discovery tried to load or download a model")

    with pytest.MonkeyPatch.context() as mp:
        import huggingface_hub
        import sentence_transformers

        mp.setattr(sentence_transformers.SentenceTransformer, "__init__", refuse)
        mp.setattr(huggingface_hub, "hf_hub_download", refuse)
        mp.setattr(huggingface_hub, "snapshot_download", refuse)
        return _run(batch, labels)


@pytest.fixture(scope="module")
def uncentered(batch: dict[str, Any], labels: dict[str, str]) -> DiscoveryResult:
    return _run(batch, labels, center_languages=False)


def _majority_topic(result: DiscoveryResult, batch: dict[str, Any], theme: str, lang: str) -> int:
    rows = [i for i, (t, g) in enumerate(zip(batch["theme"], batch["languages"], strict=True)) if t == theme and g == lang]
    values, counts = np.unique([result.assignments[i] for i in rows], return_counts=True)
    return int(values[counts.argmax()])


def test_centering_puts_both_languages_of_a_theme_in_one_topic(centered: DiscoveryResult, batch: dict[str, Any]) -> None:
    assert centered.language_centering is True
    topic_of_theme = {}
    for theme in THEMES:
        it_topic = _majority_topic(centered, batch, theme, "it")
        assert it_topic != -1 and it_topic == _majority_topic(centered, batch, theme, "en"), theme
        topic_of_theme[theme] = it_topic
    assert len(set(topic_of_theme.values())) == len(THEMES)  # and the themes stay apart
    # (UMAP may gather the unrelated comments into a miscellany topic of their own: that one is bilingual too)
    assert centered.bilingual_share == 1.0


def test_centering_is_balanced_over_the_assigned_topics(centered: DiscoveryResult) -> None:
    assert centered.centering_topics == sorted(tax for tax, _it, _en in THEMES.values())


def make_skewed_batch(seed: int = 3) -> dict[str, Any]:
    """3 themes; Italian customers mostly write about rooms, English ones about delivery; both a little about price."""
    rng = np.random.default_rng(seed)
    theme_vecs = rng.normal(size=(3, DIM))
    lang_vecs = {"it": rng.normal(size=DIM), "en": rng.normal(size=DIM)}
    mix = {"it": (70, 15, 15), "en": (15, 70, 15)}
    tax_ids = ("cleanliness", "delivery", "price_value")
    texts, vecs, langs, assigned, theme = [], [], [], [], []
    for lang, counts in mix.items():
        for t, count in enumerate(counts):
            for i in range(count):
                vecs.append(theme_vecs[t] + 1.5 * lang_vecs[lang] + 0.6 * rng.normal(size=DIM))
                texts.append(f"{lang} {tax_ids[t]} {i}")
                langs.append(lang)
                assigned.append([tax_ids[t]])
                theme.append(t)
    matrix = np.asarray(vecs, dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return {"texts": texts, "embeddings": matrix, "languages": langs, "assigned": assigned, "theme": theme}


def test_topic_balanced_centering_survives_skewed_language_mixes() -> None:
    """Plain language means also hold each language's topic mix; averaging per-topic means keeps only the language."""
    b = make_skewed_batch()

    def price_topics(balance: bool) -> tuple[set[int], set[int]]:
        res = discover_topics(
            b["texts"], b["embeddings"], b["languages"], assigned_topics=b["assigned"], seed=SEED,
            balance_centering=balance, max_topic_share=1.0,
        )  # fmt: skip
        rows = [i for i, t in enumerate(b["theme"]) if t == 2]
        return (
            {res.assignments[i] for i in rows if b["languages"][i] == "it"},
            {res.assignments[i] for i in rows if b["languages"][i] == "en"},
        )

    it_plain, en_plain = price_topics(False)
    assert not it_plain & en_plain  # the minority theme splits by language with plain means
    it_balanced, en_balanced = price_topics(True)
    assert it_balanced == en_balanced and -1 not in it_balanced


def test_balancing_topics_need_every_language() -> None:
    langs = ["it"] * 20 + ["en"] * 20 + ["fr"] * 2
    topics = [["staff"]] * 10 + [["price_value"]] * 10 + [["staff"]] * 6 + [["price_value"]] * 4 + [["other"]] * 10 + [[]] * 2
    # price_value has only 4 English comments and "fr" is too small to be centered on its own
    assert balancing_topics(langs, topics) == []
    topics[30:32] = [["price_value"], ["price_value"]]
    assert balancing_topics(langs, topics) == ["price_value", "staff"]
    assert balancing_topics(["it"] * 40, [["staff"]] * 40) == []  # one language: nothing to balance


def test_without_centering_languages_split_every_theme(uncentered: DiscoveryResult, batch: dict[str, Any]) -> None:
    """The failure the centering fixes: same theme, different language, different topic."""
    for theme in THEMES:
        assert _majority_topic(uncentered, batch, theme, "it") != _majority_topic(uncentered, batch, theme, "en"), theme
    assert uncentered.bilingual_share == 0.0


def test_same_seed_same_result(centered: DiscoveryResult, batch: dict[str, Any], labels: dict[str, str]) -> None:
    again = _run(batch, labels)
    assert again.assignments == centered.assignments
    assert again.model_dump(exclude={"seconds"}) == centered.model_dump(exclude={"seconds"})


def test_outliers_are_reassigned_down_to_the_cap(centered: DiscoveryResult, batch: dict[str, Any]) -> None:
    assert centered.outlier_share is not None and centered.outlier_share_before is not None
    assert centered.outlier_share <= 0.15
    assert centered.outlier_share <= centered.outlier_share_before
    assert centered.assignments.count(-1) == round(centered.outlier_share * len(batch["texts"]))
    # comments that belong to a theme end up in a topic
    themed = [a for a, t in zip(centered.assignments, batch["theme"], strict=True) if t is not None]
    assert themed.count(-1) / len(themed) <= 0.05


def test_reassign_outliers_respects_the_cap_and_keeps_members() -> None:
    rng = np.random.default_rng(1)
    centers = np.eye(4, 16, dtype=np.float32)
    vectors = np.vstack([centers[i % 4] + 0.05 * rng.normal(size=16) for i in range(40)] + [rng.normal(size=(60, 16))])
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    labels = np.array([i % 4 for i in range(40)] + [-1] * 60)
    for cap in (0.0, 0.15, 0.5, 1.0):
        out = reassign_outliers(vectors, labels, cap)
        assert (out[:40] == labels[:40]).all()
        assert np.mean(out == -1) <= cap + 1e-9
    assert (reassign_outliers(vectors, labels, 0.0) >= 0).all()


def test_topics_are_numbered_by_size(centered: DiscoveryResult) -> None:
    assert [t.id for t in centered.topics] == list(range(len(centered.topics)))
    sizes = [t.size for t in centered.topics]
    assert sizes == sorted(sizes, reverse=True)
    for t in centered.topics:
        assert centered.assignments.count(t.id) == t.size == sum(t.languages.values())


def test_keywords_in_both_languages_without_stopwords(centered: DiscoveryResult, batch: dict[str, Any]) -> None:
    stop = stopwords()
    for theme, (_tax, it_words, en_words) in THEMES.items():
        topic = centered.topics[_majority_topic(centered, batch, theme, "it")]
        assert 1 <= len(topic.keywords["it"]) <= 8 and 1 <= len(topic.keywords["en"]) <= 8
        assert set(topic.keywords["it"][:3]) <= set(it_words)
        assert set(topic.keywords["en"][:3]) <= set(en_words)
        assert not (set(topic.keywords["it"]) | set(topic.keywords["en"])) & stop
        # short labels: 1-3 theme words per language, the label itself in the topic's main language
        assert set(topic.labels) == {"it", "en"}
        it_label, en_label = topic.labels["it"].split(", "), topic.labels["en"].split(", ")
        assert 1 <= len(it_label) <= 3 and 1 <= len(en_label) <= 3
        assert {w for term in it_label for w in term.split()} <= set(it_words)
        assert {w for term in en_label for w in term.split()} <= set(en_words)
        assert topic.label in (topic.labels["it"], topic.labels["en"])


def test_the_label_is_in_the_analysts_language(batch: dict[str, Any], labels: dict[str, str]) -> None:
    for lang in ("it", "en"):
        result = _run(batch, labels, label_language=lang)
        themed = [t for t in result.topics if t.languages.get(lang)]
        assert themed
        for topic in themed:
            assert topic.label == topic.labels[lang]


def test_stopwords_per_language() -> None:
    it, en, both = stopwords("it"), stopwords("en"), stopwords()
    assert {"della", "sono", "anche"} <= it and not {"della", "sono"} & en
    assert {"the", "were", "which"} <= en and not {"the", "were"} & it
    assert it | en == both


def test_short_labels_skip_placeholders_and_words_inside_a_chosen_phrase() -> None:
    from voce.models.discovery import short_labels

    rng = np.random.default_rng(3)
    texts = [f"consegna rapida del pacco, <EMAIL> scrive {w}" for w in ("oggi", "ieri", "sempre", "mai", "ancora", "poi")]
    texts += [f"operatore del call center gentile con <NAME> {w}" for w in ("oggi", "ieri", "sempre", "mai", "ancora", "poi")]
    labels = np.asarray([0] * 6 + [1] * 6, dtype=np.int64)
    centres = rng.normal(size=(2, DIM))
    vecs = np.asarray([centres[t] + 0.1 * rng.normal(size=DIM) for t in labels], np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    short = short_labels(texts, vecs, labels, ["it"] * 12, 2)
    for topic in short:
        terms = topic["it"]
        assert terms and not {w for t in terms for w in t.split()} & {"email", "name"}
        for a in terms:  # no term inside another chosen one
            assert not any(a != b and a in b.split() for b in terms)
    assert any("consegna" in t for t in short[0]["it"]) and any("operatore" in t or "call" in t for t in short[1]["it"])


def test_representative_comments(centered: DiscoveryResult, batch: dict[str, Any]) -> None:
    for topic in centered.topics:
        assert len(topic.representative) == 3
        for doc in topic.representative:
            assert centered.assignments[doc.index] == topic.id
            assert doc.text == batch["texts"][doc.index]


def test_topics_map_to_the_taxonomy(centered: DiscoveryResult, batch: dict[str, Any]) -> None:
    for theme, (tax_id, _it, _en) in THEMES.items():
        topic = centered.topics[_majority_topic(centered, batch, theme, "it")]
        assert topic.taxonomy_topic == tax_id
        assert topic.taxonomy_share is not None and 0.5 <= topic.taxonomy_share <= 0.75
    staff = next(t for t in centered.topics if t.taxonomy_topic == "staff")
    assert staff.taxonomy_label == "Personale / Staff"


def test_without_assignments_there_is_no_mapping(batch: dict[str, Any]) -> None:
    result = discover_topics(batch["texts"], batch["embeddings"], batch["languages"], seed=SEED)
    assert all(t.taxonomy_topic is None and t.taxonomy_share is None for t in result.topics)


def test_small_batches_return_a_note_instead_of_topics() -> None:
    small = make_batch()
    n = MIN_DOCS - 1
    result = discover_topics(small["texts"][:n], small["embeddings"][:n], small["languages"][:n])
    assert result.topics == [] and result.assignments == [-1] * n
    assert result.note and str(MIN_DOCS) in result.note
    assert result.outlier_share is None and result.bilingual_share is None
    empty = discover_topics([], np.zeros((0, DIM), dtype=np.float32), [])
    assert empty.n_docs == 0 and empty.topics == []


def test_inputs_are_validated(batch: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="embeddings"):
        discover_topics(batch["texts"], batch["embeddings"][:-1], batch["languages"])
    with pytest.raises(ValueError, match="languages"):
        discover_topics(batch["texts"], batch["embeddings"], batch["languages"][:-1])
    with pytest.raises(ValueError, match="assigned_topics"):
        discover_topics(batch["texts"], batch["embeddings"], batch["languages"], assigned_topics=[[]])


def test_result_is_json_round_trippable(centered: DiscoveryResult) -> None:
    assert DiscoveryResult.model_validate_json(centered.model_dump_json()) == centered


def test_the_bertopic_embedder_never_encodes() -> None:
    from voce.models.discovery import _no_embedder

    with pytest.raises(RuntimeError, match="never encodes"):
        _no_embedder().embed(["ciao"])


def test_centering_uses_the_global_mean_for_rare_languages() -> None:
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(50, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    langs = ["it"] * 30 + ["en"] * 17 + ["fr"] * 3
    out = center_by_language(vectors, langs)
    it_mean = vectors[:30].mean(axis=0)
    expected_it = (vectors[:30] - it_mean) / np.linalg.norm(vectors[:30] - it_mean, axis=1, keepdims=True)
    np.testing.assert_allclose(out[:30], expected_it, atol=1e-5)
    global_mean = vectors.mean(axis=0)
    expected_fr = (vectors[47:] - global_mean) / np.linalg.norm(vectors[47:] - global_mean, axis=1, keepdims=True)
    np.testing.assert_allclose(out[47:], expected_fr, atol=1e-5)


def test_small_helpers() -> None:
    assert [normalize_language(c) for c in ("it-IT", "EN", "it_ch", None, "")] == ["it", "en", "it", "und", "und"]
    assert resolve_min_topic_size(300, None) == 5
    assert resolve_min_topic_size(20_000, None) == 50
    assert resolve_min_topic_size(30, 40) == 15
    assert {"della", "the", "dell"} <= stopwords()
    assert "bill" not in stopwords()


def test_redaction_placeholders_never_become_keywords() -> None:
    """A redacted batch stores ``<EMAIL>``/``<NAME>``; their letters must not turn into topic keywords."""
    from voce.models.discovery import _keywords_by_language

    texts = [f"scrivetemi a <EMAIL> o chiamate <PHONE>, consegna {i} in ritardo" for i in range(6)]
    texts += [f"<NAME> del call center gentilissima, operatore {i} competente" for i in range(6)]
    labels = np.asarray([0] * 6 + [1] * 6, dtype=np.int64)
    keywords = _keywords_by_language(texts, labels, ["it"] * 12, 2)
    words = {w for topic in keywords for w in topic["it"]}
    assert words, "keywords were found"
    assert not words & {"email", "phone", "name"}
    assert "consegna" in keywords[0]["it"] and "operatore" in keywords[1]["it"]


@pytest.mark.slow
def test_in_a_child_process_the_same_topics(batch: dict[str, Any], labels: dict[str, str],
                                            centered: DiscoveryResult) -> None:
    """What the service runs (VOCE_DISCOVERY_PROCESS=child): a spawned process, the same result as in process."""
    from voce.models.discovery import discover_topics_in_child

    apart = discover_topics_in_child(batch["texts"], batch["embeddings"], batch["languages"],
                                     assigned_topics=batch["assigned"], topic_labels=labels, seed=SEED)
    assert apart.assignments == centered.assignments
    assert [t.label for t in apart.topics] == [t.label for t in centered.topics]


@pytest.mark.slow
def test_a_child_that_dies_is_a_clear_error(batch: dict[str, Any], labels: dict[str, str]) -> None:
    """The discovery process killed (the kernel's OOM killer, an operator): DiscoveryProcessDied, not a hang."""
    import contextlib
    import threading
    import time

    import psutil

    from voce.models.discovery import DiscoveryProcessDied, discover_topics_in_child

    outcome: list[BaseException | DiscoveryResult] = []

    def run() -> None:
        try:
            outcome.append(discover_topics_in_child(batch["texts"], batch["embeddings"], batch["languages"],
                                                    topic_labels=labels, seed=SEED))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 60
    killed = False
    while not killed and time.monotonic() < deadline:
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):  # a process that ended meanwhile
                if "spawn_main" in " ".join(child.cmdline()):
                    child.kill()
                    killed = True
        time.sleep(0.05)
    thread.join(timeout=60)
    assert killed and len(outcome) == 1
    assert isinstance(outcome[0], DiscoveryProcessDied), outcome[0]
    assert "out of memory" in str(outcome[0])


@pytest.mark.slow
def test_a_large_batch_in_a_child_finishes() -> None:
    """20,000 comments in the child process: HDBSCAN's joblib workers, started from the child, deadlocked there
    (every process idle) until the child ran joblib in process; now it finishes, with the themes of the data."""
    import threading

    from voce.models.discovery import discover_topics_in_child

    rng = np.random.default_rng(0)
    n, themes = 20_000, 20
    centers = rng.normal(size=(themes, DIM))
    theme = rng.integers(0, themes, n)
    vecs = (centers[theme] + 0.5 * rng.normal(size=(n, DIM))).astype(np.float32)
    words = ["consegna", "prezzo", "personale", "attesa", "app", "rimborso", "bolletta", "negozio", "corriere", "sito"]
    texts = [f"{words[t % 10]} {words[(t * 3 + 1) % 10]} commento {i % 97}" for i, t in enumerate(theme)]
    langs: list[str | None] = ["it" if i % 2 else "en" for i in range(n)]
    out: list[DiscoveryResult] = []
    worker = threading.Thread(target=lambda: out.append(discover_topics_in_child(texts, vecs, langs, seed=SEED)),
                              daemon=True)
    worker.start()
    worker.join(timeout=300)
    assert out, "topic discovery in the child process did not finish within 300 s"
    assert len(out[0].topics) == themes


def test_keywords_when_a_language_has_one_word_left() -> None:
    """A language whose comments come down to one word after stop words (a batch whose English part is all
    "thanks"): that word is the keyword, not a crash of c-TF-IDF (its IDF would be a scalar)."""
    from voce.models.discovery import _keywords_by_language

    texts = ["thanks", "thanks!", "consegna lenta", "prezzo alto", "consegna veloce"]
    labels = np.asarray([0, 1, 0, 1, 0], dtype=np.int64)
    out = _keywords_by_language(texts, labels, ["en", "en", "it", "it", "it"], 2)
    assert out[0]["en"] == ["thanks"] and out[1]["en"] == ["thanks"]
    assert "consegna" in out[0]["it"] and "prezzo" in out[1]["it"]
