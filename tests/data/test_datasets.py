"""Label derivation of every loader, on the real-row fixtures in tests/fixtures/data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from voce.data import datasets as data
from voce.data.datasets import Example

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"


def by_uid(examples: list[Example]) -> dict[str, Example]:
    return {ex.uid: ex for ex in examples}


@pytest.fixture(scope="module")
def loaded() -> dict[str, list[Example]]:
    return data.load_all(FIXTURES)


# ------------------------------------------------------------------ data dir / generic


def test_resolve_data_dir_prefers_argument_then_env_then_shared(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "env"))
    assert data.resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert data.resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv(data.DATA_DIR_ENV)
    assert data.resolve_data_dir() == data.repo_root().parent / "shared" / "data"


def test_env_var_is_used_by_loaders(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(data.DATA_DIR_ENV, str(FIXTURES))
    assert len(data.load_sentipolc()) == 7


def test_missing_data_dir_names_the_env_var(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=data.DATA_DIR_ENV):
        data.load_absita(tmp_path)


def test_load_all_covers_every_dataset_with_unique_uids(loaded: dict[str, list[Example]]) -> None:
    assert list(loaded) == list(data.DATASETS)
    everything = [ex for rows in loaded.values() for ex in rows]
    assert len({ex.uid for ex in everything}) == len(everything)
    for name, rows in loaded.items():
        assert rows, name
        assert all(ex.source == name and ex.uid.startswith(f"{name}:") for ex in rows)
        assert all(ex.sentiment in (*data.SENTIMENTS, None) for ex in rows)
        assert all(ex.nps_detractor in (0, 1, None) for ex in rows)
        assert all(ex.topics is None or set(ex.topics.values()) <= set(data.SENTIMENTS) for ex in rows)


def test_languages(loaded: dict[str, list[Example]]) -> None:
    expected = {data.SENTIPOLC: "it", data.ABSITA: "it", data.ATE_ABSITA: "it", data.SEMEVAL: "en", data.AIRLINE: "en"}
    for name, rows in loaded.items():
        assert {ex.language for ex in rows} == {expected[name]}


def test_load_dataset_rejects_unknown_name() -> None:
    with pytest.raises(KeyError):
        data.load_dataset("imdb", FIXTURES)


def test_dataset_paths_point_at_every_file() -> None:
    paths = data.dataset_paths(FIXTURES)
    assert len(paths) == 6 and all(p.is_file() for p in paths)


# ------------------------------------------------------------------------ aggregation


@pytest.mark.parametrize(
    ("polarities", "expected"),
    [
        ([], None),
        (["neutral"], "neutral"),
        (["neutral", "neutral"], "neutral"),
        (["positive", "neutral"], "positive"),
        (["negative", "neutral"], "negative"),
        (["positive", "negative"], "mixed"),
        (["mixed"], "mixed"),
        (["mixed", "positive"], "mixed"),
    ],
)
def test_combine_polarities(polarities: list[str], expected: str | None) -> None:
    assert data.combine_polarities(polarities) == expected


def test_combine_polarities_rejects_unknown() -> None:
    with pytest.raises(ValueError):
        data.combine_polarities(["conflict"])


def test_flags_to_polarity() -> None:
    assert data.flags_to_polarity(1, 0) == "positive"
    assert data.flags_to_polarity(0, 1) == "negative"
    assert data.flags_to_polarity(1, 1) == "mixed"
    assert data.flags_to_polarity(0, 0) == "neutral"


def test_topic_maps_use_voce_ids_and_cover_semeval() -> None:
    voce_ids = {
        "cleanliness", "comfort", "amenities", "staff", "price_value", "connectivity", "location", "other",
        "product_quality", "product_range", "ambience", "customer_service", "delays_cancellations",
        "luggage", "ordering_booking", "waiting_time",
    }  # fmt: skip
    used = set(data.ABSITA_TOPIC_MAP.values()) | set(data.SEMEVAL_TOPIC_MAP.values())
    used |= {t for t in data.AIRLINE_TOPIC_MAP.values() if t is not None}
    assert used <= voce_ids
    assert set(data.ABSITA_TOPIC_MAP) == set(data.ABSITA_ASPECTS)
    assert len(data.SEMEVAL_TOPIC_MAP) == 12
    assert data.AIRLINE_TOPIC_MAP["Can't Tell"] is None


# -------------------------------------------------------------------------- SENTIPOLC


def test_sentipolc_labels(loaded: dict[str, list[Example]]) -> None:
    rows = by_uid(loaded[data.SENTIPOLC])
    get = lambda tid: rows[f"sentipolc2016:{tid}"]  # noqa: E731
    assert get("125485104863780865").sentiment == "negative"  # 0 1
    assert get("125530285164072961").sentiment == "mixed"  # 1 1
    assert get("186520204845645824").sentiment == "positive"  # 1 0
    assert get("131669638168846336").sentiment == "neutral"  # 0 0, objective
    assert get("132054641390264320").sentiment == "neutral"  # 0 0 but subjective
    assert get("132054641390264320").raw["subj"] == 1
    ironic = get("125695266887184384")
    assert ironic.irony == 1 and ironic.sentiment == "negative"
    assert (ironic.raw["lpos"], ironic.raw["lneg"]) == (0, 1)  # literal polarity kept in raw
    assert get("125485104863780865").irony == 0
    for ex in rows.values():
        assert ex.topics is None and ex.stars is None and ex.nps_detractor is None
        assert ex.group == ex.raw["idtwitter"]


def test_sentipolc_unescapes_html_once_or_twice(loaded: dict[str, list[Example]]) -> None:
    rows = by_uid(loaded[data.SENTIPOLC])
    heart = rows["sentipolc2016:186520204845645824"]
    assert "<3" in heart.text and "&lt;" in heart.raw["text_original"]
    double = rows["sentipolc2016:196809168156491776"]
    assert "d'Italia" in double.text and "&amp;#039;" in double.raw["text_original"]


# ----------------------------------------------------------------------------- ABSITA


def test_absita_labels(loaded: dict[str, list[Example]]) -> None:
    rows = by_uid(loaded[data.ABSITA])
    get = lambda sid: rows[f"absita2018:{sid}"]  # noqa: E731
    assert get("1240343993").topics == {"comfort": "negative"}
    assert get("1240343993").sentiment == "negative"
    assert get("1240351476").topics == {"cleanliness": "positive", "comfort": "positive"}
    assert get("1240351476").sentiment == "positive"
    # positive on one aspect + negative on another = mixed sentence
    assert get("1240345146").topics == {"cleanliness": "negative", "comfort": "positive"}
    assert get("1240345146").sentiment == "mixed"
    # both flags on one aspect = mixed topic and sentence
    assert get("1240346479").topics == {"staff": "mixed"}
    assert get("1240346479").sentiment == "mixed"
    assert get("1240348214").topics == {"price_value": "positive"}
    assert get("1240344515").topics == {"connectivity": "negative"}
    assert get("1240349252").topics == {"location": "positive"}
    assert get("1240346935").topics == {"other": "negative"}
    # no aspect annotated: labelled with no topic, sentiment unknown
    assert get("1240344343").topics == {}
    assert get("1240344343").sentiment is None
    assert get("1240346479").raw["aspects"]["staff"] == {"presence": 1, "positive": 1, "negative": 1}
    for ex in rows.values():
        assert ex.group == ex.raw["sentence_id"] and ex.nps_detractor is None


def _write_absita(tmp_path: Path, cells: dict[str, int], sentence: str = "Camera ok.") -> Path:
    header = ["sentence_id"] + [f"{a}_{k}" for a in data.ABSITA_ASPECTS for k in ("presence", "positive", "negative")]
    values = ["1"] + [str(cells.get(h, 0)) for h in header[1:]]
    quoted = ";".join(f'"{h}"' for h in [*header, "sentence"])
    (tmp_path / "absita2018").mkdir()
    (tmp_path / "absita2018" / "train.csv").write_text(f'{quoted}\n{";".join(values)};"{sentence}"\n', encoding="utf-8")
    return tmp_path


def test_absita_presence_without_polarity_is_neutral(tmp_path: Path) -> None:
    (ex,) = data.load_absita(_write_absita(tmp_path, {"comfort_presence": 1}))
    assert ex.topics == {"comfort": "neutral"} and ex.sentiment == "neutral"


def test_absita_flags_without_presence_are_ignored(tmp_path: Path) -> None:
    (ex,) = data.load_absita(_write_absita(tmp_path, {"staff_positive": 1}))
    assert ex.topics == {} and ex.sentiment is None


def test_absita_rejects_non_flag_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="0/1"):
        data.load_absita(_write_absita(tmp_path, {"staff_presence": 2}))


def test_absita_flag_matrix(loaded: dict[str, list[Example]]) -> None:
    rows = loaded[data.ABSITA]
    matrix = data.absita_flag_matrix(rows)
    assert len(matrix) == len(rows) and all(len(r) == 8 and all(len(c) == 3 for c in r) for r in matrix)
    staff = data.ABSITA_ASPECTS.index("staff")
    i = [ex.uid for ex in rows].index("absita2018:1240346479")
    assert matrix[i][staff] == [1, 1, 1]


# ---------------------------------------------------------------------------- SemEval


def test_semeval_labels(loaded: dict[str, list[Example]]) -> None:
    rows = by_uid(loaded[data.SEMEVAL])
    get = lambda sid: rows[f"semeval2016_restaurants_en:{sid}"]  # noqa: E731
    # in scope, no Opinions element: labelled "no topic", sentiment unknown
    assert get("378848:0").topics == {} and get("378848:0").sentiment is None
    # one category positive and negative (two opinions on "sushi")
    assert get("378848:1").topics == {"product_quality": "mixed"}
    assert get("378848:1").sentiment == "mixed"
    assert get("378848:1").raw["categories"] == {"FOOD#QUALITY": "mixed"}
    # only a neutral opinion
    assert get("378848:2").topics == {"other": "neutral"} and get("378848:2").sentiment == "neutral"
    assert get("378848:2").raw["opinions"][0]["target"] is None  # "NULL"
    assert get("378848:3").topics == {"ambience": "positive", "product_quality": "positive", "staff": "positive"}
    # OutOfScope: not annotated at all
    oos = get("1041457:5")
    assert oos.raw["out_of_scope"] is True and oos.topics is None and oos.sentiment is None
    assert get("1041457:6").topics == {"ambience": "mixed"}
    # FOOD#QUALITY positive + DRINKS#QUALITY neutral land on one topic: neutral is absorbed
    assert get("P#7:3").topics == {"product_quality": "positive"}
    assert get("P#7:3").raw["categories"] == {"DRINKS#QUALITY": "neutral", "FOOD#QUALITY": "positive"}


def test_semeval_groups_are_reviews(loaded: dict[str, list[Example]]) -> None:
    groups = {ex.uid.split(":", 1)[1]: ex.group for ex in loaded[data.SEMEVAL]}
    assert groups["378848:0"] == groups["378848:3"] == "378848"
    assert groups["P#7:3"] == "P#7"


def test_semeval_unknown_category_raises(tmp_path: Path) -> None:
    (tmp_path / "semeval2016_restaurants_en").mkdir()
    (tmp_path / "semeval2016_restaurants_en" / "train.xml").write_text(
        '<Reviews><Review rid="1"><sentences><sentence id="1:0"><text>Nice.</text><Opinions>'
        '<Opinion target="NULL" category="LAPTOP#GENERAL" polarity="positive" from="0" to="0"/>'
        "</Opinions></sentence></sentences></Review></Reviews>",
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match="LAPTOP#GENERAL"):
        data.load_semeval_restaurants(tmp_path)


# ---------------------------------------------------------------------------- Airline


def test_airline_labels(loaded: dict[str, list[Example]]) -> None:
    rows = by_uid(loaded[data.AIRLINE])
    get = lambda uid: rows[f"twitter_airline_en:{uid}"]  # noqa: E731
    neutral = get("570306133677760513")
    assert neutral.sentiment == "neutral" and neutral.topics is None and neutral.nps_detractor is None
    positive = get("570301130888122368")
    assert positive.sentiment == "positive" and positive.topics is None and positive.nps_detractor == 0
    assert get("570088404156698625").topics == {"customer_service": "negative"}
    assert get("569996412286582784").topics == {"ordering_booking": "negative"}
    assert get("569964915710038016").topics == {"delays_cancellations": "negative"}
    assert get("569213503954915329").topics == {"waiting_time": "negative"}
    assert get("568606225027485696").topics == {"luggage": "negative"}
    cant_tell = get("568853685855334400")
    assert cant_tell.topics == {} and cant_tell.raw["negativereason"] == "Can't Tell"
    assert all(ex.nps_detractor == 1 for ex in rows.values() if ex.sentiment == "negative")


def test_airline_duplicate_ids_share_a_group(loaded: dict[str, list[Example]]) -> None:
    rows = by_uid(loaded[data.AIRLINE])
    first = rows["twitter_airline_en:570307312675651585"]
    second = rows["twitter_airline_en:570307312675651585~1"]
    assert first.group == second.group == "570307312675651585"
    # the two annotations disagree; both are kept as they are
    assert (first.sentiment, second.sentiment) == ("positive", "negative")
    assert second.topics == {"delays_cancellations": "negative"}
    assert (first.raw["occurrence"], second.raw["occurrence"]) == (0, 1)


def test_airline_unescapes_html(loaded: dict[str, list[Example]]) -> None:
    rows = by_uid(loaded[data.AIRLINE])
    suitcase = rows["twitter_airline_en:568606225027485696"]
    assert "suitcase & refuses" in suitcase.text and "&amp;" in suitcase.raw["text_original"]
    assert "LGA->DAL" in rows["twitter_airline_en:569996412286582784"].text


def test_airline_unmapped_reason_raises(tmp_path: Path) -> None:
    (tmp_path / "twitter_airline_en").mkdir()
    src = (FIXTURES / "twitter_airline_en" / "train.csv").read_text(encoding="utf-8")
    (tmp_path / "twitter_airline_en" / "train.csv").write_text(
        src.replace("Damaged Luggage", "Rude Pilot"), encoding="utf-8"
    )
    with pytest.raises(ValueError, match="Rude Pilot"):
        data.load_airline(tmp_path)


# ------------------------------------------------------------------------- ATE_ABSITA


def test_ate_stars_and_detractor(loaded: dict[str, list[Example]]) -> None:
    rows = loaded[data.ATE_ABSITA]
    assert {ex.stars for ex in rows} == {1, 2, 3, 4, 5}
    for ex in rows:
        assert ex.nps_detractor == (1 if ex.stars is not None and ex.stars <= 3 else 0)
        assert ex.topics is None and ex.raw["split"] == "train"


def test_ate_sentence_sentiment_from_aspects_not_stars(loaded: dict[str, list[Example]]) -> None:
    rows = by_uid(loaded[data.ATE_ABSITA])
    get = lambda rid: rows[f"ate_absita2020:{rid}"]  # noqa: E731
    assert get("4df74765-d392-4368-95a9-9738a8b7385f").sentiment == "negative"  # 1 star, [0,1] x2
    assert get("4c66afd6-fcb6-424c-85ee-cfc88ae075e1").sentiment == "positive"  # 4 stars
    assert get("4df19030-9c6b-428f-b01a-30f1eef6bacd").sentiment == "mixed"  # 3 stars, pos + neg
    assert get("4c467eca-a515-4c94-8981-69d2cca28223").sentiment == "mixed"  # [1,0] + [1,1]
    assert get("5fc214ae-cf10-4ef7-84b2-efd2c0c7cf50").sentiment == "neutral"  # only [0,0]
    assert get("4b7254a1-3f31-4143-ab22-a8558aa4a73b").sentiment == "mixed"  # [0,0] [0,1] [1,0]
    assert get("e632426e-e031-4cab-827e-d95a547619bb").sentiment == "positive"  # [1,0] + [0,0]
    no_aspects = get("4c4d8946-7e44-4de3-bfd4-aa039c8f2d1c")
    assert no_aspects.sentiment is None and no_aspects.stars == 1 and no_aspects.nps_detractor == 1


def test_ate_spans_are_repaired(loaded: dict[str, list[Example]]) -> None:
    rows = by_uid(loaded[data.ATE_ABSITA])
    for ex in rows.values():
        for a in ex.raw["aspects"]:
            assert ex.text[a["start"] : a["end"]] == a["term"], (ex.uid, a)
    emoji = rows["ate_absita2020:62f6652a-6d86-485d-b073-7cefdf227039"].raw["aspects"]
    fixed = [a for a in emoji if a["term"] == "funziona"][0]
    assert fixed["span_fix"] == "utf16" and fixed["start_original"] == fixed["start"] + 1
    wrong = rows["ate_absita2020:e632426e-e031-4cab-827e-d95a547619bb"].raw["aspects"]
    assert [a["span_fix"] for a in wrong] == ["ok", "searched"]


def test_ate_official_dev_is_separate() -> None:
    dev = data.load_ate_absita("dev", FIXTURES)
    assert len(dev) == 2 and all(ex.raw["split"] == "dev" for ex in dev)
    train_uids = {ex.uid for ex in data.load_ate_absita("train", FIXTURES)}
    assert not train_uids & {ex.uid for ex in dev}
    assert by_uid(dev)["ate_absita2020:003d8e3b-fefc-4b08-a70f-7ebeeb89e2bc"].sentiment is None


def test_ate_rejects_bad_split_and_score(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        data.load_ate_absita("test", FIXTURES)  # type: ignore[arg-type]
    (tmp_path / "ate_absita2020").mkdir()
    shutil.copy(FIXTURES / "ate_absita2020" / "dev.ndjson", tmp_path / "ate_absita2020" / "dev.ndjson")
    (tmp_path / "ate_absita2020" / "train.ndjson").write_text(
        '{"sentence":"x","id_sentence":"a","score":6,"polarities":[],"aspects_position":[],"aspects":[]}\n',
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match="score"):
        data.load_ate_absita("train", tmp_path)


def test_examples_are_frozen(loaded: dict[str, list[Example]]) -> None:
    ex = loaded[data.SENTIPOLC][0]
    with pytest.raises(AttributeError):
        ex.text = "changed"  # type: ignore[misc]
