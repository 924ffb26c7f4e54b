"""Column roles guessed with evidence in the values (issue 17 item 4), the mapping summary the page shows before
the analysis starts, and the row warnings' codes.

The column sets are shaped like the exports the issue describes (an Italian survey export with a 'Tipo cliente'
column, a star-rated review export, an English survey tool's export); the cell values are made up for the shape
only, never used as labelled text.
"""
from __future__ import annotations

import pytest

from voce.service.uploads import (
    ROW_WARNINGS,
    ColumnMapping,
    classify_warning,
    error_params,
    guess_mapping,
    language_code,
    mapping_summary,
    prepare_row,
    profile_columns,
    row_warning,
)


def _italian_survey(n: int = 40) -> tuple[list[str], list[dict[str, str]]]:
    cols = ["ID risposta", "Data", "Commento", "Voto", "Canale", "Tipo cliente", "Negozio"]
    rows = []
    for i in range(n):
        rows.append({
            "ID risposta": f"R{1000 + i}", "Data": f"{1 + i % 28:02d}/0{1 + i % 3}/2026",
            "Commento": f"Consegna arrivata {'in ritardo' if i % 3 else 'puntuale'}, commento numero {i}",
            "Voto": str(12 if i % 10 == 0 else i % 11), "Canale": ["email", "app", "negozio"][i % 3],
            "Tipo cliente": "Fidelity" if i % 2 else "Standard", "Negozio": f"Milano {i % 4}",
        })
    return cols, rows


def test_tipo_cliente_is_a_segment_not_the_kind_role() -> None:
    cols, rows = _italian_survey()
    m = guess_mapping(cols, rows)
    assert m is not None
    assert m.kind is None  # Fidelity/Standard are not comment/chat: the name 'tipo' alone gives no role
    assert "Tipo cliente" in m.segments and "Negozio" in m.segments
    assert (m.text, m.id, m.date, m.nps, m.channel) == ("Commento", "ID risposta", "Data", "Voto", "Canale")
    # no row of the file gets the "'Fidelity' is not 'comment' or 'chat'" warning any more
    assert all(not prepare_row(i, r, m).warnings or "kind" not in prepare_row(i, r, m).warnings[0]
               for i, r in enumerate(rows))


def test_a_tipo_column_of_comment_and_chat_values_is_the_kind() -> None:
    rows = [{"Testo": f"Il cliente scrive la richiesta numero {i}", "Tipo": ["commento", "chat"][i % 2]}
            for i in range(10)]
    m = guess_mapping(["Testo", "Tipo"], rows)
    assert m is not None and m.kind == "Tipo" and m.segments == []
    # and from the values alone, whatever the column is called
    rows2 = [{"text": r["Testo"], "Fonte dati": ["comment", "chat"][i % 2]} for i, r in enumerate(rows)]
    m2 = guess_mapping(["text", "Fonte dati"], rows2)
    assert m2 is not None and m2.kind == "Fonte dati"


def test_names_whose_values_contradict_them_get_no_role() -> None:
    rows = [{"Recensione": f"Prodotto arrivato {i} giorni dopo, imballo rovinato", "Data": "n/d" if i % 2 else "boh",
             "Score": ["alto", "basso"][i % 2], "Lingua": "qualsiasi cosa scritta qui", "ID": "A1"}
            for i in range(12)]
    m = guess_mapping(["Recensione", "Data", "Score", "Lingua", "ID"], rows)
    assert m is not None and m.text == "Recensione"
    assert m.date is None and m.nps is None and m.language is None
    assert m.id is None  # one value repeated twelve times is no row id
    assert "Score" in m.segments  # alto/basso: a breakdown, not a 0-10 answer


def test_star_ratings_are_csat_and_a_0_10_voto_is_nps() -> None:
    stars = [{"Recensione": f"Buon prodotto, lo consiglio {i}", "Voto": str(1 + i % 5)} for i in range(20)]
    m = guess_mapping(["Recensione", "Voto"], stars)
    assert m is not None and m.csat == "Voto" and m.nps is None
    zero_ten = [{"Recensione": r["Recensione"], "Voto": str(i % 11)} for i, r in enumerate(stars)]
    m2 = guess_mapping(["Recensione", "Voto"], zero_ten)
    assert m2 is not None and m2.nps == "Voto" and m2.csat is None


def test_english_survey_tool_export() -> None:
    cols = ["ResponseId", "RecordedDate", "Q1_recommend", "Q2_comment", "Region", "UserLanguage", "Duration"]
    rows = [{"ResponseId": f"R_{i:05x}", "RecordedDate": f"2026-03-{1 + i % 28:02d} 10:{i % 60:02d}:00",
             "Q1_recommend": str(i % 11), "Q2_comment": f"The staff was helpful but the queue was long ({i})",
             "Region": ["North", "South", "Centre"][i % 3], "UserLanguage": ["EN", "IT"][i % 2],
             "Duration": str(100 + 7 * i)} for i in range(30)]
    m = guess_mapping(cols, rows)
    assert m is not None
    assert (m.text, m.nps, m.language) == ("Q2_comment", "Q1_recommend", "UserLanguage")
    assert m.date == "RecordedDate"  # no date name, but every value is written as a date
    assert m.segments == ["Region"]  # Duration: numbers, all distinct: no breakdown


def test_without_a_sample_the_names_decide() -> None:
    m = guess_mapping(["Commento", "Tipo cliente"])
    assert m is not None and m.text == "Commento"  # nothing contradicts a name when there are no values


def test_profile_counts() -> None:
    cols, rows = _italian_survey(40)
    p = profile_columns(cols, rows)
    assert p["Voto"].values == 40 and p["Voto"].nps == 36  # rows 0, 10, 20, 30 say 12
    assert p["Tipo cliente"].distinct == 2 and p["Tipo cliente"].kinds == 0
    assert p["Data"].dates_dayfirst == 40 and p["Data"].date_like == 40
    assert language_code("it-IT") == "it" and language_code("Italiano") == "it" and language_code("qualcosa") is None


def test_mapping_summary_says_what_each_role_will_do() -> None:
    cols, rows = _italian_survey(40)
    rows[5]["Commento"] = ""
    m = guess_mapping(cols, rows)
    assert m is not None
    items = {(i.role, tuple(i.columns)): i for i in mapping_summary(m, cols, rows)}
    text = items[("text", ("Commento",))]
    assert (text.code, text.params["empty"], text.params["sample"]) == ("summary.text", 1, 40)
    voto = items[("nps", ("Voto",))]
    assert voto.code == "summary.score" and (voto.params["invalid"], voto.params["values"]) == (4, 40)
    assert "4 of 40 preview values out of range" in voto.message
    seg = items[("segment", ("Tipo cliente",))]
    assert seg.params["distinct"] == 2 and "segment" in seg.message
    assert items[("date", ("Data",))].params["invalid"] == 0
    # a column no role reads is said to be ignored
    m2 = ColumnMapping(text="Commento")
    ignored = [i for i in mapping_summary(m2, cols, rows) if i.role == "ignored"]
    assert ignored and ignored[0].columns == [c for c in cols if c != "Commento"]


def test_dates_in_the_summary() -> None:
    rows = [{"t": "un commento qualsiasi", "d": d} for d in ("31/12/2026", "12/31/2026", "ieri", "")]
    for dayfirst, order in ((True, "day-first"), (False, "month-first")):
        m = ColumnMapping(text="t", date="d", dayfirst=dayfirst)
        (date,) = [i for i in mapping_summary(m, ["t", "d"], rows) if i.role == "date"]
        assert (date.params["values"], date.params["invalid"], date.params["order"]) == (3, 1, order)


@pytest.mark.parametrize("code", sorted(ROW_WARNINGS))
def test_every_row_warning_reads_back_as_its_code(code: str) -> None:
    params = {"extra": "2", "column": "Commento cliente", "lines": "3", "columns": "column(s) 'a', 'b'",
              "role": "nps", "value": "dieci: o forse 12", "lo": "0", "hi": "10"}
    message = row_warning(code, **params)
    found, got = classify_warning(message)
    assert found == code
    assert all(got[k] == params[k] for k in got)
    assert classify_warning("something else entirely") == ("row.other", {"message": "something else entirely"})


def test_row_warnings_come_from_the_templates() -> None:
    m = ColumnMapping(text="t", nps="n", kind="k", date="d")
    p = prepare_row(0, {"t": "", "n": "12", "k": "Fidelity", "d": "ieri"}, m)
    assert [classify_warning(w)[0] for w in p.warnings] == ["value.score", "value.date"]
    assert p.doc.error["code"] == "EmptyText"  # type: ignore[union-attr]
    assert error_params("EmptyText", p.doc.error["message"]) == {"column": "t"}  # type: ignore[union-attr]
    assert p.doc.error["column"] == "t"  # type: ignore[union-attr]  # what the page's words need, stored with it
    p2 = prepare_row(0, {"t": "ciao a tutti", "n": "12", "k": "Fidelity", "d": "ieri"}, m)
    codes = [classify_warning(w) for w in p2.warnings]
    assert ("value.kind", {"value": "Fidelity"}) in codes and ("value.score", {"role": "nps", "value": "12", "lo": "0",
                                                                             "hi": "10"}) in codes


def test_the_profile_reads_dates_as_prepare_row_does() -> None:
    """The shortcuts that spare the profile a parse never disagree with the parser the rows go through."""
    from voce.service.uploads import parse_date

    values = ["20260305", "12", "45000", "2026-03-05 10:00", "05/03/2026", "5.3.2026", "ieri", "R12", "3,5", "  7  ",
              "2026/03/05", "12/31/2026", "31/12/26", "1e5", "0"]
    p = profile_columns(["d"], [{"d": v} for v in values])["d"]

    def parses(v: str) -> bool:
        try:
            parse_date(v)
        except ValueError:
            return False
        return True

    assert p.dates_dayfirst == sum(parses(v) for v in values)
