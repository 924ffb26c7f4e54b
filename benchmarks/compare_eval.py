"""Two `voce eval` reports side by side: each metric, its bootstrap interval in the first, and whether the second
falls inside it (the issue's rule for "quality unchanged").  Writes JSON and prints a Markdown table.

    python -m benchmarks.compare_eval reports/perf/fp32_eval.json reports/perf/int8_eval.json \
        --out reports/perf/int8_vs_fp32_eval.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

#: metrics where lower is better (calibration errors)
LOWER_IS_BETTER = ("_ece",)


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for name, va in a["metrics"].items():
        vb = b["metrics"].get(name)
        if not isinstance(va, int | float) or not isinstance(vb, int | float) or isinstance(va, bool):
            continue
        spread = a.get("spread", {}).get(name) or {}
        low, high = spread.get("ci_low"), spread.get("ci_high")
        inside = None if low is None or high is None else bool(low <= vb <= high)
        delta = round(vb - va, 4)
        worse = (delta > 0) if name.endswith(LOWER_IS_BETTER) else (delta < 0)
        rows[name] = {"a": va, "b": vb, "delta": delta, "a_ci": [low, high] if low is not None else None,
                      "b_inside_a_ci": inside,
                      "verdict": "no interval" if inside is None else "within" if inside else "worse" if worse else "better"}
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    a, b = (json.loads(p.read_text("utf-8")) for p in (args.a, args.b))
    rows = compare(a, b)
    print(f"| metric | {a.get('encoder', {}).get('precision', args.a.stem)} [95% interval] | "
          f"{b.get('encoder', {}).get('precision', args.b.stem)} | Δ | verdict |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        ci = f" [{r['a_ci'][0]:.3f}, {r['a_ci'][1]:.3f}]" if r["a_ci"] else ""
        print(f"| {name} | {r['a']:.4f}{ci} | {r['b']:.4f} | {r['delta']:+.4f} | {r['verdict']} |")
    if args.out:
        summary = {v: sum(1 for r in rows.values() if r["verdict"] == v) for v in ("within", "worse", "better", "no interval")}
        args.out.write_text(json.dumps({"a": str(args.a), "b": str(args.b), "encoders": [a.get("encoder"), b.get("encoder")],
                                        "summary": summary, "metrics": rows}, indent=2) + "\n", "utf-8")


if __name__ == "__main__":
    main()
