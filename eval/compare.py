"""Compare two bundles task by task on the same rows, with paired bootstrap intervals and a verdict.

One report, two callers: ``voce train`` compares the new bundle with its parent before writing it (and refuses a
regression without ``--allow-regression``), and ``voce eval --compare ACTIVE CANDIDATE [--data FILE]`` compares any
two bundles.  Both bundles analyse the same rows; each task's metric is recomputed on the same bootstrap resamples
of the rows for both, so the interval is for the *difference* (paired: the row-to-row variation that both bundles
share cancels).  The verdict is "better" / "worse" when the 95% interval of the difference excludes 0, else
"within noise"; "n/a" when a task cannot be measured on a set (no rows with that label, a single class).

Tasks, per set of rows:

* labelled rows (the dev split, held-apart corrections, ``--data`` files): sentiment macro-F1 (4-way, over the
  classes present), sentiment ECE (3-way, lower is better), topic micro-F1 (over the topics the rows label),
  detractor ROC-AUC and ECE;
* the annotated real-text dev set (``data/labels/realcx``, texts from the data folder): touchpoint top-1 accuracy,
  touchpoint recall (gold touchpoints reported), and topic micro-F1 over the default topics when both bundles use
  them (the zero-shot topics included);
* the hand-written IT/EN touchpoint check set (:mod:`voce.eval.touchpoints`): touchpoint recall.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voce.data.datasets import Example
from voce.data.realcx import CXText, split_realcx
from voce.eval import metrics as M
from voce.models.analyzer import Analyzer
from voce.models.bundle import VoceBundle
from voce.models.encoders.base import Encoder
from voce.models.labels import SENTIMENT_LABELS, THREE_WAY_LABELS
from voce.models.language import default_detector
from voce.models.taxonomy import Taxonomy, default_taxonomy
from voce.models.types import DocumentInput, DocumentResult

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
ROUNDS = 1000
NONE = "none"


@dataclass
class CompareSets:
    """The rows both bundles are scored on."""

    #: name -> labelled rows ("dev", "held_apart:<file>", "eval_data:<file>", "data:<file>")
    labelled: dict[str, list[Example]] = field(default_factory=dict)
    #: the annotated real-text corpus's dev split (empty: its texts are not in the data folder)
    realcx: list[CXText] = field(default_factory=list)
    #: the hand-written touchpoint check set (pairs of it/en texts)
    checks: list[dict[str, str]] = field(default_factory=list)


def comparison_sets(
    dev: list[Example], realcx: list[CXText] | None, held_apart: dict[str, list[Example]] | None = None,
    *, checks: bool = True,
) -> CompareSets:
    """The dev rows, the real-text dev split, every held-apart set and the touchpoint check set."""
    from voce.eval.touchpoints import load_checks

    labelled = {"dev": [e for e in dev if e.text.strip()]} if dev else {}
    labelled |= {k: [e for e in v if e.text.strip()] for k, v in (held_apart or {}).items()}
    return CompareSets(
        labelled={k: v for k, v in labelled.items() if v},
        realcx=split_realcx(realcx)[1] if realcx else [],
        checks=load_checks() if checks else [],
    )


# ----------------------------------------------------------------------------------- metric functions
# Each task turns the rows' predictions into arrays once (per bundle); the metric is then a function of row indices,
# so the bootstrap only resamples indices.


def _macro_f1(gold: np.ndarray, pred: np.ndarray, k: int) -> float | None:
    if not len(gold):
        return None
    cm = np.bincount(gold * k + pred, minlength=k * k).reshape(k, k)
    present = cm.sum(axis=1) > 0
    tp = np.diag(cm).astype(float)
    denom = cm.sum(axis=1) + cm.sum(axis=0)
    f1 = np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)
    return float(f1[present].mean())


def _ece(probs: np.ndarray, y: np.ndarray) -> float | None:
    return float(M.expected_calibration_error(probs, y)) if len(y) else None


def _auc(y: np.ndarray, p: np.ndarray) -> float | None:
    return float(M.roc_auc(y, p)) if len(set(y.tolist())) == 2 else None


def _micro(counts: np.ndarray) -> float | None:
    """Micro-F1 from per-row ``(tp, fp, fn)``."""
    tp, fp, fn = counts.sum(axis=0)
    return float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else None


def _set_counts(gold: Sequence[set[str]], pred: Sequence[set[str]], space: set[str]) -> np.ndarray:
    return np.asarray([(len(g & p & space), len((p - g) & space), len((g - p) & space))
                       for g, p in zip(gold, pred, strict=True)], float).reshape(-1, 3)  # fmt: skip


@dataclass
class Task:
    """One measurable task on one set: a metric of row indices for each bundle."""

    name: str
    set: str
    n: int
    a: Callable[[np.ndarray], float | None]
    b: Callable[[np.ndarray], float | None]
    higher_is_better: bool = True


def _labelled_tasks(name: str, rows: list[Example], ra: dict[str, DocumentResult], rb: dict[str, DocumentResult],
                    space_a: set[str], space_b: set[str]) -> list[Task]:  # fmt: skip
    rows = [e for e in rows if e.uid in ra and e.uid in rb]
    tasks: list[Task] = []
    s_rows = [e for e in rows if e.sentiment]
    if s_rows:
        k = len(SENTIMENT_LABELS)
        gold = np.asarray([SENTIMENT_LABELS.index(e.sentiment) for e in s_rows if e.sentiment])

        def sent(res: dict[str, DocumentResult]) -> Callable[[np.ndarray], float | None]:
            pred = np.asarray([SENTIMENT_LABELS.index(res[e.uid].sentiment.label) for e in s_rows])
            return lambda ix: _macro_f1(gold[ix], pred[ix], k)

        tasks.append(Task("sentiment_macro_f1", name, len(s_rows), sent(ra), sent(rb)))
        three = [e for e in s_rows if e.sentiment in THREE_WAY_LABELS]
        if three:
            y3 = np.asarray([THREE_WAY_LABELS.index(e.sentiment) for e in three if e.sentiment])

            def ece(res: dict[str, DocumentResult]) -> Callable[[np.ndarray], float | None]:
                p = np.asarray([[getattr(res[e.uid].sentiment.scores, c) for c in THREE_WAY_LABELS] for e in three])
                return lambda ix: _ece(p[ix], y3[ix])

            tasks.append(Task("sentiment_ece", name, len(three), ece(ra), ece(rb), higher_is_better=False))
    t_rows = [e for e in rows if e.topics is not None]
    labelled = {t for e in t_rows for t in e.topics or {}}
    if labelled:
        gold_t = [set(e.topics or {}) for e in t_rows]

        def topics(res: dict[str, DocumentResult], space: set[str]) -> Callable[[np.ndarray], float | None]:
            # topics the bundle's taxonomy lacks count as misses: the rows label them and it can never say them
            c = _set_counts(gold_t, [{t.id for t in res[e.uid].topics} & space for e in t_rows], labelled)
            return lambda ix: _micro(c[ix])

        tasks.append(Task("topic_micro_f1", name, len(t_rows), topics(ra, space_a), topics(rb, space_b)))
    d_rows = [e for e in rows if e.nps_detractor is not None]
    if d_rows:
        y = np.asarray([e.nps_detractor for e in d_rows])

        def det(res: dict[str, DocumentResult], what: str) -> Callable[[np.ndarray], float | None]:
            p = np.asarray([res[e.uid].detractor.probability for e in d_rows])
            return (lambda ix: _auc(y[ix], p[ix])) if what == "auc" else (lambda ix: _ece(p[ix], y[ix]))

        tasks.append(Task("detractor_auc", name, len(d_rows), det(ra, "auc"), det(rb, "auc")))
        tasks.append(Task("detractor_ece", name, len(d_rows), det(ra, "ece"), det(rb, "ece"), higher_is_better=False))
    return tasks


def _realcx_tasks(rows: list[CXText], ra: dict[str, DocumentResult], rb: dict[str, DocumentResult],
                  default_topics: bool) -> list[Task]:  # fmt: skip
    name = "realcx_dev"

    def top1(res: dict[str, DocumentResult]) -> Callable[[np.ndarray], float | None]:
        ok = np.asarray([(res[r.uid].touchpoints[0].id if res[r.uid].touchpoints else NONE) == r.primary for r in rows],
                        float)  # fmt: skip
        return lambda ix: float(ok[ix].mean())

    def recall(res: dict[str, DocumentResult]) -> Callable[[np.ndarray], float | None]:
        c = np.asarray([(len(set(r.touchpoints) & {t.id for t in res[r.uid].touchpoints}), len(r.touchpoints))
                        for r in rows], float)  # fmt: skip
        return lambda ix: float(c[ix, 0].sum() / c[ix, 1].sum()) if c[ix, 1].sum() else None

    tasks = [Task("touchpoint_top1", name, len(rows), top1(ra), top1(rb)),
             Task("touchpoint_recall", name, len(rows), recall(ra), recall(rb))]  # fmt: skip
    if default_topics:
        space = set(default_taxonomy().topics.ids) - {"other"}
        gold = [set(r.topics) for r in rows]

        def topics(res: dict[str, DocumentResult]) -> Callable[[np.ndarray], float | None]:
            c = _set_counts(gold, [{t.id for t in res[r.uid].topics} for r in rows], space)
            return lambda ix: _micro(c[ix])

        tasks.append(Task("topic_micro_f1", name, len(rows), topics(ra), topics(rb)))
    return tasks


def _check_tasks(checks: list[dict[str, str]], ra: dict[str, DocumentResult], rb: dict[str, DocumentResult]) -> list[Task]:
    keys = [(f"{lang}-{i}", c["touchpoint"]) for i, c in enumerate(checks) for lang in ("it", "en")]

    def recall(res: dict[str, DocumentResult]) -> Callable[[np.ndarray], float | None]:
        ok = np.asarray([g in {t.id for t in res[k].touchpoints} for k, g in keys], float)
        return lambda ix: float(ok[ix].mean())

    return [Task("touchpoint_recall", "touchpoint_checks", len(keys), recall(ra), recall(rb))]


# ----------------------------------------------------------------------------------------- the report


def _analyse(analyzer: Analyzer, sets: CompareSets, progress: Progress | None) -> dict[str, dict[str, DocumentResult]]:
    from voce.eval.checksets import analyze_all
    from voce.eval.evaluate import analyze_examples
    from voce.eval.realcx import analyze_rows

    out: dict[str, dict[str, DocumentResult]] = {}
    for name, rows in sets.labelled.items():
        out[name] = analyze_examples(analyzer, rows)
    if sets.realcx:
        out["realcx_dev"] = analyze_rows(analyzer, sets.realcx)
    if sets.checks:
        docs = [DocumentInput(id=f"{lang}-{i}", text=c[lang], language=lang)
                for i, c in enumerate(sets.checks) for lang in ("it", "en")]  # fmt: skip
        out["touchpoint_checks"] = analyze_all(analyzer, docs)
    if progress:
        progress(f"  analysed {sum(map(len, out.values()))} texts with {analyzer.bundle.version}")
    return out


def paired_bootstrap(task: Task, *, rounds: int = ROUNDS, seed: int = 13) -> dict[str, Any]:
    """The task's value for both bundles, their difference (b - a) with a 95% paired interval, and the verdict."""
    full = np.arange(task.n)
    a, b = task.a(full), task.b(full)
    row: dict[str, Any] = {"task": task.name, "set": task.set, "n": task.n, "a": _r(a), "b": _r(b),
                           "higher_is_better": task.higher_is_better}  # fmt: skip
    if a is None or b is None:
        return row | {"diff": None, "ci_low": None, "ci_high": None, "verdict": "n/a"}
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(rounds):
        ix = rng.integers(0, task.n, task.n)
        va, vb = task.a(ix), task.b(ix)
        if va is not None and vb is not None:
            diffs.append(vb - va)
    lo, hi = (float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))) if diffs else (b - a, b - a)
    sign = 1 if task.higher_is_better else -1
    if sign * lo > 0 and sign * hi > 0:
        verdict = "better"
    elif sign * lo < 0 and sign * hi < 0:
        verdict = "worse"
    else:
        verdict = "within noise"
    return row | {"diff": _r(b - a), "ci_low": _r(lo), "ci_high": _r(hi), "verdict": verdict}


def _r(v: float | None) -> float | None:
    return None if v is None else round(float(v), 4)


def compare_bundles(
    a: VoceBundle, b: VoceBundle, enc_a: Encoder, enc_b: Encoder, sets: CompareSets, *,
    names: tuple[str, str] = ("active", "candidate"), taxonomy_a: Taxonomy | None = None,
    taxonomy_b: Taxonomy | None = None, progress: Progress | None = None, rounds: int = ROUNDS,
    base_a: Callable[[], Encoder] | None = None, base_b: Callable[[], Encoder] | None = None,
) -> dict[str, Any]:
    """Both bundles on every set of ``sets``; ``{"a", "b", "tasks": [...], "verdict"}`` (b relative to a)."""
    an_a = Analyzer(enc_a, a, default_detector(), taxonomy=taxonomy_a, base_encoder=base_a)
    an_b = Analyzer(enc_b, b, default_detector(), taxonomy=taxonomy_b, base_encoder=base_b)
    ra, rb = _analyse(an_a, sets, progress), _analyse(an_b, sets, progress)
    tasks: list[Task] = []
    space_a, space_b = set(an_a.taxonomy.topics.ids), set(an_b.taxonomy.topics.ids)
    for name, rows in sets.labelled.items():
        tasks += _labelled_tasks(name, rows, ra[name], rb[name], space_a, space_b)
    default_fp = default_taxonomy().touchpoints.fingerprint()
    if sets.realcx and an_a.taxonomy.touchpoints.fingerprint() == default_fp == an_b.taxonomy.touchpoints.fingerprint():
        topics_fp = default_taxonomy().topics.fingerprint()
        same = an_a.taxonomy.topics.fingerprint() == topics_fp == an_b.taxonomy.topics.fingerprint()
        tasks += _realcx_tasks(sets.realcx, ra["realcx_dev"], rb["realcx_dev"], same)
    if sets.checks and an_a.taxonomy.touchpoints.fingerprint() == default_fp == an_b.taxonomy.touchpoints.fingerprint():
        tasks += _check_tasks(sets.checks, ra["touchpoint_checks"], rb["touchpoint_checks"])
    rows = [paired_bootstrap(t, rounds=rounds) for t in tasks]
    verdicts = {r["verdict"] for r in rows}
    overall = "worse" if "worse" in verdicts else "better" if "better" in verdicts else "within noise"
    return {
        "a": {"name": names[0], "version": a.version},
        "b": {"name": names[1], "version": b.version},
        "rounds": rounds,
        "tasks": rows,
        "verdict": overall,
    }


def regressions(report: dict[str, Any]) -> list[str]:
    """``set/task`` of every task where b is worse than a outside the noise."""
    return [f"{t['set']}/{t['task']}" for t in report.get("tasks", []) if t["verdict"] == "worse"]


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def comparison_lines(report: dict[str, Any]) -> list[str]:
    """The report as plain lines (the training log)."""
    a, b = report["a"], report["b"]
    lines = [f"{'set':<24} {'task':<20} {'n':>5} {a['name']:>8} {b['name']:>9} {'diff':>7}  95% CI            verdict"]
    for t in report["tasks"]:
        ci = "" if t["ci_low"] is None else f"[{t['ci_low']:+.3f}, {t['ci_high']:+.3f}]"
        diff = "n/a" if t["diff"] is None else f"{t['diff']:+.3f}"
        arrow = "" if t["higher_is_better"] else " (lower is better)"
        lines.append(f"{t['set'][:24]:<24} {t['task']:<20} {t['n']:>5} {_fmt(t['a']):>8} {_fmt(t['b']):>9} "
                     f"{diff:>7}  {ci:<17} {t['verdict']}{arrow}")  # fmt: skip
    lines.append(f"verdict: {b['name']} ({b['version']}) is {report['verdict']} against {a['name']} ({a['version']})")
    return lines


def comparison_table(report: dict[str, Any]) -> Any:
    """A rich table of the report (``voce eval --compare``)."""
    from rich.table import Table

    a, b = report["a"], report["b"]
    t = Table(title=f"{b['name']} {b['version']} vs {a['name']} {a['version']} (paired bootstrap, "
                    f"{report['rounds']} rounds)", title_justify="left")  # fmt: skip
    for col in ("set", "task", "n", a["name"], b["name"], "diff", "95% CI", "verdict"):
        t.add_column(col, justify="left" if col in ("set", "task", "verdict") else "right")
    for r in report["tasks"]:
        ci = "" if r["ci_low"] is None else f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
        verdict = r["verdict"] + ("" if r["higher_is_better"] else " (lower is better)")
        t.add_row(r["set"], r["task"], str(r["n"]), _fmt(r["a"]), _fmt(r["b"]),
                  "n/a" if r["diff"] is None else f"{r['diff']:+.3f}", ci, verdict)  # fmt: skip
    return t


def run_compare(
    active: Path, candidate: Path, *, data: Path | None, data_dir: Path | None, cache_dir: Path,
    taxonomy: Path | None = None, progress: Progress | None = None, rounds: int = ROUNDS,
) -> dict[str, Any]:
    """``voce eval --compare ACTIVE CANDIDATE [--data FILE]``: both bundles on the same rows.

    The rows: the public dev split as the candidate recorded it (when the data folder has it and the candidate
    trained on public data), the dev rows of the candidate's own ``extra_data`` files and its ``eval_data`` (when
    they are still where its manifest says), the real-text dev set, the touchpoint check set, and ``data``.
    """
    from voce.data.custom import load_custom_file
    from voce.data.datasets import load_all, resolve_data_dir
    from voce.data.splits import SplitSpec
    from voce.eval.evaluate import _bundle_encoder, realcx_corpus
    from voce.models.taxonomy import load_taxonomy

    a, b = VoceBundle.load(active), VoceBundle.load(candidate)
    enc_a = _bundle_encoder(a, cache_dir, progress)
    enc_b = enc_a if b.encoder.get("name") == a.encoder.get("name") else _bundle_encoder(b, cache_dir, progress)
    cfg = b.manifest_extra.get("training_config") or {}
    spec = SplitSpec.from_manifest(b.manifest_extra.get("split"))
    examples: list[Example] = []
    if cfg.get("include_public_data", True) and resolve_data_dir(data_dir).is_dir():
        try:
            examples = [e for rows in load_all(data_dir).values() for e in rows]
        except FileNotFoundError as exc:
            if progress:
                progress(f"public dev split not scored: {exc}")
    held: dict[str, list[Example]] = {}
    for path in cfg.get("extra_data") or []:
        if Path(path).is_file():
            examples += load_custom_file(path).examples
    if cfg.get("eval_data") and Path(cfg["eval_data"]).is_file():
        held[f"eval_data:{Path(cfg['eval_data']).stem}"] = load_custom_file(cfg["eval_data"]).examples
    if data is not None:
        labelled = load_custom_file(data)
        if progress:
            progress(f"{data}: {labelled.summary()}")
        held[f"data:{data.stem}"] = labelled.examples
    _, dev = spec.split(examples) if examples else ([], [])
    sets = comparison_sets(dev, realcx_corpus(data_dir, progress), held)
    tax_a = load_taxonomy(taxonomy, base=a.taxonomy()) if taxonomy else None
    tax_b = load_taxonomy(taxonomy, base=b.taxonomy()) if taxonomy else None
    rep = compare_bundles(a, b, enc_a, enc_b, sets, taxonomy_a=tax_a, taxonomy_b=tax_b, progress=progress,
                          rounds=rounds)  # fmt: skip
    rep["a"]["path"], rep["b"]["path"] = str(active), str(candidate)
    rep["sets"] = {**{k: len(v) for k, v in sets.labelled.items()}, "realcx_dev": len(sets.realcx),
                   "touchpoint_checks": 2 * len(sets.checks)}  # fmt: skip
    for enc in {id(enc_a): enc_a, id(enc_b): enc_b}.values():
        save = getattr(enc, "save", None)
        if save:
            save()
    return rep
