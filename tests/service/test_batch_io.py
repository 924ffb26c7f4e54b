"""``voce analyze``'s file reader (service/batch_io.py) reads files as uploads are read: binary data refused, a BOM
before Windows-1252 dropped, a broken quote read on its own line with a warning in the row's result."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from voce.models.spec import AnalyzerSpec
from voce.models.types import DocumentInput
from voce.service.batch_io import InputError, analyze_file, iter_rows


def test_a_broken_quote_splits_no_row_and_warns_in_the_result(tmp_path: Path, tiny_bundle_dir: Path) -> None:
    src = tmp_path / "comments.csv"
    src.write_text('id,text\n1,"Servizio ottimo\n2,Consegna lenta\n3,"Staff ""gentile"""\n\n4,Prezzo alto\n', "utf-8")
    rows = list(iter_rows(src))
    docs = [d for d, _ in rows]
    assert [d.id for d in docs] == ["1", "2", "3", "4"]  # row 1's quote swallowed rows 2-4 before
    assert isinstance(docs[2], DocumentInput) and docs[2].text == 'Staff "gentile"'
    assert "unbalanced quote" in rows[0][1][0] and [n for _, n in rows[1:]] == [[], [], []]
    out = tmp_path / "out.jsonl"
    spec = AnalyzerSpec(backend="fake", encoder="fake", cache_dir=tmp_path / "cache", bundle=tiny_bundle_dir)
    assert analyze_file(src, out, spec=spec) == (4, 0)
    lines = [json.loads(x) for x in out.read_text("utf-8").splitlines()]
    assert any("unbalanced quote" in w for w in lines[0]["warnings"])
    assert not any("quote" in w for line in lines[1:] for w in line["warnings"])


def test_binary_data_and_a_bom_before_latin1(tmp_path: Path) -> None:
    garbage = tmp_path / "comments.csv"
    garbage.write_bytes(random.Random(5).randbytes(50_000))
    with pytest.raises(InputError, match="not text"):
        list(iter_rows(garbage))
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"\xef\xbb\xbf" + "text;id\nPerché così lento?;7\n".encode("cp1252"))
    ((doc, notes),) = list(iter_rows(latin))  # the "text" column was "ï»¿text": no text column at all
    assert isinstance(doc, DocumentInput) and (doc.id, doc.text, notes) == ("7", "Perché così lento?", [])
