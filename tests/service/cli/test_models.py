"""`voce models list|show|register|promote|rollback` on the registry folder the service reads."""
from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from voce.models.registry import ModelRegistry
from voce.service.cli import app

runner = CliRunner()


def test_models_commands(env: Path, tiny_bundle_dir: Path, monkeypatch: object) -> None:
    monkeypatch.setenv("VOCE_DATA_DIR", str(env / "data"))  # type: ignore[attr-defined]
    listed = runner.invoke(app, ["models", "list"])
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.splitlines()[0].startswith("* tiny-test")  # the configured bundle: the first version

    reg = runner.invoke(app, ["models", "register", str(tiny_bundle_dir), "--version", "tiny-b", "--by", "ana"])
    assert reg.exit_code == 0 and reg.stdout.strip() == "tiny-b", reg.output
    promoted = runner.invoke(app, ["models", "promote", "tiny-b", "--by", "ana", "--note", "same weights, new name"])
    assert promoted.exit_code == 0 and "active: tiny-b (was tiny-test)" in promoted.output, promoted.output
    registry = ModelRegistry(env / "data" / "registry")
    assert registry.active_version() == "tiny-b" and registry.history()[-1].note == "same weights, new name"

    shown = json.loads(runner.invoke(app, ["models", "show", "tiny-b"]).stdout)
    assert shown["active"] and shown["registered_by"] == "ana" and Path(shown["folder"]).is_dir()
    as_json = json.loads(runner.invoke(app, ["models", "list", "--json"]).stdout)
    assert as_json["active"] == "tiny-b" and len(as_json["versions"]) == 2

    back = runner.invoke(app, ["models", "rollback", "--by", "bob"])
    assert back.exit_code == 0 and "active: tiny-test (was tiny-b)" in back.output
    assert registry.history()[-1].by == "bob"
    again = runner.invoke(app, ["models", "rollback"])
    assert again.exit_code == 2 and "nothing to roll back" in again.output
    missing = runner.invoke(app, ["models", "promote", "nope"])
    assert missing.exit_code == 2 and "no model version 'nope'" in missing.output
    bad = runner.invoke(app, ["models", "register", str(env / "nowhere")])
    assert bad.exit_code == 2 and "not a Voce bundle" in bad.output
