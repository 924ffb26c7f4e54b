"""Old vs new discovered-theme labels on real unlabelled texts (``python -m voce.eval.discovery_labels``).

Reads the real encoder's document vectors and assigned topics from the score dump of the annotated corpus
(``python -m voce.eval.quality_dump``: its texts from the four ``unlabelled/`` folders, joined by id), runs topic
discovery once, and labels the same themes both ways: the c-TF-IDF keywords of each language joined
(``_keywords_by_language`` + ``_label`` with the stop list as it was, before) and the short labels
(``short_labels``: KeyBERT-inspired ranking and BERTopic's MMR over the batch's vectors, language-aware stop
words).  Writes labels and counts only, never a comment, to ``reports/discovery/labels_before_after.md`` (and ``.json``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from unittest.mock import patch

import numpy as np

from voce.data.unlabelled import UNLABELLED, load_unlabelled
from voce.eval.quality_dump import load_scores
from voce.models.discovery import _keywords_by_language, _label, discover_topics, normalize_language

OUT = Path("reports/discovery/labels_before_after")


def shipped_stopwords() -> frozenset[str]:
    """The stop list before this change: the file without the sections added after reading real labels."""
    from importlib import resources

    text = resources.files("voce.models.resources").joinpath("stopwords_it_en.txt").read_text(encoding="utf-8")
    words, skip = set(), False
    for line in text.splitlines():
        if line.startswith("# ---"):
            skip = "name no theme" in line
            continue
        word = line.split("#", 1)[0].strip().lower()
        if word and not skip:
            words.add(word)
    return frozenset(words)


def main() -> None:
    cache = Path(os.environ.get("VOCE_CACHE_DIR", ".cache/voce")) / "quality" / "realcx.pkl"
    scores = load_scores(cache)["scores"]
    rows = [r for name in UNLABELLED for r in load_unlabelled(name) if r.uid in scores]
    texts = [r.text for r in rows]
    vecs = np.stack([scores[r.uid].vec for r in rows]).astype(np.float32)
    langs = [scores[r.uid].language for r in rows]
    assigned = [list(scores[r.uid].reported) for r in rows]
    result = discover_topics(texts, vecs, langs, assigned_topics=assigned, seed=13)
    labels = np.asarray(result.assignments, np.int64)
    k = len(result.topics)
    with patch("voce.models.discovery.stopwords", lambda language=None: shipped_stopwords()):
        old_kw = _keywords_by_language(texts, labels, [normalize_language(x) for x in langs], k)
    sources: dict[str, int] = {}
    for r in rows:
        sources[r.source] = sources.get(r.source, 0) + 1
    table = []
    for t in result.topics:
        table.append({
            "id": t.id, "size": t.size, "languages": t.languages, "taxonomy_topic": t.taxonomy_topic,
            "before": _label(old_kw[t.id], t.languages, t.size), "after": t.label, "after_by_language": t.labels,
        })  # fmt: skip
    OUT.parent.mkdir(parents=True, exist_ok=True)
    summary = {"texts": len(rows), "sources": sources, "themes": k, "outlier_share": result.outlier_share}
    OUT.with_suffix(".json").write_text(json.dumps({**summary, "themes_table": table}, indent=2, ensure_ascii=False) + "\n")
    lines = [
        "# Discovered-theme labels, before and after (real unlabelled texts)",
        "",
        f"{len(rows)} real texts ({', '.join(f'{k}: {v}' for k, v in sorted(sources.items()))}), the shipped model's "
        f"document vectors; {k} themes, outlier share {result.outlier_share}. Same themes both ways: only the label "
        "changes. Labels and counts only (no comments). Produced by `python -m voce.eval.discovery_labels`.",
        "",
        "| # | size | it / en | taxonomy topic | before (c-TF-IDF keywords, both languages) | after (main language) "
        "| after, it | after, en |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in table:
        lang = row["languages"]
        by = row["after_by_language"]
        lines.append(
            f"| {row['id']} | {row['size']} | {lang.get('it', 0)} / {lang.get('en', 0)} | {row['taxonomy_topic'] or ''} | "
            f"{row['before']} | {row['after']} | {by.get('it', '')} | {by.get('en', '')} |"
        )
    OUT.with_suffix(".md").write_text("\n".join(lines) + "\n", "utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
