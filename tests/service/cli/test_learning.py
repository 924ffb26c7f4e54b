"""`voce taxonomy ...` and `voce corrections ...` on the configured database (fake encoder, tiny bundle); the
corrections export is read back by the custom-data loader `voce train` uses (data/custom.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.service.cli.test_batches import _survey
from voce.data.custom import load_custom_file
from voce.service.batches.service import BatchService
from voce.service.batches.store import BatchStore
from voce.service.cli import app
from voce.service.db import open_database
from voce.service.learning.corrections import CorrectionIn, CorrectionService
from voce.service.settings import Settings

runner = CliRunner()


def test_taxonomy_show_export_import_history_diff_rollback(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOCE_DATA_DIR", str(env / "data"))
    shown = runner.invoke(app, ["taxonomy", "show", "--tenant", "acme"])
    assert shown.exit_code == 0 and "the configured taxonomy" in shown.stdout, shown.output
    out = env / "tax.yaml"
    assert runner.invoke(app, ["taxonomy", "export", str(out), "--tenant", "acme"]).exit_code == 0
    data = yaml.safe_load(out.read_text("utf-8"))
    data["topics"].append({"id": "parcheggio", "names": {"it": "Parcheggio", "en": "Parking"},
                           "examples": ["Non si trova mai posto"]})
    out.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    r = runner.invoke(app, ["taxonomy", "import", str(out), "--tenant", "acme", "--author", "giulia"])
    assert r.exit_code == 0 and "added topic parcheggio (Parking)" in r.stdout, r.output
    again = runner.invoke(app, ["taxonomy", "import", str(out), "--tenant", "acme"])
    assert again.exit_code == 2 and "nothing changed" in again.output
    ops = env / "ops.json"
    ops.write_text(json.dumps([{"op": "retire", "section": "topics", "id": "parcheggio"}]), "utf-8")
    r = runner.invoke(app, ["taxonomy", "edit", "--tenant", "acme", "--ops", str(ops), "-m", "not needed"])
    assert r.exit_code == 0 and "removed topic parcheggio" in r.stdout, r.output
    history = runner.invoke(app, ["taxonomy", "history", "--tenant", "acme"]).stdout
    assert history.index("v2") < history.index("v1") and "giulia" in history and "not needed" in history
    assert "removed topic parcheggio" in runner.invoke(app, ["taxonomy", "diff", "1", "2", "--tenant", "acme"]).stdout
    r = runner.invoke(app, ["taxonomy", "rollback", "1", "--tenant", "acme"])
    assert r.exit_code == 0 and "added topic parcheggio" in r.stdout, r.output
    assert "parcheggio" in runner.invoke(app, ["taxonomy", "export", "--tenant", "acme"]).stdout
    assert runner.invoke(app, ["taxonomy", "rollback", "9", "--tenant", "acme"]).exit_code == 2
    # another tenant is untouched
    assert "the configured taxonomy" in runner.invoke(app, ["taxonomy", "show", "--tenant", "beta"]).stdout
    # with $EDITOR: a script that appends an example
    editor = env / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/Non si trova mai posto/Non si trova mai posto\\n  - Parcheggio pieno/' \"$1\"\n")
    editor.chmod(0o755)
    monkeypatch.setenv("EDITOR", str(editor))
    r = runner.invoke(app, ["taxonomy", "edit", "--tenant", "acme"])
    assert r.exit_code == 0 and "parcheggio: examples +1 -0" in r.stdout, r.output


def test_corrections_export_is_custom_training_data(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOCE_DATA_DIR", str(env / "data"))
    monkeypatch.setenv("VOCE_DISCOVERY", "false")
    r = runner.invoke(app, ["batch", "submit", str(_survey(env / "survey.csv", 8)), "--wait"])
    assert r.exit_code == 0, r.output
    bid = r.stdout.strip().splitlines()[0]
    settings = Settings()
    store = BatchStore(open_database(settings.resolved_database_url()))
    batches = BatchService.from_settings(settings, store=store).for_tenant("default")
    from voce.models.spec import load_taxonomy_for

    taxonomy = load_taxonomy_for(settings.analyzer_spec())
    service = CorrectionService(batches, lambda b: taxonomy)
    topic = taxonomy.topics.ids[0]
    service.create(bid, 0, CorrectionIn(sentiment="negative", detractor=True), "giulia")
    service.create(bid, 1, CorrectionIn(topics_add=[{"id": topic, "sentiment": "positive"}]), "giulia")
    service.create(bid, 2, CorrectionIn(sentiment="positive"), "marco")
    service.create(bid, 3, CorrectionIn(touchpoints_add=[taxonomy.touchpoints.ids[0]]), "marco")  # no training label
    reverted = service.create(bid, 4, CorrectionIn(sentiment="mixed"), "marco")
    service.revert(bid, 4, reverted.corrections[0].id, "marco")

    for name in ("corrections.jsonl", "corrections.csv"):
        out = env / name
        r = runner.invoke(app, ["corrections", "export", str(out), "--batch", bid])
        assert r.exit_code == 0 and "wrote 3 corrected row(s)" in r.output, r.output
        data = load_custom_file(out)
        assert not data.errors, data.errors
        by_id = {e.uid.split(":", 2)[2]: e for e in data.examples}  # custom:<file stem>:<id>
        assert set(by_id) == {f"{bid}:0", f"{bid}:1", f"{bid}:2"}
        first, second, third = by_id[f"{bid}:0"], by_id[f"{bid}:1"], by_id[f"{bid}:2"]
        assert (first.sentiment, first.nps_detractor, first.topics) == ("negative", 1, None)
        assert second.sentiment is None and second.topics is not None and second.topics[topic] == "positive"
        assert (third.sentiment, third.nps_detractor) == ("positive", None)
        assert first.text.startswith("Ordine 0") and first.language == "it"
    assert "wrote 0" in runner.invoke(app, ["corrections", "export", str(env / "x.jsonl"), "--tenant", "beta"]).output
    listed = runner.invoke(app, ["corrections", "list", bid])
    assert listed.exit_code == 0 and "row 0: sentiment" in listed.stdout and "reverted by marco" in listed.stdout
