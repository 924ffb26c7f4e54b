"""Retraining on a team's own rows builds on a parent bundle: what it does not retrain stays the parent's.

The parent is a tiny bundle (fake encoder) whose touchpoint heads were learned from a synthetic annotated corpus;
the child is trained on a small custom file without that corpus, as `voce train` would on a team's data.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.data.test_custom import _tiny_csv
from tests.tiny import tiny_config, tiny_examples
from tests.training.test_touchpoints import _corpus
from voce.models.analyzer import Analyzer
from voce.models.bundle import VoceBundle
from voce.models.encoders.fake import FakeEncoder
from voce.models.language import default_detector
from voce.models.types import DocumentInput
from voce.training import touchpoints as tp_module
from voce.training.config import TrainConfig, load_train_config
from voce.training.train import RegressionRefused, train, train_heads

PROBES = [
    "il corriere è arrivato in ritardo", "the parcel never arrived", "bolletta sbagliata", "charged twice on my bill",
    "numero verde non risponde", "on hold for an hour", "prodotto ottimo", "funziona benissimo",
    "Il pacco è stato consegnato rotto", "The invoice had a wrong amount",
]


@pytest.fixture(scope="module")
def parent_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A parent bundle with learned touchpoints (synthetic corpus) and a zero-shot calibration fitted on tiny rows."""
    out = tmp_path_factory.mktemp("parent") / "bundle"
    rows = _corpus()
    mp = pytest.MonkeyPatch()
    mp.setattr(tp_module, "load_realcx", lambda data_dir=None: rows)
    try:
        cfg = tiny_config(out).model_copy(update={"touchpoint_data": True, "min_touchpoint_examples": 5,
                                                   "version": "parent"})  # fmt: skip
        bundle = train_heads(cfg, FakeEncoder(), tiny_examples(6), progress=lambda _m: None)
    finally:
        mp.undo()
    bundle.manifest_extra["training_config_hash"] = cfg.config_hash()
    bundle.save(out)
    return out


def _child_config(tmp_path: Path, data: Path, parent: Path | None, **extra: object) -> TrainConfig:
    return TrainConfig(
        output=tmp_path / "child", encoder_backend="fake", encoder_model="fake", include_public_data=False,
        extra_data=[data], min_topic_examples=4, min_polarity_examples=8, calibration_fraction=0.25,
        version="child", touchpoint_data=False, parent=parent, data_dir=tmp_path / "no-shared-data", **extra,  # type: ignore[arg-type]
    )


def _touchpoints(bundle: VoceBundle) -> list[list[str]]:
    an = Analyzer(FakeEncoder(), bundle, default_detector())
    res, _ = an.analyze([DocumentInput(id=str(i), text=t) for i, t in enumerate(PROBES)])
    return [[tp.id for tp in r.touchpoints] for r in res]


def _zero_shot_topics(bundle: VoceBundle) -> np.ndarray:
    """Calibrated zero-shot probability of every default topic for the probe texts."""
    an = Analyzer(FakeEncoder(), bundle, default_detector())
    x = an.zero_shot.centre(FakeEncoder().encode(PROBES))
    return an.zero_shot.probability(x, an.taxonomy.topics)


def test_retrained_bundle_keeps_the_parents_touchpoints_zero_shot_and_calibration(
    tmp_path: Path, parent_dir: Path
) -> None:
    parent = VoceBundle.load(parent_dir)
    data = _tiny_csv(tmp_path / "team.csv")
    said: list[str] = []
    child, report = train(_child_config(tmp_path, data, parent_dir), FakeEncoder(), progress=said.append,
                          allow_regression=True)  # fmt: skip

    # the calibration and centring are the parent's: zero-shot topics score exactly as before
    assert child.zero_shot == parent.zero_shot
    np.testing.assert_array_equal(child.center, parent.center)
    np.testing.assert_allclose(_zero_shot_topics(child), _zero_shot_topics(parent), atol=1e-6)
    # the touchpoint heads (no corpus in this run) are the parent's: the same touchpoints on every probe
    assert child.touchpoints is not None
    assert _touchpoints(child) == _touchpoints(parent)
    assert sum(map(bool, _touchpoints(child))) >= 6  # they do report touchpoints
    manifest = json.loads((tmp_path / "child" / "manifest.json").read_text("utf-8"))
    assert manifest["kept_from_parent"] == ["zero_shot", "touchpoints", "exclusive"]
    assert manifest["parent"]["version"] == "parent" and manifest["tool_version"]
    # the regression report ran on the touchpoint check set and the dev rows; touchpoints within bounds of the parent
    tasks = {(t["set"], t["task"]): t for t in report["regression"]["tasks"]}
    check = tasks[("touchpoint_checks", "touchpoint_recall")]
    assert check["verdict"] != "worse" and abs(check["diff"]) <= 0.05
    assert manifest["regression"]["tasks"]["touchpoint_recall"]["verdict"] in {"within noise", "better", "worse"}
    assert any("kept from the parent bundle parent" in m for m in said)


def test_without_a_parent_the_refit_calibration_moves_zero_shot(tmp_path: Path, parent_dir: Path) -> None:
    """What the issue saw: refitting the calibration on a few team rows changes every zero-shot score."""
    parent = VoceBundle.load(parent_dir)
    data = _tiny_csv(tmp_path / "team.csv")
    alone = train_heads(_child_config(tmp_path, data, None), FakeEncoder(),
                        [e for e in __import__("voce.data.custom", fromlist=["x"]).load_custom_file(data).examples],
                        progress=lambda _m: None)  # fmt: skip
    assert alone.zero_shot != parent.zero_shot
    assert alone.touchpoints is None  # no corpus and no parent: every touchpoint zero-shot


def test_a_regression_is_refused_unless_allowed(tmp_path: Path, parent_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from voce.eval import compare

    real = compare.compare_bundles

    def worse(*args, **kwargs):  # type: ignore[no-untyped-def]
        rep = real(*args, **kwargs)
        rep["tasks"][0] |= {"verdict": "worse", "diff": -0.3, "ci_low": -0.4, "ci_high": -0.2}
        return rep

    monkeypatch.setattr(compare, "compare_bundles", worse)
    data = _tiny_csv(tmp_path / "team.csv")
    cfg = _child_config(tmp_path, data, parent_dir)
    with pytest.raises(RegressionRefused, match="worse than its parent"):
        train(cfg, FakeEncoder(), progress=lambda _m: None)
    assert not cfg.output.exists()  # nothing written
    train(cfg, FakeEncoder(), progress=lambda _m: None, allow_regression=True)
    assert (cfg.output / "manifest.json").is_file()


def test_other_encoder_keeps_nothing_from_the_parent(tmp_path: Path, parent_dir: Path) -> None:
    from voce.training.train import keep_from_parent

    parent = VoceBundle.load(parent_dir)
    parent.encoder = {**parent.encoder, "name": "onnx/other"}
    said: list[str] = []
    assert keep_from_parent(TrainConfig(), FakeEncoder(), parent.taxonomy(), {}, parent, said.append) == []
    assert "another encoder" in said[0]


# ----------------------------------------------------------------------------------------- config


def test_config_paths_resolve_against_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "project" / "configs"
    folder.mkdir(parents=True)
    (folder / "shop.yaml").write_text(
        "output: ../bundles/shop\nextra_data: [../data/shop.csv]\ninclude_public_data: false\n"
        "taxonomy: tax.yaml\neval_data: /abs/holdout.csv\n", "utf-8")  # fmt: skip
    monkeypatch.chdir(tmp_path)
    cfg = load_train_config(folder / "shop.yaml")
    assert cfg.output == folder / "../bundles/shop"
    assert cfg.extra_data == [folder / "../data/shop.csv"]
    assert cfg.taxonomy == folder / "tax.yaml" and cfg.eval_data == Path("/abs/holdout.csv")
    # voce train builds on the shipped bundle and its adapter unless told otherwise
    assert cfg.parent is not None and cfg.parent.name == "default" and cfg.encoder_adapter == "parent"
    assert cfg.adapter_path() == cfg.parent / "encoder_adapter.safetensors"
    # the command line's paths stay relative to the current directory
    assert load_train_config(folder / "shop.yaml", output=Path("here")).output == Path("here")


def test_frozen_encoder_and_no_parent_are_explicit_choices(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("encoder_adapter: null\nparent: null\n", "utf-8")
    cfg = load_train_config(tmp_path / "c.yaml")
    assert cfg.encoder_adapter is None and cfg.parent is None and cfg.adapter_path() is None


def test_the_shipped_config_keeps_its_hash() -> None:
    root = Path(__file__).resolve().parents[2]
    cfg = load_train_config(root / "training" / "configs" / "default.yaml")
    manifest = json.loads((root / "models" / "bundles" / "default" / "manifest.json").read_text("utf-8"))
    assert cfg.config_hash() == manifest["training_config_hash"]
    assert cfg.adapter_path() is not None and cfg.adapter_path().resolve().is_file()  # type: ignore[union-attr]


def test_dev_fraction_zero_needs_an_evaluation_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="eval_data"):
        TrainConfig(dev_fraction=0)
    cfg = TrainConfig(dev_fraction=0, eval_data=tmp_path / "holdout.csv")
    train_rows, dev = cfg.split().split(tiny_examples())
    assert dev == [] and len(train_rows) == len(tiny_examples())


def test_dev_fraction_zero_reports_on_eval_data(tmp_path: Path) -> None:
    data = _tiny_csv(tmp_path / "team.csv")
    holdout = _tiny_csv(tmp_path / "holdout.csv")
    cfg = _child_config(tmp_path, data, None, dev_fraction=0.0, eval_data=holdout)
    _, report = train(cfg, FakeEncoder(), progress=lambda _m: None)
    assert report["metrics"]["eval_data:holdout"]["examples"] == 96
    manifest = json.loads((cfg.output / "manifest.json").read_text("utf-8"))
    assert manifest["split"]["dev"] == 0 and manifest["split"]["held_apart"] == {"eval_data:holdout": 96}
    assert "eval/holdout.csv" in manifest["data"]


def test_extra_holdout_fraction_keeps_rows_apart(tmp_path: Path) -> None:
    from voce.training.train import load_training_data

    data = _tiny_csv(tmp_path / "corrections.csv")
    cfg = _child_config(tmp_path, data, None, extra_holdout_fraction=0.25)
    loaded = load_training_data(cfg, progress=lambda _m: None)
    held = loaded.held_apart["held_apart:corrections"]
    assert 10 < len(held) < 40 and len(held) + len(loaded.examples) == 96
    assert not {e.uid for e in held} & {e.uid for e in loaded.examples}


# ----------------------------------------------------------------------------------------- check


def test_check_counts_rows_after_the_splits_and_says_why_a_topic_has_no_head(tmp_path: Path) -> None:
    from voce.training.check import check_report, check_summary

    cfg = tiny_config(tmp_path / "b").model_copy(update={"min_topic_examples": 17})
    train_rows, dev = cfg.split().split(tiny_examples())
    rep = check_report(cfg, train_rows, dev)
    staff = rep["topics"]["staff"]
    assert staff["labelled"] == staff["fit"] + staff["calibration"] + staff["dev"] == 24
    # 24 labelled rows >= 17, but only the fit rows train: the splits leave fewer, and the check says so
    assert staff["fit"] < 17 and staff["head"] is False
    assert f"{staff['dev']} went to dev" in staff["reason"]
    assert rep["topics"]["cleanliness"]["head"] is False
    assert "fit rows < min_topic_examples 17" in rep["topics"]["cleanliness"]["reason"]
    assert rep["topics"]["delivery"]["reason"] == "no labels: zero-shot"
    # the rule is the one training applies
    logs: list[str] = []
    bundle = train_heads(cfg, FakeEncoder(), train_rows, progress=logs.append)
    assert bundle.topics.labels == rep["heads"]["topics_learned"]
    assert any("cleanliness" in m and "zero-shot" in m for m in logs)  # never dropped silently
    lines = check_summary(rep)
    assert any(m.startswith("  no head for cleanliness") for m in lines)


def test_train_check_cli_prints_the_plan(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from voce.service.cli import app

    data = _tiny_csv(tmp_path / "team.csv")
    (tmp_path / "c.yaml").write_text(
        f"extra_data: [team.csv]\ninclude_public_data: false\nmin_topic_examples: 100\nparent: null\n"
        f"encoder_backend: fake\nencoder_model: fake\ntouchpoint_data: false\ndata_dir: {tmp_path}\n", "utf-8")
    res = CliRunner().invoke(app, ["train", "--config", str(tmp_path / "c.yaml"), "--check"])
    assert res.exit_code == 0, res.output
    assert "no head for staff" in res.output and "fit rows < min_topic_examples 100" in res.output
    assert not (tmp_path / "bundles").exists() and data.is_file()


def test_train_without_the_public_data_is_one_friendly_paragraph(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from voce.service.cli import app

    (tmp_path / "c.yaml").write_text(f"data_dir: {tmp_path / 'nothing'}\n", "utf-8")
    res = CliRunner().invoke(app, ["train", "--config", str(tmp_path / "c.yaml")])
    assert res.exit_code == 2
    assert "Traceback" not in res.output and "include_public_data: false" in res.output
