"""Hostile inputs, timed: what used to take minutes or gigabytes, and what it takes now (issue 13).

Each case runs in its own subprocess, under a wall-clock cap, and reports its time and its peak RSS (the tests
never assert on time; this script records it):

* the text parsers on pathological texts, with the old patterns (at sizes where they still finish) and the new;
* XLSX bombs against the default limits: shared strings inflating to 1 GB from a 2-3 MB file, a sheet of 22
  million empty rows; the reader stops at the limit instead of building the whole workbook in memory;
* with ``--real``, a /v1/analyze-sized request of emoji through the shipped model (one document cut at the token
  limit, and the largest request of such documents the token budget admits).

    python -m benchmarks.hostile_inputs --out reports/hostile_inputs.json [--real]
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

#: the sentence-boundary and chat-header patterns before they were made linear, for the record
OLD_BOUNDARY = (
    r"(?P<term>[.!?…]+|(?:[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\u2300-\u23FF\uFE0F\u200D\u20E3]"
    r"|[:;]-?[()DPp/]|<3)+)[\"'”’»)\]]*(?:\s*(?:[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\u2300-\u23FF\uFE0F"
    r"\u200D\u20E3]|[:;]-?[()DPp/]|<3))*(?=\s+(?P<next>\S)|\s*$)"
)
OLD_ADDRESS = r"(?:https?://|www\.)\S+|\S+@\S+\.\w+"

_CASE = r'''
import json, resource, sys, time
def rss(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start = time.perf_counter()
outcome = "ok"
try:
{body}
except Exception as exc:  # a refusal is the expected outcome of the bombs
    outcome = f"{{type(exc).__name__}}: {{str(exc)[:160]}}"
print(json.dumps({{"seconds": round(time.perf_counter() - start, 3), "peak_rss_mb": round(rss(), 1), "outcome": outcome}}))
'''


def _run(body: str, cap: float) -> dict[str, Any]:
    code = _CASE.format(body="\n".join("    " + line for line in body.strip().splitlines()))
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=cap, check=False)
    except subprocess.TimeoutExpired:
        return {"seconds": f">{cap:.0f} (stopped)", "outcome": "timeout"}
    lines = done.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else {"outcome": f"crashed: {done.stderr.strip()[-300:]}"}


def _parsers(cap: float) -> dict[str, Any]:
    cases: dict[str, Any] = {}
    emoji = "''.join(chr(0x1F600 + i % 80) for i in range({n})) + 'x'"
    for n in (500, 1000, 2000):
        cases[f"old sentence pattern, {n} emoji + a letter"] = _run(
            f"import re\nre.compile({OLD_BOUNDARY!r}).findall({emoji.format(n=n)})", cap)
    cases["new split_sentences, 100,000 emoji + a letter"] = _run(
        f"from voce.models.segment import split_sentences\nsplit_sentences({emoji.format(n=100_000)})", cap)
    cases["new split_sentences, 20,000 'Sig. ' (one sentence)"] = _run(
        "from voce.models.segment import split_sentences\nsplit_sentences(('Sig. ' * 20000).strip())", cap)
    for n in (500, 1000, 2000):
        cases[f"old address pattern, '@.' x {n}"] = _run(f"import re\nre.compile({OLD_ADDRESS!r}).sub(' ', '@.' * {n})", cap)
    cases["new clean_for_detection, '@.' x 50,000"] = _run(
        "from voce.models.language import clean_for_detection\nclean_for_detection('@.' * 50000)", cap)
    cases["new parse_transcript, a line of 200,000 tabs"] = _run(
        "from voce.models.chat import parse_transcript\nparse_transcript('x' + '\\t' * 200000 + 'x')", cap)
    return cases


def _bomb(folder: Path, name: str, sheet_rows: int, strings: int, chars: int) -> Path:
    """A workbook whose sheet has ``sheet_rows`` empty rows and whose shared strings hold ``strings`` x ``chars``."""
    ns = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    path = folder / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("[Content_Types].xml", '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
                    '<Default Extension="xml" ContentType="application/xml"/></Types>')
        zf.writestr("_rels/.rels", '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
                    f'<Relationship Id="r1" Type="{rel}/officeDocument" Target="xl/workbook.xml"/></Relationships>')
        zf.writestr("xl/workbook.xml", f'<workbook {ns} xmlns:r="{rel}"><sheets><sheet name="s" sheetId="1" r:id="r1"/>'
                    "</sheets></workbook>")
        zf.writestr("xl/_rels/workbook.xml.rels",
                    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
                    f'<Relationship Id="r1" Type="{rel}/worksheet" Target="worksheets/sheet1.xml"/>'
                    f'<Relationship Id="r2" Type="{rel}/sharedStrings" Target="sharedStrings.xml"/></Relationships>')
        with zf.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as fh:
            fh.write(f'<worksheet {ns}><sheetData><row><c t="s"><v>0</v></c></row>'.encode())
            for _ in range(sheet_rows // 100_000):
                fh.write(b"<row/>" * 100_000)
            fh.write(b"</sheetData></worksheet>")
        with zf.open("xl/sharedStrings.xml", "w", force_zip64=True) as fh:
            fh.write(f"<sst {ns}><si><t>commento</t></si>".encode())
            one = b"<si><t>" + b"A" * chars + b"</t></si>"
            for _ in range(strings // 1000):
                fh.write(one * 1000)
            fh.write(b"</sst>")
    return path


def _xlsx(cap: float) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="voce-bombs-"))
    strings = _bomb(folder, "strings.xlsx", 0, 1_000_000, 1000)  # ~1 GB of shared strings
    rows = _bomb(folder, "rows.xlsx", 22_000_000, 0, 0)  # 22 million empty rows
    cases: dict[str, Any] = {}
    for label, path in (("shared strings inflating to 1 GB", strings), ("22,000,000 empty rows", rows)):
        size = path.stat().st_size
        read = ("from pathlib import Path\nfrom voce.service.uploads import normalise_xlsx\n"
                f"from voce.service.xlsx import XlsxLimits\nnormalise_xlsx(Path({str(path)!r}), XlsxLimits())")
        cases[f"{label} ({size / 1e6:.1f} MB file), default limits"] = _run(read, cap)
    return cases


def _real(cap: float) -> dict[str, Any]:
    body = """
from voce.models.spec import AnalyzerSpec, load_analyzer
from voce.models.types import DocumentInput
import os, pathlib
cache = pathlib.Path(os.environ.get("VOCE_CACHE_DIR", pathlib.Path.home() / ".cache/voce"))
a = load_analyzer(AnalyzerSpec(cache_dir=cache, threads=1))
a.warm_up()
emoji = "".join(chr(0x1F600 + i % 80) for i in range(5120))
t = time.perf_counter()
a.analyze([DocumentInput(id="1", text=emoji)])
print("one emoji document of 5,120 characters, cut at the token limit:", round(time.perf_counter() - t, 2), "s", file=sys.stderr)
docs = [DocumentInput(id=str(k), text="".join(chr(0x1F600 + (i * 7 + k) % 80) for i in range(5120))) for k in range(15)]
assert sum(a.document_tokens(docs)) <= 40000
a.analyze(docs)
"""
    return {"15 emoji documents of 5,120 characters (the most the 40,000-token budget admits), 1 thread, model load included":
            _run(body, cap)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("reports/hostile_inputs.json"))
    ap.add_argument("--cap", type=float, default=120.0, help="seconds before a case is stopped")
    ap.add_argument("--real", action="store_true", help="also time the shipped model (needs the converted encoder)")
    args = ap.parse_args()
    report: dict[str, Any] = {"when": time.strftime("%Y-%m-%d"), "cap_seconds": args.cap,
                              "parsers": _parsers(args.cap), "xlsx": _xlsx(args.cap)}
    if args.real:
        report["real_model"] = _real(max(args.cap, 300))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    re.compile(OLD_BOUNDARY)  # the recorded pattern compiles
    main()
