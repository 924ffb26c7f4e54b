"""Bundle comparison verdicts, the threshold table and saved thresholds, n/a metrics, and MLflow tracking."""
from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voce.data.datasets import Example
from voce.eval import metrics as M
from voce.eval.compare import Task, _macro_f1, paired_bootstrap, regressions


def _task(a: np.ndarray, b: np.ndarray, higher: bool = True) -> Task:
    return Task("acc", "dev", len(a), lambda ix: float(a[ix].mean()), lambda ix: float(b[ix].mean()), higher)


def test_paired_bootstrap_verdicts() -> None:
    rng = np.random.default_rng(0)
    a = (rng.random(400) < 0.6).astype(float)
    better = np.maximum(a, (rng.random(400) < 0.5).astype(float))  # right wherever a was, and more
    assert paired_bootstrap(_task(a, a))["verdict"] == "within noise"
    up = paired_bootstrap(_task(a, better))
    assert up["verdict"] == "better" and up["ci_low"] > 0 and up["diff"] == pytest.approx(better.mean() - a.mean(), abs=1e-4)
    assert paired_bootstrap(_task(better, a))["verdict"] == "worse"
    # lower is better (ECE): a lower value is the better one
    assert paired_bootstrap(_task(better, a, higher=False))["verdict"] == "better"
    # one flipped row out of 400 is noise, not a regression
    b = a.copy()
    b[0] = 1 - b[0]
    assert paired_bootstrap(_task(a, b))["verdict"] == "within noise"
    na = paired_bootstrap(Task("auc", "dev", 3, lambda ix: None, lambda ix: 0.5))
    assert na["verdict"] == "n/a" and na["diff"] is None
    report = {"tasks": [paired_bootstrap(_task(better, a)), na]}
    assert regressions(report) == ["dev/acc"]


def test_macro_f1_matches_the_metrics_module() -> None:
    rng = np.random.default_rng(1)
    gold, pred = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    present = sorted(set(gold.tolist()))
    assert _macro_f1(gold, pred, 4) == pytest.approx(M.macro_f1(gold.tolist(), pred.tolist(), present), abs=1e-9)


def _ex(uid: str, topics: dict[str, str] | None) -> Example:
    return Example(source="custom:t", uid=uid, text=uid, language="it", group=uid, topics=topics)  # type: ignore[arg-type]


def test_threshold_table_finds_the_f1_best_threshold() -> None:
    from voce.eval.evaluate import threshold_table

    rows = [_ex(f"p{i}", {"staff": "positive"}) for i in range(10)] + [_ex(f"n{i}", {}) for i in range(10)]
    rows.append(_ex("unlabelled", None))  # not annotated: left out
    scores = {f"p{i}": {"staff": 0.35 + 0.01 * i} for i in range(10)} | {f"n{i}": {"staff": 0.1} for i in range(10)}
    scores["unlabelled"] = {"staff": 0.9}
    t = threshold_table(rows, scores)["staff"]
    assert t["support"] == 10 and t["rows"] == 20
    at = {r["threshold"]: r for r in t["table"]}
    assert at[0.3]["recall"] == 1.0 and at[0.3]["precision"] == 1.0
    assert at[0.5]["recall"] == 0.0 and at[0.05]["precision"] == 0.5
    assert t["best_f1"] == 1.0 and 0.15 <= t["best_f1_threshold"] <= 0.35


def test_saved_thresholds_are_used_by_the_analyzer(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    from voce.data.custom import CustomData
    from voce.eval.evaluate import save_topic_thresholds, topic_probabilities
    from voce.models.analyzer import Analyzer
    from voce.models.bundle import VoceBundle
    from voce.models.encoders.fake import FakeEncoder
    from voce.models.language import default_detector
    from voce.models.types import DocumentInput

    bundle = VoceBundle.load(tiny_bundle_dir)
    from dataclasses import replace

    rows = [replace(_ex("a", {"staff": "negative"}), text="Rude staff.")]
    ids, every = topic_probabilities(bundle, FakeEncoder(), rows)
    assert {t.id for t in every["a"].topics} == set(ids)  # every topic, each with its score
    data = CustomData(path=tmp_path / "f.csv", source="custom:f", examples=rows, errors=[], sha256="x" * 64,
                      encoding="utf-8", delimiter=";", ignored_columns=[])  # fmt: skip
    with pytest.raises(ValueError, match="no such topic"):
        save_topic_thresholds(bundle, tmp_path / "x", {}, {"nope": 0.5}, data)
    low = save_topic_thresholds(bundle, tmp_path / "low", {}, dict.fromkeys(ids, 0.001), data)
    high = save_topic_thresholds(bundle, tmp_path / "high", {}, dict.fromkeys(ids, 0.999), data)
    assert low["staff"] == 0.001 and high["staff"] == 0.999

    def topics(path: Path) -> set[str]:
        an = Analyzer(FakeEncoder(), VoceBundle.load(path), default_detector())
        res, _ = an.analyze([DocumentInput(id="1", text="Rude staff at the front desk.", language="en")])
        return {t.id for t in res[0].topics}

    assert topics(tmp_path / "low") == set(ids)
    assert topics(tmp_path / "high") == set()
    assert VoceBundle.load(tmp_path / "low").manifest_extra["topic_thresholds_from"]["file"] == "f.csv"


def test_metrics_that_do_not_apply_are_none_not_zero() -> None:
    m: dict[str, Any] = {"absita_aspect_detection_micro_f1": 0.0, "semeval_voce_topic_micro_f1": 0.0,
                         "sentipolc_polarity_f": 0.7}  # fmt: skip
    assert M.not_applicable(dict(m), ["staff", "cleanliness"]) == [
        "absita_aspect_detection_micro_f1", "semeval_voce_topic_micro_f1"]  # fmt: skip
    from voce.models.taxonomy import default_taxonomy

    kept = dict(m)
    assert M.not_applicable(kept, default_taxonomy().topics.ids) == [] and kept == m
    custom = dict(m)
    M.not_applicable(custom, ["coffee", "staff"])
    assert custom["absita_aspect_detection_micro_f1"] is None and custom["sentipolc_polarity_f"] == 0.7


def test_it_en_agreement_is_undefined_when_nothing_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    from voce.eval import touchpoints as T
    from voce.models.types import DocumentInput

    def nothing(analyzer: Any, docs: list[DocumentInput]) -> dict[str, Any]:
        return {d.id: types.SimpleNamespace(touchpoints=[]) for d in docs}

    monkeypatch.setattr(T, "analyze_all", nothing)
    report = T.run_touchpoints(None, T.load_checks())  # type: ignore[arg-type]
    assert report["top1_agreement_it_en"] is None and report["pairs_with_a_touchpoint"] == 0
    assert report["it"]["recall"] == 0.0


# ------------------------------------------------------------------------------------------ MLflow


class _FakeMlflow(types.ModuleType):
    def __init__(self) -> None:
        super().__init__("mlflow")
        self.calls: list[tuple[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)

        def record(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args))
            if name == "start_run":
                import contextlib

                return contextlib.nullcontext()
            return None

        return record


def test_tracking_logs_to_mlflow_when_importable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from voce.training.tracking import track_run

    fake = _FakeMlflow()
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    monkeypatch.delenv("VOCE_MLFLOW", raising=False)
    monkeypatch.setenv("VOCE_MLFLOW_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("VOCE_MLFLOW_TRACKING_URI", raising=False)
    with track_run("eval", "b") as run:
        run.log_eval({"metrics": {"custom:x": {"sentiment_macro_f1": 0.5, "n/a": None}, "ok": 1},
                      "bundle": {"version": "v"}}, None)  # fmt: skip
    names = [n for n, _ in fake.calls]
    assert names[:5] == ["set_tracking_uri", "get_experiment_by_name", "create_experiment", "set_experiment",
                         "start_run"]  # fmt: skip
    assert fake.calls[0][1][0] == f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    metrics = next(args[0] for n, args in fake.calls if n == "log_metrics")
    assert metrics == {"custom_x/sentiment_macro_f1": 0.5, "ok": 1.0}  # n/a left out, names MLflow accepts
    monkeypatch.setenv("VOCE_MLFLOW", "0")  # switched off
    with track_run("eval", "b") as run:
        assert run.mlflow is None


def test_tracking_is_a_no_op_without_mlflow(monkeypatch: pytest.MonkeyPatch) -> None:
    from voce.training.tracking import track_run

    monkeypatch.setitem(sys.modules, "mlflow", None)  # import fails
    with track_run("train", "x") as run:
        assert run.mlflow is None
        run.log_eval({"metrics": {"a": 1}}, None)


def test_tracking_with_real_mlflow(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    mlflow = pytest.importorskip("mlflow")
    from voce.training.tracking import track_run

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("VOCE_MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("VOCE_MLFLOW", raising=False)
    monkeypatch.setenv("VOCE_MLFLOW_DIR", str(tmp_path / "runs"))  # the default local store
    report = tmp_path / "report.json"
    report.write_text("{}", "utf-8")
    with track_run("eval", "b") as run:
        run.log_eval({"metrics": {"topic_micro_f1": 0.7}, "bundle": {"version": "v"}}, report)
    runs = mlflow.search_runs(experiment_names=["voce"])
    assert float(runs["metrics.topic_micro_f1"].iloc[0]) == pytest.approx(0.7)
    assert (tmp_path / "runs" / "mlflow.db").is_file()
    assert list((tmp_path / "runs" / "artifacts").rglob("report.json"))
    from voce.training.config import TrainConfig

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text("{}", "utf-8")
    regression = {"verdict": "within noise", "tasks": [{"set": "dev", "task": "topic_micro_f1", "diff": 0.01}]}
    with track_run("train", "b") as run:
        run.log_train(TrainConfig(), {"metrics": {"custom:x": {"topic_micro_f1": 0.6}}, "regression": regression}, bundle)
    runs = mlflow.search_runs(experiment_names=["voce"], filter_string="tags.`voce.command` = 'train'")
    assert float(runs["metrics.custom_x/topic_micro_f1"].iloc[0]) == pytest.approx(0.6)
    assert float(runs["metrics.vs_parent/dev/topic_micro_f1"].iloc[0]) == pytest.approx(0.01)
    assert runs["params.min_topic_examples"].iloc[0] == "40" and runs["tags.vs_parent"].iloc[0] == "within noise"
    assert list((tmp_path / "runs" / "artifacts").rglob("bundle/manifest.json"))


def test_eval_compare_and_threshold_commands(env: Path, tiny_bundle_dir: Path) -> None:
    import json

    from typer.testing import CliRunner

    from tests.data.test_custom import _tiny_csv
    from voce.service.cli import app

    data = _tiny_csv(env / "holdout.csv")
    run = CliRunner()
    res = run.invoke(app, ["eval", "--compare", str(tiny_bundle_dir), str(tiny_bundle_dir), "--data", str(data),
                           "--data-dir", str(env / "none"), "--out", str(env / "cmp.json")])  # fmt: skip
    assert res.exit_code == 0, res.output
    rep = json.loads((env / "cmp.json").read_text("utf-8"))
    tasks = {(t["set"], t["task"]): t for t in rep["tasks"]}
    assert ("data:holdout", "sentiment_macro_f1") in tasks and ("touchpoint_checks", "touchpoint_recall") in tasks
    assert {t["verdict"] for t in rep["tasks"]} <= {"within noise", "n/a"} and rep["verdict"] == "within noise"
    res = run.invoke(app, ["eval", "--data", str(data), "--thresholds", "--predictions", str(env / "p.jsonl"),
                           "--save-thresholds", str(env / "tuned"), "--threshold", "staff=0.4",
                           "--out", str(env / "e.json")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "F1-best threshold" in res.output and "95% bootstrap intervals" in res.output
    rows = [json.loads(line) for line in (env / "p.jsonl").read_text("utf-8").splitlines()]
    assert len(rows) == 96 and "staff" in rows[0]["topics"] and rows[0]["gold"]["sentiment"]
    manifest = json.loads((env / "tuned" / "manifest.json").read_text("utf-8"))
    assert manifest["decisions"]["topic_thresholds"]["staff"] == 0.4
    report = json.loads((env / "e.json").read_text("utf-8"))
    assert report["intervals"]["sentiment_macro_f1"]["ci_low"] <= report["intervals"]["sentiment_macro_f1"]["value"]
    bad = run.invoke(app, ["eval", "--thresholds"])
    assert bad.exit_code == 2 and "need --data" in bad.output


def test_info_reports_na_for_metrics_a_custom_taxonomy_cannot_have() -> None:
    from voce.models.taxonomy import default_taxonomy
    from voce.service.api.ops import _bundle_metrics

    custom = default_taxonomy().model_copy(update={"topics": default_taxonomy().topics.model_copy(
        update={"entries": [e for e in default_taxonomy().topics.entries if e.id in {"staff", "delivery"}]})})
    old = {"absita_aspect_detection_micro_f1": 0.0, "sentipolc_polarity_f": 0.7}  # a manifest with a fake zero
    bundle = types.SimpleNamespace(manifest_extra={"metrics": old}, taxonomy=lambda: custom)
    assert _bundle_metrics(bundle) == {"absita_aspect_detection_micro_f1": None, "sentipolc_polarity_f": 0.7}
    assert old["absita_aspect_detection_micro_f1"] == 0.0  # the manifest itself is not touched
