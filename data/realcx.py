"""The real-text CX corpus: touchpoints, primary topic and journey stage annotated by guideline.

About 3,500 real Italian and English customer texts from every folder of the shared
data (tweets to public services and to brands, Amazon.it and product reviews,
airline reviews and tweets, hotel and restaurant sentences) were labelled by the
written guideline ``labels/realcx/GUIDELINE.md``: every touchpoint the text is about
with a primary one (or ``none``), the topics with the primary first, and the stage of
the text's domain journey (``labels/realcx/journeys/*.yaml``).  Only labels are
committed, keyed by ``<source>:<id>``; the texts are joined from the shared data folder
at load time (their licences do not allow redistribution).

How the labels were made (numbers in ``labels/realcx/AGREEMENT.md``):
pass 1 labelled every text, pass 2 labelled a stratified 10% again independently,
disagreements were adjudicated, and pass-1 labels touched by the guideline's v1.1
clarifications were revisited.  :func:`merge_passes` rebuilds the gold labels from the
committed passes; ``labels.jsonl`` is its output.

Split: a text is dev when its group hashes below ``REALCX_SPLIT.dev_fraction`` with
the same rule and seed as the public datasets, so a public-dataset sentence that is
in the public dev split is also in this dev split.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from voce.data.datasets import DATASETS, load_ate_absita, load_dataset
from voce.data.splits import SplitSpec
from voce.data.unlabelled import UNLABELLED, load_unlabelled

#: the dev split of the corpus: the public datasets' rule (seed 13, 20% of groups)
REALCX_SPLIT = SplitSpec(seed=13, dev_fraction=0.2)
#: the default taxonomy's touchpoint ids, in the guideline's order
TOUCHPOINTS: tuple[str, ...] = (
    "product_service", "website", "mobile_app", "store", "store_staff", "call_center", "chat_chatbot", "email",
    "social_media", "advertising", "brochure", "trade_fair", "in_store_promoter", "delivery", "packaging", "billing",
)  # fmt: skip
NONE = "none"
#: the journey taxonomies the stages were labelled with (``labels/realcx/journeys/<name>.yaml``)
JOURNEYS: tuple[str, ...] = ("telco", "utility", "ecommerce", "airline")


@dataclass(frozen=True, slots=True)
class CXText:
    """One annotated real text."""

    uid: str
    source: str
    group: str
    language: str
    text: str
    #: how it was sampled: "random", "keyword:<touchpoint>" (rare-class search) or "domain:<name>"
    stratum: str
    #: every touchpoint the text is about; empty iff ``primary == "none"``
    touchpoints: tuple[str, ...]
    #: the touchpoint it is mainly about, or "none"
    primary: str
    #: topics of the default taxonomy, the primary first; empty for texts outside customer experience
    topics: tuple[str, ...]
    #: which journey list applies ("" = none asked) and the stage ("none" = fits no stage)
    journey: str
    stage: str
    #: labelled twice (pass 2)
    double: bool

    @property
    def primary_topic(self) -> str:
        return self.topics[0] if self.topics else NONE


def labels_dir() -> Path:
    """The committed label files (package data)."""
    return Path(str(resources.files("voce.data").joinpath("labels", "realcx")))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def merge_passes(folder: Path | None = None) -> list[dict[str, Any]]:
    """Gold labels from the committed passes: pass 1, then the v1.1 revisit, then the adjudication of pass 2.

    Each later file overrides only the fields it carries, for the uids it names.
    """
    folder = folder or labels_dir()
    sample = {r["uid"]: r for r in read_jsonl(folder / "sample.jsonl")}
    gold = {r["uid"]: dict(r) for r in read_jsonl(folder / "passes" / "pass1.jsonl")}
    double = {r["uid"] for r in read_jsonl(folder / "passes" / "pass2.jsonl")}
    for name in ("revisit.jsonl", "adjudication.jsonl"):
        for r in read_jsonl(folder / "passes" / name):
            gold[r["uid"]].update({k: v for k, v in r.items() if k != "note"})
    out = []
    for uid in sorted(gold):
        g, s = gold[uid], sample[uid]
        out.append({
            "uid": uid, "source": s["source"], "group": s["group"], "lang": s["lang"], "stratum": s["stratum"],
            "journey": s["journey"], "touchpoints": g["touchpoints"], "primary": g["primary"], "topics": g["topics"],
            "stage": g["stage"] if s["journey"] else "", "double": uid in double,
        })  # fmt: skip
    return out


def source_texts(sources: Iterable[str], data_dir: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """uid -> text for every row of the named sources (public datasets and unlabelled folders)."""
    out: dict[str, str] = {}
    for src in set(sources):
        if src in UNLABELLED:
            out |= {t.uid: t.text for t in load_unlabelled(src, data_dir)}
        elif src in DATASETS:
            rows = load_dataset(src, data_dir)
            if src == "ate_absita2020":
                rows = rows + load_ate_absita("dev", data_dir)
            out |= {e.uid: e.text for e in rows}
        else:
            raise KeyError(f"unknown source {src!r}")
    return out


def load_realcx(data_dir: str | os.PathLike[str] | None = None) -> list[CXText]:
    """The annotated corpus with its texts joined from the data folder (every label must find its text)."""
    labels = read_jsonl(labels_dir() / "labels.jsonl")
    texts = source_texts({r["source"] for r in labels}, data_dir)
    missing = [r["uid"] for r in labels if r["uid"] not in texts]
    if missing:
        raise ValueError(f"{len(missing)} labelled texts are not in the data folder, e.g. {missing[:3]}")
    return [
        CXText(
            uid=r["uid"], source=r["source"], group=r["group"], language=r["lang"], text=texts[r["uid"]],
            stratum=r["stratum"], touchpoints=tuple(r["touchpoints"]), primary=r["primary"],
            topics=tuple(r["topics"]), journey=r["journey"], stage=r["stage"], double=r["double"],
        )
        for r in labels
    ]


def split_realcx(rows: Iterable[CXText], spec: SplitSpec = REALCX_SPLIT) -> tuple[list[CXText], list[CXText]]:
    """``(train, dev)`` by group, with the public datasets' hash rule."""
    return spec.split(rows)  # type: ignore[arg-type]


def by_source(rows: Iterable[CXText]) -> Iterator[tuple[str, list[CXText]]]:
    """Rows grouped by source, sources in sorted order (leave-one-source-out evaluation)."""
    groups: dict[str, list[CXText]] = {}
    for r in rows:
        groups.setdefault(r.source, []).append(r)
    yield from sorted(groups.items())


def cohen_kappa(a: list[Any], b: list[Any]) -> float:
    """Cohen's kappa of two annotators' labels on the same items."""
    n = len(a)
    if n == 0:
        raise ValueError("no items")
    po = sum(x == y for x, y in zip(a, b, strict=True)) / n
    ca: dict[Any, int] = {}
    cb: dict[Any, int] = {}
    for x, y in zip(a, b, strict=True):
        ca[x] = ca.get(x, 0) + 1
        cb[y] = cb.get(y, 0) + 1
    pe = sum(ca[k] * cb.get(k, 0) for k in ca) / (n * n)
    return 1.0 if pe == 1 else (po - pe) / (1 - pe)


def agreement(folder: Path | None = None) -> dict[str, Any]:
    """Pass 1 against pass 2 on the double-labelled texts: raw agreement and Cohen's kappa per field."""
    folder = folder or labels_dir()
    sample = {r["uid"]: r for r in read_jsonl(folder / "sample.jsonl")}
    p1 = {r["uid"]: r for r in read_jsonl(folder / "passes" / "pass1.jsonl")}
    p2 = {r["uid"]: r for r in read_jsonl(folder / "passes" / "pass2.jsonl")}
    both = sorted(p2)

    def field(name: str, uids: list[str], get: Any) -> dict[str, Any]:
        a, b = [get(p1[u]) for u in uids], [get(p2[u]) for u in uids]
        raw = sum(x == y for x, y in zip(a, b, strict=True)) / len(uids)
        return {"n": len(uids), "agreement": round(raw, 3), "kappa": round(cohen_kappa(a, b), 3)}

    out: dict[str, Any] = {"double_labelled": len(both)}
    out["primary_touchpoint"] = field("primary", both, lambda r: r["primary"])
    for lang in ("it", "en"):
        out[f"primary_touchpoint_{lang}"] = field("primary", [u for u in both if sample[u]["lang"] == lang],
                                                  lambda r: r["primary"])
    out["primary_topic"] = field("topic", both, lambda r: r["topics"][0] if r["topics"] else NONE)
    out["stage"] = field("stage", [u for u in both if sample[u]["journey"]], lambda r: r["stage"])
    presence = {}
    for tp in TOUCHPOINTS:
        a = [tp in p1[u]["touchpoints"] for u in both]
        b = [tp in p2[u]["touchpoints"] for u in both]
        if any(a) or any(b):
            presence[tp] = {"pass1": sum(a), "pass2": sum(b), "kappa": round(cohen_kappa(a, b), 3)}
    out["touchpoint_presence"] = presence
    out["pass2_primary_in_pass1_set"] = round(
        sum(p2[u]["primary"] in (p1[u]["touchpoints"] or [NONE]) for u in both) / len(both), 3)
    return out


def agreement_markdown(folder: Path | None = None) -> str:
    """``AGREEMENT.md``: corpus counts, the annotation process and pass-1/pass-2 agreement."""
    folder = folder or labels_dir()
    a = agreement(folder)
    rows = read_jsonl(folder / "labels.jsonl")

    def count(items: Iterable[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for k in items:
            out[k] = out.get(k, 0) + 1
        return out

    lang = count(r["lang"] for r in rows)
    strata = count(r["stratum"].split(":")[0] for r in rows)
    tp_any = count(t for r in rows for t in r["touchpoints"])
    tp_prim = count(r["primary"] for r in rows)
    per_lang = {lg: count(t for r in rows if r["lang"] == lg for t in r["touchpoints"]) for lg in ("it", "en")}
    revisit = read_jsonl(folder / "passes" / "revisit.jsonl")
    adjudicated = read_jsonl(folder / "passes" / "adjudication.jsonl")
    lines = [
        "# The real-text CX corpus: counts and annotator agreement\n",
        "Generated from the committed label files by `python -m voce.data.realcx`; no text is stored here.\n",
        f"## Corpus\n\n{len(rows)} real texts: {lang.get('it', 0)} Italian, {lang.get('en', 0)} English, drawn by "
        f"`python -m voce.data.sample_realcx` (seed 20261204): {strata.get('random', 0)} at random per source, "
        f"{strata.get('keyword', 0)} by a deliberate keyword search for rare touchpoints, {strata.get('domain', 0)} telco "
        "and utility tweets for the journey taxonomies.\n",
        "| source | texts |\n|---|---|",
        *(f"| `{s}` | {n} |" for s, n in sorted(count(r["source"] for r in rows).items())),
        "\n| touchpoint | texts about it (it / en) | primary |\n|---|---|---|",
        *(f"| `{t}` | {n} ({per_lang['it'].get(t, 0)} / {per_lang['en'].get(t, 0)}) | {tp_prim.get(t, 0)} |"
          for t, n in sorted(tp_any.items(), key=lambda kv: -kv[1])),
        f"| none | — | {tp_prim.get(NONE, 0)} |",
    ]  # fmt: skip
    rare = [t for t in TOUCHPOINTS if tp_any.get(t, 0) < 30]
    lines.append(
        "\nTouchpoints with fewer than 30 real examples despite the keyword search over every folder: "
        + ", ".join(f"`{t}` ({tp_any.get(t, 0)})" for t in rare)
        + ". They are reported as such; no written example was added.\n"
    )
    lines += [
        "## Process\n",
        "1. Guideline v1 written before any label (`GUIDELINE.md`).",
        "2. Pass 1: every text labelled once, in 24 batches, by 8 annotators working from the guideline alone.",
        "3. The pass-1 annotators' open questions became hard cases 14–21 and the stage clarifications (v1.1).",
        f"4. Pass 2: a source-stratified {a['double_labelled']} texts labelled again, blind to pass 1, under v1.1.",
        f"5. Adjudication: {len(adjudicated)} texts where the passes disagreed on the touchpoints or the stage, settled "
        "by the lead against v1.1 (`passes/adjudication.jsonl`).",
        f"6. Revisit: the 515 pass-1 texts that v1.1 could affect were re-read; {len(revisit)} labels changed, "
        f"{sum('primary' in r for r in revisit)} of them in the primary touchpoint (`passes/revisit.jsonl`).",
        "7. Lead review of 60 random pass-1 labels against the full texts: no primary touchpoint needed changing.\n",
        "## Agreement (pass 1 against pass 2, before adjudication)\n",
        "| field | texts | raw agreement | Cohen's κ |\n|---|---|---|---|",
    ]
    for k in ("primary_touchpoint", "primary_touchpoint_it", "primary_touchpoint_en", "primary_topic", "stage"):
        lines.append(f"| {k.replace('_', ' ')} | {a[k]['n']} | {a[k]['agreement']} | {a[k]['kappa']} |")
    lines.append("\n| touchpoint present | pass 1 | pass 2 | κ |\n|---|---|---|---|")
    lines += [f"| `{t}` | {v['pass1']} | {v['pass2']} | {v['kappa']} |" for t, v in a["touchpoint_presence"].items()]
    share = a["pass2_primary_in_pass1_set"]
    lines.append(f"\nThe pass-2 primary is among the pass-1 touchpoints for {share:.1%} of the texts.\n")
    lines.append(
        "**Read these numbers with care.** Both passes and the adjudication were made by instances of the same language "
        "model working from the same written guideline, not by independent people. Their errors are correlated, so this κ "
        "says how unambiguous the guideline is for one careful reader and overstates what two human annotators would "
        "reach. The hardest decisions (customer-service contacts with no channel, replies inside Twitter support threads, "
        "policy opinions against complaints about one's own benefit) are the guideline's hard cases; `social_media` is the "
        "least stable class.\n"
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Rebuild ``labels.jsonl`` from the committed passes and ``AGREEMENT.md`` from both."""
    folder = labels_dir()
    rows = merge_passes(folder)
    (folder / "labels.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    (folder / "AGREEMENT.md").write_text(agreement_markdown(folder), "utf-8")
    print(f"{len(rows)} labels; agreement report written to {folder / 'AGREEMENT.md'}")


if __name__ == "__main__":
    main()


def journey_path(name: str) -> Path:
    """The YAML of one held-apart journey taxonomy (``mode: single`` touchpoints)."""
    if name not in JOURNEYS:
        raise KeyError(f"unknown journey {name!r}; known: {', '.join(JOURNEYS)}")
    return labels_dir() / "journeys" / f"{name}.yaml"
