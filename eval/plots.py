"""Reliability diagrams as dependency-free SVG images (no plotting library needed on a server)."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def reliability_svg(bins: dict[str, Any], title: str, path: Path, size: int = 360) -> Path:
    """Bar per confidence bin at its observed accuracy, against the diagonal of perfect calibration."""
    pad, inner = 40, size - 60
    x0, y0 = pad, size - pad  # origin (bottom-left)

    def px(v: float) -> float:
        return x0 + v * inner

    def py(v: float) -> float:
        return y0 - v * inner

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" font-family="sans-serif" font-size="11">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{size / 2}" y="16" text-anchor="middle" font-size="13">{title} (ECE {bins["ece"]:.3f}, n={bins["n"]})</text>',
        f'<line x1="{px(0)}" y1="{py(0)}" x2="{px(1)}" y2="{py(1)}" stroke="#999" stroke-dasharray="4 3"/>',
        f'<line x1="{x0}" y1="{y0}" x2="{px(1)}" y2="{y0}" stroke="black"/>',
        f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{py(1)}" stroke="black"/>',
        f'<text x="{size / 2}" y="{size - 8}" text-anchor="middle">confidence</text>',
        f'<text x="12" y="{size / 2}" text-anchor="middle" transform="rotate(-90 12 {size / 2})">accuracy</text>',
    ]
    for t in (0.0, 0.5, 1.0):
        parts.append(f'<text x="{px(t)}" y="{y0 + 14}" text-anchor="middle">{t:g}</text>')
        parts.append(f'<text x="{x0 - 6}" y="{py(t) + 4}" text-anchor="end">{t:g}</text>')
    for lo, hi, acc, conf, n in zip(
        bins["bin_lower"], bins["bin_upper"], bins["accuracy"], bins["confidence"], bins["count"], strict=True
    ):
        if acc is None or n == 0:
            continue
        w = px(hi) - px(lo) - 1
        parts.append(
            f'<rect x="{px(lo) + 0.5:.1f}" y="{py(acc):.1f}" width="{w:.1f}" height="{y0 - py(acc):.1f}" '
            f'fill="#3b7dd8" fill-opacity="0.8"><title>conf {conf:.3f} acc {acc:.3f} n={n}</title></rect>'
        )
        parts.append(f'<circle cx="{px(conf):.1f}" cy="{py(conf):.1f}" r="2" fill="#d83b3b"/>')
    parts.append("</svg>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts) + "\n", "utf-8")
    return path
