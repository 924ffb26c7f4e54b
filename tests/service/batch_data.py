"""Upload data and settings shared by the batch tests (API, runner, service): 12 hand-computed rows and helpers."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from voce.service.batches.service import register_upload
from voce.service.batches.store import BatchStore
from voce.service.settings import Settings
from voce.service.uploads import ColumnMapping

# 12 rows: hand-computed KPIs in tests/service/api/test_batches.py.
# NPS answers: 10, 9, 9, 8, 7, 6, 3, 0, 10, (missing), (bad "dieci"), 5
ROWS: list[dict[str, str]] = [  # noqa: E501
    {"id": "r1", "commento": "Consegna velocissima!", "nps": "10", "csat": "5", "data": "2026-01-10", "regione": "nord"},
    {"id": "r2", "commento": "Staff very kind and helpful", "nps": "9", "csat": "5", "data": "2026-01-12", "regione": "sud"},
    {"id": "r3", "commento": "Ottimo prezzo", "nps": "9", "csat": "4", "data": "2026-01-20", "regione": "nord"},
    {"id": "r4", "commento": "The app is ok", "nps": "8", "csat": "4", "data": "2026-02-02", "regione": "sud"},
    {"id": "r5", "commento": "Negozio pulito ma un po' caro", "nps": "7", "csat": "3", "data": "2026-02-05", "regione": "nord"},
    {"id": "r6", "commento": "Delivery was late again", "nps": "6", "csat": "2", "data": "2026-02-10", "regione": "sud"},
    {"id": "r7", "commento": "Il call center non risponde mai", "nps": "3", "csat": "1", "data": "2026-02-15", "regione": "nord"},
    {"id": "r8", "commento": "Rude staff, never again", "nps": "0", "csat": "1", "data": "2026-03-01", "regione": "sud"},
    {"id": "r9", "commento": "Tutto perfetto, grazie!", "nps": "10", "csat": "5", "data": "2026-03-03", "regione": "nord"},
    {"id": "r10", "commento": "Prices went up", "nps": "", "csat": "", "data": "2026-03-04", "regione": "sud"},
    {"id": "r11", "commento": "", "nps": "4", "csat": "2", "data": "2026-03-05", "regione": "nord"},
    {"id": "r12", "commento": "Servizio lento", "nps": "dieci", "csat": "3", "data": "sometime", "regione": "nord"},
]
MAPPING = {"text": "commento", "id": "id", "nps": "nps", "csat": "csat", "date": "data", "segments": ["regione"]}


def csv_bytes(rows: list[dict[str, str]], delimiter: str = ";", encoding: str = "utf-8-sig") -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), delimiter=delimiter)
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode(encoding)


def batch_settings(tmp: Path, bundle: Path, **kw: Any) -> Settings:
    """Fake encoder, tiny bundle, everything under ``tmp``; small chunks so a few rows make several."""
    base: dict[str, Any] = dict(
        encoder_backend="fake", encoder="fake", bundle=bundle, cache_dir=tmp / "cache", data_dir=tmp / "data",
        batch_chunk_rows=4, worker_lease_seconds=30,
    )
    return Settings(**(base | kw))


def rows_file(tmp: Path, n: int) -> Path:
    """``n`` synthetic rows with the columns of :data:`ROWS`."""
    path = tmp / "big.csv"
    rows = [{"id": f"x{i}", "commento": f"Commento {i}: consegna {'lenta' if i % 3 else 'veloce'}", "nps": str(i % 11),
             "csat": "", "data": f"2026-0{1 + i % 3}-1{i % 9}", "regione": "nord" if i % 2 else "sud"} for i in range(n)]
    path.write_bytes(csv_bytes(rows))
    return path


def queue(store: BatchStore, settings: Settings, src: Path, bid: str) -> None:
    """Queue ``src`` as batch ``bid`` (as an upload would), mapped with :data:`MAPPING`."""
    dest = settings.data_dir / "uploads" / bid
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(src.read_bytes())
    register_upload(store, dest, filename="big.csv", mapping=ColumnMapping(**MAPPING), batch_id=bid)
