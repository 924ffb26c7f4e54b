"""The learning loop measured: how many corrections a team needs before the model follows its way of labelling.

    python -m benchmarks.learning_curve --out reports/learning_curve

The labelled set: the journey stages of the annotated real-text corpus (``data/labels/realcx``: real Italian and
English texts, stages labelled by the written guideline against ``journeys/<name>.yaml``).  A journey is a custom
taxonomy the shipped model was never trained on (only ``airline`` took part in fitting the exclusive-section
calibration, so it is left out), exactly the case of a team bringing its own taxonomy.

For each journey, every text with a stage is analysed once by the shipped model with the journey as an exclusive
custom section (what ``/v1/analyze`` answers with that taxonomy and no correction: round 0, zero-shot), which also
gives the document vectors the heads read.  Then :func:`voce.eval.learning_curve.simulate` reveals the stages in
rounds of corrections and, each round, retrains a stage head on the corrections so far with the training layer's
softmax fitter (``training.fit.fit_softmax_head``, C = ``TrainConfig.C_touchpoints``: the fit behind the learned
touchpoint head; no value tuned here), scored on held-out texts.  Texts stay in the data folder; vectors are cached
under ``--cache-dir``; only figures are written.
"""
from __future__ import annotations

import argparse
import hashlib
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from voce.data.realcx import NONE, CXText, journey_path, load_realcx
from voce.eval.learning_curve import CurveConfig, Fit, curve_svg, simulate, write_report
from voce.models.analyzer import Analyzer
from voce.models.spec import AnalyzerSpec, load_analyzer
from voce.models.taxonomy import load_taxonomy
from voce.models.types import DocumentInput
from voce.training.config import TrainConfig
from voce.training.fit import fit_softmax_head

#: journeys never used to fit anything in the shipped bundle (airline fitted the exclusive calibration)
HELD_APART = ("utility", "ecommerce", "telco")


def stage_fitter(seed: int) -> Fit:
    """Retraining on the corrections so far: a multinomial stage head on the document vectors."""
    C = TrainConfig.model_fields["C_touchpoints"].default
    empty = np.zeros((0, 1), np.float32)

    def fit(x: np.ndarray, labels: list[str], space: list[str]) -> Any:
        head = fit_softmax_head(np.asarray(x, np.float32), labels, space, C=C, seed=seed, x_cal=empty, y_cal=[])
        return lambda v: [space[i] for i in head.logits(np.asarray(v, np.float32)).argmax(axis=1)]

    return fit


def encode_journey(analyzer: Analyzer, rows: list[CXText], name: str, cache: Path,
                   say: Any) -> tuple[np.ndarray, list[str]]:
    """Document vectors and zero-shot stages of ``rows`` under the journey taxonomy (cached by texts and model)."""
    taxonomy = load_taxonomy(journey_path(name))
    key = hashlib.sha256("\n".join([analyzer.bundle.version, analyzer.encoder.name, taxonomy.version,
                                    *(r.uid + r.text for r in rows)]).encode()).hexdigest()[:16]
    path = cache / f"{name}-{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return z["vectors"], [str(s) for s in z["zero_shot"]]
    vectors, zero = [], []
    for start in range(0, len(rows), 32):
        chunk = rows[start:start + 32]
        docs = [DocumentInput(id=r.uid, text=r.text, language=r.language) for r in chunk]  # type: ignore[arg-type]
        results, errors, vecs = analyzer.analyze_with_embeddings(docs, taxonomy=taxonomy)
        if errors:
            raise RuntimeError(f"texts of the annotated corpus were refused: {errors[:3]}")
        vectors.append(vecs)
        zero += [r.touchpoints[0].id if r.touchpoints else NONE for r in results]
        say(f"  {name}: {min(start + 32, len(rows))}/{len(rows)} analysed")
    out = np.vstack(vectors).astype(np.float32)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, vectors=out, zero_shot=np.asarray(zero))
    return out, zero


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("reports/learning_curve"))
    ap.add_argument("--journeys", nargs="+", default=list(HELD_APART))
    ap.add_argument("--rounds", type=int, nargs="+", default=list(CurveConfig().rounds))
    ap.add_argument("--repeats", type=int, default=CurveConfig().repeats)
    ap.add_argument("--cache-dir", type=Path, default=Path(".cache/voce"))
    ap.add_argument("--data-dir", type=Path, default=None, help="the shared data folder (default: as the loaders find it)")
    args = ap.parse_args()
    t0 = time.time()

    def say(msg: str) -> None:
        print(f"[{time.time() - t0:6.1f}s] {msg}", flush=True)

    rows = load_realcx(args.data_dir)
    analyzer = load_analyzer(AnalyzerSpec(backend="onnx", cache_dir=args.cache_dir))
    cfg = CurveConfig(rounds=tuple(args.rounds), repeats=args.repeats)
    results: dict[str, Any] = {}
    for name in args.journeys:
        staged = [r for r in rows if r.journey == name and r.stage not in ("", NONE)]
        say(f"{name}: {len(staged)} texts with a stage")
        vectors, zero = encode_journey(analyzer, staged, name, args.cache_dir / "learning_curve", say)
        gold = [r.stage for r in staged]
        # two ways to retrain: the head on the document vector alone, and the head reading the zero-shot answer
        # too (its one-hot beside the unit-length vector, weight 1 fixed beforehand), so it starts from the
        # taxonomy's descriptions instead of from nothing
        stages = sorted(set(gold))
        onehot = np.asarray([[float(z == s) for s in stages] for z in zero], np.float32)
        for variant, x in ((name, vectors), (f"{name} + zero-shot", np.hstack([vectors, onehot]))):
            results[variant] = simulate(x, gold, stage_fitter(cfg.seed), zero_shot=zero, config=cfg)
            r = results[variant]
            say(f"{variant}: zero-shot {r['zero_shot']['accuracy']}, majority {r['majority']['accuracy']}, curve "
                + ", ".join(f"{p['corrections']}: {p['accuracy']} (F1 {p['macro_f1']})" for p in r["curve"])
                + f"; needed {r['corrections_needed']}")
    sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    meta = {
        "what": "journey-stage accuracy on held-out real texts against the number of corrections revealed; each round"
                " retrains a stage head (training.fit.fit_softmax_head) on the corrections so far",
        "model": analyzer.bundle.version, "encoder": analyzer.encoder.name, "git_sha": sha,
        "machine": platform.platform(), "seconds": round(time.time() - t0, 1),
        "command": "python -m benchmarks.learning_curve " + " ".join(
            f"--journeys {' '.join(args.journeys)} --repeats {args.repeats} --rounds "
            f"{' '.join(map(str, args.rounds))}".split()),
    }
    report = write_report(results, args.out, "journeys", meta)
    plots = [curve_svg({k: v for k, v in results.items() if k.split(" ")[0] == name},
                       args.out / f"journeys-{name}.svg", f"{name} journey stages after N corrections")
             for name in args.journeys]
    say(f"wrote {report} and {', '.join(map(str, plots))}")


if __name__ == "__main__":
    main()
