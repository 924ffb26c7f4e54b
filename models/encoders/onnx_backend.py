"""ONNX Runtime backend: the default for serving on CPU.

Why: at inference time this needs neither torch nor transformers — only
``onnxruntime``, ``tokenizers`` and numpy — so the service starts fast and
stays small, while computing the same function as :class:`~models.encoders.hf.TorchEncoder`
(checked by a parity test).  The ONNX graph is exported once per checkpoint
from the torch model and cached under a key derived from the checkpoint's
weights and config, so a changed checkpoint can never reuse a stale graph.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from voce.models.encoders.base import Embeddings
from voce.models.encoders.hf import E5_QUERY_PREFIX, NO_LIMIT, effective_max_length, model_label
from voce.models.encoders.windowing import (
    CharSpan,
    IdMatrix,
    SpecialTokens,
    encode_windows,
    encode_windows_with_spans,
    masked_mean,
    plan_spans,
    plan_windows,
)

#: bump when the exported graph or metadata changes, so caches are rebuilt
EXPORT_FORMAT = 1
#: lowest opset with a native LayerNormalization op
OPSET = 17
MODEL_FILENAME = "model.onnx"
META_FILENAME = "voce_onnx.json"

ProgressFn = Callable[[str], None]
log = logging.getLogger(__name__)

#: read by onnxruntime once, when it is first imported: ``disable_telemetry_events()`` alone does not stop it
#: (measured with onnxruntime 1.31.1: a bare ``import onnxruntime`` resolves mobile.events.data.microsoft.com
#: about 9 s later and every few seconds after, whatever that call says; with this variable set, never)
TELEMETRY_ENV = "ORT_DISABLE_TELEMETRY"


def onnxruntime_offline() -> Any:
    """``onnxruntime``, imported with its telemetry off (the one way Voce imports it).

    A self-hosted service must make no outbound attempt at all, and onnxruntime's built-in telemetry (1DS) looks
    up Microsoft's collector from a background thread.  The variable is set just before the first import (it
    is too late after); if something else imported onnxruntime first, its events are still switched off and
    ``tests/service/test_no_network.py`` fails for the lookup that remains.
    """
    if "onnxruntime" in sys.modules and os.environ.get(TELEMETRY_ENV) != "1":
        log.warning("onnxruntime was imported before Voce could switch its telemetry off (set %s=1)", TELEMETRY_ENV)
    os.environ[TELEMETRY_ENV] = "1"
    import onnxruntime as ort

    ort.disable_telemetry_events()
    return ort


def checkpoint_key(checkpoint_dir: Path) -> str:
    """Hash of everything that determines the exported graph's outputs.

    Weights (all ``*.safetensors``), ``config.json`` and ``tokenizer.json``
    (copied next to the graph), plus the export format version.
    """
    checkpoint_dir = Path(checkpoint_dir)
    weights = sorted(checkpoint_dir.glob("*.safetensors"))
    if not weights:
        raise FileNotFoundError(
            f"no *.safetensors in {checkpoint_dir}: only safetensors checkpoints are supported (no pickle)"
        )
    digest = hashlib.sha256(f"voce-onnx-export-v{EXPORT_FORMAT}".encode())
    for path in [*weights, checkpoint_dir / "config.json", checkpoint_dir / "tokenizer.json"]:
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _export(checkpoint_dir: Path, out: Path) -> dict[str, Any]:
    """Trace the torch model into ``out/model.onnx``; return metadata for the encoder."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer: Any = AutoTokenizer.from_pretrained(str(checkpoint_dir))
    # eager attention traces to plain MatMul/Softmax; the SDPA path adds data-dependent branches
    model: Any = AutoModel.from_pretrained(str(checkpoint_dir), attn_implementation="eager", use_safetensors=True)

    class LastHiddenState(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    # eval() on the wrapper matters: export restores the wrapper's mode afterwards,
    # and a fresh Module is in training mode, which would switch dropout on.
    wrapper = LastHiddenState(model).eval()
    probe = tokenizer("probe", add_special_tokens=False)["input_ids"]
    wrapped = tokenizer("probe", add_special_tokens=True)["input_ids"]
    specials = SpecialTokens.from_template(wrapped, probe, tokenizer.pad_token_id)
    # two rows of different length so that the padding path is what gets traced
    example = np.full((2, 8), specials.pad, dtype=np.int64)
    example[0, :] = 5
    example[1, :4] = 5
    mask = (np.arange(8)[None, :] < np.array([[8], [4]])).astype(np.int64)
    axes = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings():
        # expected with the legacy exporter: it announces its own deprecation and
        # flags Python-side shape checks that hold for every valid input
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", message="Exporting aten::index operator", category=UserWarning)
        torch.onnx.export(
            wrapper,
            (torch.from_numpy(example), torch.from_numpy(mask)),
            str(out / MODEL_FILENAME),
            dynamo=False,  # the dynamo exporter needs onnxscript, which we do not ship
            opset_version=OPSET,
            input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes},
            do_constant_folding=True,
        )
    shutil.copyfile(checkpoint_dir / "tokenizer.json", out / "tokenizer.json")
    return {
        "dim": int(model.config.hidden_size),
        # the model's own limit; callers may ask for less, never more
        "max_length": effective_max_length(
            NO_LIMIT, tokenizer.model_max_length, getattr(model.config, "max_position_embeddings", None)
        ),
        "specials": {"head": list(specials.head), "tail": list(specials.tail), "pad": specials.pad},
        "torch_version": torch.__version__,
        "opset": OPSET,
    }


def export_onnx(checkpoint_dir: Path, out_dir: Path, *, progress: ProgressFn | None = None) -> Path:
    """Export (or reuse) the ONNX graph of ``checkpoint_dir``; return its folder.

    The folder ``<out_dir>/<checkpoint name>-<key>`` holds ``model.onnx``,
    ``tokenizer.json`` and ``voce_onnx.json``; it is written to a temporary
    folder and renamed into place, so readers never see a partial export.
    Torch is imported only when an export is actually needed.
    """
    say = progress or (lambda _msg: None)
    checkpoint_dir, out_dir = Path(checkpoint_dir), Path(out_dir)
    key = checkpoint_key(checkpoint_dir)
    target = out_dir / f"{checkpoint_dir.name}-{key[:16]}"
    if (target / META_FILENAME).exists():
        return target

    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=out_dir))
    try:
        say(f"exporting {checkpoint_dir.name} to ONNX")
        started = time.perf_counter()
        meta = _export(checkpoint_dir, tmp)
        meta.update(
            format=EXPORT_FORMAT,
            checkpoint_key=key,
            checkpoint=checkpoint_dir.name,
            export_seconds=round(time.perf_counter() - started, 3),
        )
        (tmp / META_FILENAME).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / META_FILENAME).exists():  # not a concurrent export that won the race
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    say("ONNX export ready")
    return target


class OnnxEncoder:
    """Sentence embeddings with ONNX Runtime on CPU (mean pooling, unit norm).

    ``export_dir`` is a folder made by :func:`export_onnx`;
    :meth:`from_checkpoint` does both steps.  Tokenisation uses the
    ``tokenizers`` library directly (the same ``tokenizer.json`` transformers
    would use), pooling and windowing are shared with the torch backend.
    """

    def __init__(
        self,
        export_dir: Path,
        *,
        threads: int | None = None,
        prefix: str = E5_QUERY_PREFIX,
        max_length: int | None = None,
        name: str | None = None,
    ) -> None:
        from tokenizers import Tokenizer

        ort = onnxruntime_offline()

        export_dir = Path(export_dir)
        meta = json.loads((export_dir / META_FILENAME).read_text(encoding="utf-8"))
        self._tokenizer = Tokenizer.from_file(str(export_dir / "tokenizer.json"))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(
            str(export_dir / MODEL_FILENAME), sess_options=options, providers=["CPUExecutionProvider"]
        )
        spec = meta["specials"]
        self.specials = SpecialTokens(tuple(spec["head"]), tuple(spec["tail"]), int(spec["pad"]))
        self.dim: int = int(meta["dim"])
        self.max_length: int = min(max_length, meta["max_length"]) if max_length else int(meta["max_length"])
        self.prefix = prefix
        self.name: str = name or f"onnx/{meta['checkpoint']}"

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint_dir: Path,
        *,
        cache_dir: Path,
        threads: int | None = None,
        prefix: str = E5_QUERY_PREFIX,
        max_length: int = 512,
        name: str | None = None,
        progress: ProgressFn | None = None,
    ) -> OnnxEncoder:
        """Export ``checkpoint_dir`` into ``cache_dir/onnx`` if needed, then load it."""
        export_dir = export_onnx(checkpoint_dir, Path(cache_dir) / "onnx", progress=progress)
        return cls(
            export_dir,
            threads=threads,
            prefix=prefix,
            max_length=max_length,
            name=name or f"onnx/{model_label(checkpoint_dir)}",
        )

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Content token ids (prefix included, no special tokens, no truncation)."""
        encoded = self._tokenizer.encode_batch([self.prefix + t for t in texts], add_special_tokens=False)
        return [e.ids for e in encoded]

    def token_counts(self, texts: list[str]) -> list[int]:
        """Tokens of each text as the model reads it (prefix included, specials and windows not)."""
        return [len(ids) for ids in self.token_ids(texts)]

    def _run(self, ids: IdMatrix, mask: IdMatrix) -> npt.NDArray[np.float32]:
        (hidden,) = self._session.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask})
        return masked_mean(hidden, mask)

    def encode(self, texts: list[str], batch_size: int = 32) -> Embeddings:
        """Embed ``texts``; see :mod:`models.encoders.windowing` for long texts."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        windows = plan_windows(self.token_ids(texts), self.specials, self.max_length)
        return encode_windows(windows, len(texts), self.dim, batch_size, self._run, self.specials.pad)

    def _run_states(self, ids: IdMatrix, mask: IdMatrix) -> npt.NDArray[np.float32]:
        (hidden,) = self._session.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask})
        return np.asarray(hidden, np.float32)

    def encode_spans(
        self, texts: list[str], spans: list[list[CharSpan]], batch_size: int = 32
    ) -> tuple[Embeddings, list[Embeddings]]:
        """Each text's vector (as :meth:`encode`) and a vector per character span of it, from the same pass."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32), []
        encoded = self._tokenizer.encode_batch([self.prefix + t for t in texts], add_special_tokens=False)
        plans = plan_spans([e.offsets for e in encoded], spans, len(self.prefix))
        windows = plan_windows([e.ids for e in encoded], self.specials, self.max_length)
        return encode_windows_with_spans(windows, plans, self.dim, batch_size, self._run_states, self.specials)
