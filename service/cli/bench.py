"""``voce bench``: the side-by-side performance benchmark of issue 14 (:mod:`voce.eval.bench`).

The analyzer spec comes from the service settings (``Settings().analyzer_spec()``), the one place ``voce serve``
builds its own from, and the served instance the benchmark starts inherits the same ``VOCE_*`` environment: so the
in-process contenders and the HTTP ones run the same encoder and bundle (the benchmark checks ``/info`` too).
"""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from voce.service.cli.common import PrecisionOpt, StudentOpt, fail, say, settings


def bench(
    n: Annotated[int, typer.Option(min=1, help="real texts every contender analyses")] = 400,
    batch_rows: Annotated[int, typer.Option(min=1, help="rows of the CSV uploaded for the batch stage")] = 20_000,
    rounds: Annotated[int, typer.Option(min=1, help="interleaved rounds; every round runs every contender")] = 4,
    seed: Annotated[int, typer.Option(help="seed of the text draw (the batch CSV uses seed + 1)")] = 13,
    skip: Annotated[str, typer.Option(help="stages to leave out, comma-separated: naive,raw,inprocess,http,batch")] = "",
    soak_minutes: Annotated[
        float, typer.Option(min=0, help="then 8 clients on /v1/analyze for this long, RSS sampled every 10 s")
    ] = 0.0,
    out: Annotated[Path, typer.Option(help="JSON report; the Markdown table goes next to it (.md)")] = Path(
        "reports/bench/bench.json"
    ),
    repeat_cache: Annotated[
        bool, typer.Option(help="keep the analyzer's repeated-text cache on (contenders then share each other's vectors)")
    ] = False,
    data_dir: Annotated[
        Path | None, typer.Option(help="shared data folder (default: VOCE_TRAIN_DATA_DIR, else ../shared/data)")
    ] = None,
    precision: PrecisionOpt = None,
    student: StudentOpt = None,
) -> None:
    """Naive per-comment loop vs raw encoder vs Voce in process, over HTTP and as a batch: one run, same texts and model."""
    import os

    from voce.eval.bench import BenchConfig, BenchError, markdown, parse_skip, run_bench

    s = settings(encoder_precision=precision, encoder_student=student)
    # the served instance is started with this environment: it must run the same precision as the process
    os.environ["VOCE_ENCODER_PRECISION"] = s.encoder_precision
    os.environ["VOCE_ENCODER_STUDENT"] = "true" if s.encoder_student else "false"
    try:
        cfg = BenchConfig(
            n=n, seed=seed, rounds=rounds, batch_rows=batch_rows, skip=parse_skip(skip), soak_minutes=soak_minutes,
            out=out, data_dir=data_dir, repeat_cache=repeat_cache, command=shlex.join([
                "voce", "bench", "--n", str(n), "--batch-rows", str(batch_rows), "--rounds", str(rounds), "--seed",
                str(seed), *(["--skip", skip] if skip else []), "--soak-minutes", f"{soak_minutes:g}", "--out", str(out),
                *(["--data-dir", str(data_dir)] if data_dir else []), *(["--repeat-cache"] if repeat_cache else []),
                *(["--precision", s.encoder_precision] if s.encoder_precision != "fp32" else []),
                *(["--student"] if s.encoder_student else []),
            ]),
        )
        report = run_bench(cfg, s.analyzer_spec(), progress=say)
    except BenchError as exc:
        raise fail(str(exc)) from exc
    typer.echo(markdown(report))
    say(f"report: {out} and {out.with_suffix('.md')}")
