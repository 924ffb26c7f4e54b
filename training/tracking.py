"""Experiment tracking in MLflow, when it is installed: ``voce train`` and ``voce eval`` log there too.

Nothing changes when ``mlflow`` cannot be imported (it is not a dependency; ``pip install 'voce[mlflow]'``).  With
it, every ``voce train`` run logs its config as params, its dev and held-apart metrics and the regression report's
differences as metrics, and the bundle folder as an artifact; ``voce eval`` logs its metrics and report, and
``voce eval --compare`` the per-task differences.  Where runs go:

* ``VOCE_MLFLOW_TRACKING_URI`` (else MLflow's own ``MLFLOW_TRACKING_URI``): any tracking server or store;
* otherwise a local store in ``VOCE_MLFLOW_DIR`` (default ``mlruns`` in the current folder, git-ignored): a SQLite
  database ``mlflow.db`` (MLflow 3 refuses its plain file store by default) and the artifacts beside it;
* ``VOCE_MLFLOW_EXPERIMENT`` names the experiment (default ``voce``); ``VOCE_MLFLOW=0`` switches tracking off.

A tracking failure (server down, a name MLflow refuses) is logged and never fails the training run.
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_NAME = re.compile(r"[^A-Za-z0-9_\-. /]")


def _key(name: str) -> str:
    """A metric or param name MLflow accepts (``custom:shop`` -> ``custom_shop``)."""
    return _NAME.sub("_", name)[:250]


def flatten_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a (nested) metrics dict as ``section/name`` -> value; None ("n/a") and text are left out."""
    out: dict[str, float] = {}
    for k, v in metrics.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out |= flatten_metrics(v, f"{name}/")
        elif isinstance(v, bool):
            continue
        elif isinstance(v, int | float):
            out[_key(name)] = float(v)
    return out


def flatten_params(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in params.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out |= flatten_params(v, f"{name}.")
        else:
            out[_key(name)] = str(v)[:500]
    return out


def tracking_uri() -> str:
    """Where runs go: ``VOCE_MLFLOW_TRACKING_URI``, ``MLFLOW_TRACKING_URI``, else a file store in ``VOCE_MLFLOW_DIR``."""
    uri = os.environ.get("VOCE_MLFLOW_TRACKING_URI") or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    # MLflow 3 refuses its plain file store by default: a SQLite database in the folder (artifacts beside it)
    return f"sqlite:///{local_dir() / 'mlflow.db'}"


def local_dir() -> Path:
    """The local store's folder (``VOCE_MLFLOW_DIR``, default ``./mlruns``)."""
    return Path(os.environ.get("VOCE_MLFLOW_DIR", "mlruns")).resolve()


class Run:
    """One MLflow run (``mlflow`` None: every method does nothing)."""

    def __init__(self, mlflow: Any | None) -> None:
        self.mlflow = mlflow

    def _safe(self, what: str, fn: Any, *args: Any) -> None:
        if self.mlflow is None:
            return
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - tracking never fails the run it tracks
            log.warning("MLflow: could not log %s: %s", what, exc)

    def log_train(self, cfg: Any, report: dict[str, Any], bundle_dir: Path) -> None:
        if self.mlflow is None:
            return
        mlflow = self.mlflow
        params = flatten_params(cfg.model_dump(mode="json"))
        params["training_config_hash"] = cfg.config_hash()
        self._safe("params", mlflow.log_params, params)
        self._safe("metrics", mlflow.log_metrics, flatten_metrics(report.get("metrics", {})))
        reg = report.get("regression")
        if reg:
            diffs = {_key(f"vs_parent/{t['set']}/{t['task']}"): t["diff"] for t in reg["tasks"] if t["diff"] is not None}
            self._safe("regression", mlflow.log_metrics, diffs)
            self._safe("verdict", mlflow.set_tag, "vs_parent", reg["verdict"])
        self._safe("bundle", mlflow.log_artifacts, str(bundle_dir), "bundle")

    def log_eval(self, report: dict[str, Any], out: Path | None) -> None:
        if self.mlflow is None:
            return
        self._safe("bundle", self.mlflow.log_params, {"bundle_version": report.get("bundle", {}).get("version"),
                                                      "data": report.get("data", {}).get("file", "dev split")})
        self._safe("metrics", self.mlflow.log_metrics, flatten_metrics(report.get("metrics", {})))
        if out is not None and out.is_file():
            self._safe("report", self.mlflow.log_artifact, str(out))

    def log_compare(self, rep: dict[str, Any]) -> None:
        if self.mlflow is None:
            return
        self._safe("params", self.mlflow.log_params, {"active": rep["a"]["version"], "candidate": rep["b"]["version"]})
        diffs = {_key(f"diff/{t['set']}/{t['task']}"): t["diff"] for t in rep["tasks"] if t["diff"] is not None}
        self._safe("metrics", self.mlflow.log_metrics, diffs)
        self._safe("verdict", self.mlflow.set_tag, "verdict", rep["verdict"])


@contextmanager
def track_run(kind: str, name: str) -> Iterator[Run]:
    """An MLflow run named ``<kind>:<name>`` when MLflow is importable (and not switched off), else a no-op run."""
    if os.environ.get("VOCE_MLFLOW", "1") == "0":
        yield Run(None)
        return
    try:
        import mlflow
    except ImportError:
        yield Run(None)
        return
    try:
        uri = tracking_uri()
        if uri.startswith("sqlite:///") and uri.endswith(str(local_dir() / "mlflow.db")):
            local_dir().mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(uri)
        name = os.environ.get("VOCE_MLFLOW_EXPERIMENT", "voce")
        if uri == f"sqlite:///{local_dir() / 'mlflow.db'}" and mlflow.get_experiment_by_name(name) is None:
            mlflow.create_experiment(name, artifact_location=(local_dir() / "artifacts").as_uri())
        mlflow.set_experiment(name)
        active = mlflow.start_run(run_name=f"{kind}:{name}", tags={"voce.command": kind})
    except Exception as exc:  # noqa: BLE001
        log.warning("MLflow: tracking off for this run: %s", exc)
        yield Run(None)
        return
    with active:
        yield Run(mlflow)
