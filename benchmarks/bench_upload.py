"""Large-upload benchmark: a 100,000-row CSV through HTTP upload, counting, analysis and export, memory watched.

The model is the deterministic fake encoder, so what is measured is the batch machinery (streaming upload,
reading, storing, exporting), not the encoder; the real-model throughput is in ``eval/bench_batch.py``.
Side by side in one run: the server's peak RSS before the upload, after the upload, and at the end, against
the file size — the file is never held in memory (the peak must stay far below a few copies of it).

    python -m benchmarks.bench_upload --rows 100000 --out reports/upload_bench.json
"""
from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from voce.models.encoders.factory import EncoderSpec, load_encoder
from voce.service.app import create_app
from voce.service.settings import Settings


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _tiny_bundle(folder: Path) -> Path:
    from tests.tiny import tiny_config, tiny_examples
    from voce.training.train import train_heads

    enc = load_encoder(EncoderSpec(backend="fake", model="fake", cache_dir=folder))
    train_heads(tiny_config(folder / "bundle"), enc, tiny_examples(), progress=lambda _m: None).save(folder / "bundle")
    return folder / "bundle"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--out", type=Path, default=Path("reports/upload_bench.json"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="voce-upload-"))
    src = work / "big.csv"
    with src.open("w", encoding="utf-8") as fh:
        fh.write("id;comment;nps;date;region\n")
        for i in range(args.rows):
            tone = "the courier was late and support never answered" if i % 3 == 0 else "great staff, quick delivery"
            fh.write(f"r{i};Order {i}: {tone}. Il negozio di via Roma {i % 97} era pulito.;{i % 11};2026-0{1 + i % 9}-1{i % 9};"
                     f"{('nord', 'sud', 'centro')[i % 3]}\n")
    size_mb = src.stat().st_size / 1e6
    settings = Settings(encoder_backend="fake", encoder="fake", bundle=_tiny_bundle(work), cache_dir=work / "cache",
                        data_dir=work / "data", discovery=False, batch_chunk_rows=256)
    out: dict[str, object] = {"rows": args.rows, "file_mb": round(size_mb, 1)}
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:  # loopback: an allowed host
        while c.get("/ready").status_code != 200:
            time.sleep(0.1)
        c.headers["Authorization"] = "Bearer " + (settings.data_dir / "initial-admin-key").read_text().strip()
        out["rss_ready_mb"] = round(_rss_mb(), 1)
        t0 = time.perf_counter()
        with src.open("rb") as fh:
            r = c.post("/v1/batches", files={"file": ("big.csv", fh, "text/csv")},
                       data={"mapping": json.dumps({"text": "comment", "id": "id", "nps": "nps", "date": "date",
                                                    "segments": ["region"]})})
        assert r.status_code == 202, r.text
        out["upload_s"] = round(time.perf_counter() - t0, 2)
        out["rss_after_upload_mb"] = round(_rss_mb(), 1)
        bid = r.json()["id"]
        samples = []
        while True:
            st = c.get(f"/v1/batches/{bid}").json()
            samples.append((round(time.perf_counter() - t0, 1), st["rows_done"], st["rows_total"], st["eta_seconds"]))
            if st["status"] in ("done", "failed"):
                break
            time.sleep(2)
        assert st["status"] == "done", st
        out["analysis_s"] = round(time.perf_counter() - t0, 1)
        out["rows_per_s"] = round(args.rows / out["analysis_s"], 1)  # type: ignore[operator]
        out["progress_samples"] = samples[:: max(1, len(samples) // 10)]
        t1 = time.perf_counter()
        k = c.get(f"/v1/batches/{bid}/kpis").json()
        out["kpis_s"] = round(time.perf_counter() - t1, 2)
        assert k["count"] == args.rows
        t1 = time.perf_counter()  # a filter change on the dashboard: the batch's facts are reused
        c.get(f"/v1/batches/{bid}/kpis", params={"segment": "region:nord"}).raise_for_status()
        out["kpis_filtered_again_s"] = round(time.perf_counter() - t1, 2)
        t1 = time.perf_counter()
        c.get(f"/v1/batches/{bid}/rows", params={"segment": "region:nord", "limit": 20}).raise_for_status()
        out["rows_page_s"] = round(time.perf_counter() - t1, 2)
        t1 = time.perf_counter()
        n_bytes = 0
        with c.stream("GET", f"/v1/batches/{bid}/results?format=csv") as resp:
            for chunk in resp.iter_bytes():
                n_bytes += len(chunk)
        out["export_csv_s"] = round(time.perf_counter() - t1, 1)
        out["export_csv_mb"] = round(n_bytes / 1e6, 1)
        out["rss_peak_mb"] = round(_rss_mb(), 1)
    out["peak_over_ready_mb"] = round(out["rss_peak_mb"] - out["rss_ready_mb"], 1)  # type: ignore[operator]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
