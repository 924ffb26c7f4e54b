"""Raw per-document scores of the shipped model on real labelled texts, for calibrating decision rules.

The analyzer's final decisions (document sentiment label, reported topics) come from thresholds applied to
scores; to fit a rule on a calibration split and check it on another, the scores themselves are needed.  This
module runs the analyzer's own encoding and heads (one pass, the same code the service runs) and keeps, per
document: the window-weighted 4-way sentiment probabilities, each sentence's 4-way probabilities and length, and
per topic the document score the analyzer compares with the topic's threshold (learned or zero-shot, after the
language fallback), the threshold, and whether the topic is learned.

The result is cached as ``.npz``-like pickles under the cache folder (never committed: they hold no text, but are
large and model-specific).
"""
from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voce.models.analyzer import Analyzer, _add_log_odds, _logit
from voce.models.types import DocumentError, DocumentInput


@dataclass
class DocScores:
    """One document's raw scores (no text)."""

    uid: str
    language: str
    doc_p4: np.ndarray  # (4,) window-weighted sentiment probabilities
    sent_p4: np.ndarray  # (n_sentences, 4)
    sent_len: np.ndarray  # (n_sentences,) characters
    topic_score: np.ndarray  # (n_topics,) the document score compared with the threshold
    topic_threshold: np.ndarray  # (n_topics,)
    label: str  # the analyzer's document sentiment label as shipped
    reported: tuple[str, ...]  # topics the analyzer reports as shipped
    vec: np.ndarray | None = None  # (dim,) the document vector (L2-normalised, as discovery and the heads read it)


def dump_scores(
    analyzer: Analyzer, rows: Sequence[tuple[str, str, str]], *, batch: int = 32,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[str], list[bool], list[DocScores]]:
    """``(topic ids, learned flags, scores)`` for ``rows`` of ``(uid, text, language)``."""
    tax = analyzer.taxonomy
    out: list[DocScores] = []
    ids: list[str] = tax.topics.ids
    learned_flags: list[bool] = []
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        docs = [DocumentInput(id=u, text=t, language=lang) for u, t, lang in chunk]
        prepared = [p for p in (analyzer._prepare(d) for d in docs) if not isinstance(p, DocumentError)]
        if not prepared:
            continue
        b = analyzer._score_units(prepared, tax)
        assert b.topics is not None
        ids, scores, zero_shot, thresholds, learned = b.topics
        learned_flags = learned
        for row, p in enumerate(prepared):
            result, vec = analyzer._document(row, p, b, tax)
            win_idx = [p.rows[t] for t in p.windows]
            sen_idx = [p.rows[s.text] for s in p.sentences]
            w = np.asarray(p.window_weights, np.float32)
            w /= w.sum()
            doc_p4 = (b.sentiment[win_idx] * w[:, None]).sum(axis=0)
            all_idx = win_idx + sen_idx
            tscore = np.zeros(len(ids), np.float32)
            for j, tid in enumerate(ids):
                col = scores[:, j]
                langs = analyzer.bundle.topic_languages.get(tid)
                if learned[j] and langs and p.language not in langs:
                    col = np.maximum(col, _add_log_odds(zero_shot[:, j], _logit(float(thresholds[j]))))
                tscore[j] = float(col[all_idx].max())
            out.append(DocScores(
                uid=p.doc.id, language=p.language, doc_p4=doc_p4.astype(np.float32),
                sent_p4=b.sentiment[sen_idx].astype(np.float32),
                sent_len=np.asarray([s.length for s in p.sentences], np.int32),
                topic_score=tscore, topic_threshold=np.asarray(thresholds, np.float32),
                label=result.sentiment.label, reported=tuple(t.id for t in result.topics), vec=vec.astype(np.float32),
            ))  # fmt: skip
        if progress and (start // batch) % 20 == 0:
            progress(f"  {min(start + batch, len(rows))}/{len(rows)}")
    return ids, learned_flags, out


def cached_scores(
    path: Path, analyzer: Analyzer, rows: Sequence[tuple[str, str, str]], progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """:func:`dump_scores`, read from ``path`` when it already holds the same uids."""
    uids = [u for u, _, _ in rows]
    if path.is_file():
        data = load_scores(path)
        if data.get("uids") == uids and all(s.vec is not None for s in data["scores"].values()):
            return data
    ids, learned, scores = dump_scores(analyzer, rows, progress=progress)
    data = {"uids": uids, "topic_ids": ids, "learned": learned, "scores": {s.uid: s for s in scores}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(data))
    return data


class _Unpickler(pickle.Unpickler):
    """Finds :class:`DocScores` also when the dump ran as ``__main__``."""

    def find_class(self, module: str, name: str) -> Any:
        if name == "DocScores":
            return DocScores
        return super().find_class(module, name)


def load_scores(path: Path) -> dict[str, Any]:
    """A dump written by :func:`cached_scores`."""
    with path.open("rb") as fh:
        out: dict[str, Any] = _Unpickler(fh).load()
    return out


def load_analyzer(cache_dir: Path) -> Analyzer:
    """The shipped bundle with its real encoder behind the on-disk embedding cache."""
    from voce.eval.evaluate import _bundle_encoder
    from voce.models.bundle import VoceBundle, default_bundle_path
    from voce.models.language import default_detector

    bundle = VoceBundle.load(default_bundle_path())
    encoder = _bundle_encoder(bundle, cache_dir, None)
    return Analyzer(encoder, bundle, default_detector())


def main() -> None:
    """Dump the scores of every calibration and report set (``python -m voce.eval.quality_dump [limit]``)."""
    import os
    import sys
    import time

    from voce.data.datasets import load_all, load_ate_absita
    from voce.data.realcx import load_realcx
    from voce.data.splits import SplitSpec
    from voce.data.unlabelled import load_unlabelled

    limit = int(sys.argv[1]) if len(sys.argv) > 1 else None
    cache_dir = Path(os.environ.get("VOCE_CACHE_DIR", ".cache/voce"))
    out_dir = cache_dir / "quality"
    analyzer = load_analyzer(cache_dir)
    spec = SplitSpec.from_manifest(analyzer.bundle.manifest_extra.get("split"))
    examples = [e for rows in load_all().values() for e in rows if e.text.strip()]
    train, dev = spec.split(examples)
    _, cal = spec.calibration(train)
    sets: dict[str, list[tuple[str, str, str]]] = {
        "public_cal": [(e.uid, e.text, e.language) for e in cal],
        "public_dev": [(e.uid, e.text, e.language) for e in dev + load_ate_absita("dev") if e.text.strip()],
        "realcx": [(r.uid, r.text, r.language) for r in load_realcx()],
        "amazon_it": [(r.uid, r.text, r.language) for r in load_unlabelled("it_amazon_gdmr") if r.text.strip()],
    }
    for name, rows in sets.items():
        rows = rows[:limit] if limit else rows
        t0 = time.time()
        cached_scores(out_dir / f"{name}{'_' + str(limit) if limit else ''}.pkl", analyzer, rows, progress=print)
        print(f"{name}: {len(rows)} texts in {time.time() - t0:.0f} s", flush=True)
    analyzer.encoder.save()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
