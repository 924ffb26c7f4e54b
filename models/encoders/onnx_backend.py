"""ONNX Runtime backend: the default for serving on CPU.

Why: at inference time this needs neither torch nor transformers — only
``onnxruntime``, ``tokenizers`` and numpy — so the service starts fast and
stays small, while computing the same function as :class:`~models.encoders.hf.TorchEncoder`
(checked by a parity test).  The ONNX graph is exported once per checkpoint
from the torch model and cached under a key derived from the checkpoint's
weights and config, so a changed checkpoint can never reuse a stale graph.

The word-embedding table is kept out of the graph.  For multilingual-e5-small it is 250,037 x 384 float32
(366 MiB, 80% of the weights), and an IT/EN service touches a few tens of thousands of its rows.  Inside the
ONNX Runtime session it was resident in full; now the graph takes ``inputs_embeds`` and
:class:`EmbeddingRows` reads the rows a batch needs from a raw float32 file next to the graph (``os.preadv``:
the kernel's page cache holds the file, not the process), keeping a bounded LRU of hot rows in memory.  The
graph adds the position and token-type embeddings and the LayerNorm exactly as ``BertEmbeddings.forward``
does with ``inputs_embeds``, so the vectors are unchanged (measured on real IT/EN texts: see
``benchmarks/bench_encoder_memory.py``).  A model whose embeddings depend on the ids themselves (RoBERTa
derives position ids from the padding) keeps its table in the graph: the export checks both paths agree.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from voce.models.encoders.base import Embeddings, Precision
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
from voce.models.files import atomic_file

#: bump when the exported graph or metadata changes, so caches are rebuilt
#: (2: word embeddings moved out of the graph into ``EMBEDDINGS_FILENAME``)
EXPORT_FORMAT = 2
#: lowest opset with a native LayerNormalization op
OPSET = 17
MODEL_FILENAME = "model.onnx"
META_FILENAME = "voce_onnx.json"
#: the word-embedding table, raw little-endian float32, ``rows x dim``, row ``i`` = token id ``i``
EMBEDDINGS_FILENAME = "word_embeddings.f32"
#: where the word-embedding table lives: ``external`` (file + :class:`EmbeddingRows`) or ``graph`` (initializer)
EmbeddingsPlacement = Literal["external", "graph"]
#: default in-process cache of hot embedding rows (1,536 bytes each for e5-small: 32 MiB = 21,845 rows)
DEFAULT_EMBEDDING_CACHE_MB = 32.0
#: batches larger than this (rows x width x width) give ONNX Runtime's CPU arena back after their run; 0 = every
#: batch.  Why: the arena never shrinks by itself, and one batch of sixteen 512-token windows grew it by ~550 MB
#: for good (reports/perf/memory_breakdown.json).  Measured on 400 real texts (reports/perf/encoder_memory.json,
#: alternating rounds): shrinking after every batch kept RSS flat at 686 MB after two passes where a
#: never-shrinking arena ended at 1,480 MB (peak 1,154 vs 1,480), at 0.99x its throughput (noise is about 5%);
#: shrinking only above 32x128 ended at 797 MB.  Turning the arena off cost 19% throughput.
ARENA_SHRINK_ABOVE = 0

ProgressFn = Callable[[str], None]
log = logging.getLogger(__name__)

#: the int8 ("fast") profile: ONNX Runtime's dynamic quantisation of every MatMul with constant weights (Q, K, V,
#: attention output, both feed-forward projections), weights int8 per output channel, activations uint8 with one
#: scale per batch computed at run time, except the feed-forward output projections of the layers the caller
#: names (None: all of them), which stay fp32.  Why those: their input is the GELU output, where a few channels
#: carry activations hundreds of times the rest, and a per-tensor activation scale flattens everything else.
#: Measured on e5-small (reports/perf/int8_recipe.json): everything int8 kept a 0.982 mean cosine to the fp32
#: vectors; keeping all twelve output projections fp32 0.996 at 1.6x the speed; only layers 4-5 0.994 at 1.95x.
INT8_RECIPE = "dynamic-qint8-per-channel-v1"

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


def checkpoint_key(checkpoint_dir: Path, embeddings: EmbeddingsPlacement = "external") -> str:
    """Hash of everything that determines the exported graph's outputs.

    Weights (all ``*.safetensors``), ``config.json`` and ``tokenizer.json``
    (copied next to the graph), plus the export format version and where the word embeddings live.
    """
    checkpoint_dir = Path(checkpoint_dir)
    weights = sorted(checkpoint_dir.glob("*.safetensors"))
    if not weights:
        raise FileNotFoundError(
            f"no *.safetensors in {checkpoint_dir}: only safetensors checkpoints are supported (no pickle)"
        )
    tag = f"voce-onnx-export-v{EXPORT_FORMAT}" + ("" if embeddings == "external" else f"-{embeddings}")
    digest = hashlib.sha256(tag.encode())
    for path in [*weights, checkpoint_dir / "config.json", checkpoint_dir / "tokenizer.json"]:
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _export(checkpoint_dir: Path, out: Path, embeddings: EmbeddingsPlacement = "external") -> dict[str, Any]:
    """Trace the torch model into ``out/model.onnx`` (and its embedding table); return metadata for the encoder."""
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

    class FromEmbeddings(torch.nn.Module):
        """The same model fed the looked-up word embeddings: what BertModel does after its Embedding lookup."""

        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.inner(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state

    probe = tokenizer("probe", add_special_tokens=False)["input_ids"]
    wrapped = tokenizer("probe", add_special_tokens=True)["input_ids"]
    specials = SpecialTokens.from_template(wrapped, probe, tokenizer.pad_token_id)
    # two rows of different length so that the padding path is what gets traced
    example = np.full((2, 8), specials.pad, dtype=np.int64)
    example[0, :] = [*specials.head, 5, 6, 7, 8, 9, 10, *specials.tail][:8]
    example[1, :4] = [*specials.head, 11, 12, *specials.tail][:4]
    mask = (np.arange(8)[None, :] < np.array([[8], [4]])).astype(np.int64)
    ids_t, mask_t = torch.from_numpy(example), torch.from_numpy(mask)
    table = model.get_input_embeddings().weight.detach().to(torch.float32)
    if embeddings == "external":
        with torch.no_grad():
            by_ids = model.eval()(input_ids=ids_t, attention_mask=mask_t).last_hidden_state
            by_embeds = model(inputs_embeds=table[ids_t], attention_mask=mask_t).last_hidden_state
        # RoBERTa-style models derive position ids from the ids' padding: they must keep the lookup in the graph
        if not torch.equal(by_ids, by_embeds):
            log.info("inputs_embeds changes %s's outputs: its embedding table stays in the graph", checkpoint_dir.name)
            embeddings = "graph"
    axes = {0: "batch", 1: "sequence"}
    if embeddings == "external":
        wrapper: torch.nn.Module = FromEmbeddings(model)
        first: torch.Tensor = table[ids_t]
        first_name = "inputs_embeds"
    else:
        wrapper, first, first_name = LastHiddenState(model), ids_t, "input_ids"
    # eval() on the wrapper matters: export restores the wrapper's mode afterwards,
    # and a fresh Module is in training mode, which would switch dropout on.
    wrapper = wrapper.eval()
    with warnings.catch_warnings():
        # expected with the legacy exporter: it announces its own deprecation and
        # flags Python-side shape checks that hold for every valid input
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", message="Exporting aten::index operator", category=UserWarning)
        torch.onnx.export(
            wrapper,
            (first, mask_t),
            str(out / MODEL_FILENAME),
            dynamo=False,  # the dynamo exporter needs onnxscript, which we do not ship
            opset_version=OPSET,
            input_names=[first_name, "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_axes={first_name: axes, "attention_mask": axes, "last_hidden_state": axes},
            do_constant_folding=True,
        )
    shutil.copyfile(checkpoint_dir / "tokenizer.json", out / "tokenizer.json")
    meta: dict[str, Any] = {
        "dim": int(model.config.hidden_size),
        # the model's own limit; callers may ask for less, never more
        "max_length": effective_max_length(
            NO_LIMIT, tokenizer.model_max_length, getattr(model.config, "max_position_embeddings", None)
        ),
        "specials": {"head": list(specials.head), "tail": list(specials.tail), "pad": specials.pad},
        "torch_version": torch.__version__,
        "opset": OPSET,
        "embeddings": None,
    }
    if embeddings == "external":
        rows = np.ascontiguousarray(table.numpy(), dtype="<f4")
        rows.tofile(out / EMBEDDINGS_FILENAME)
        meta["embeddings"] = {"file": EMBEDDINGS_FILENAME, "rows": int(rows.shape[0]), "dim": int(rows.shape[1])}
    return meta


def export_onnx(
    checkpoint_dir: Path,
    out_dir: Path,
    *,
    progress: ProgressFn | None = None,
    embeddings: EmbeddingsPlacement = "external",
) -> Path:
    """Export (or reuse) the ONNX graph of ``checkpoint_dir``; return its folder.

    The folder ``<out_dir>/<checkpoint name>-<key>`` holds ``model.onnx``,
    ``tokenizer.json``, ``voce_onnx.json`` and (``embeddings="external"``, the
    default) ``word_embeddings.f32``; it is written to a temporary
    folder and renamed into place, so readers never see a partial export.
    Torch is imported only when an export is actually needed.  ``embeddings="graph"``
    keeps the table inside the graph, as format 1 did: the reference the tests and benchmark compare against.
    """
    say = progress or (lambda _msg: None)
    checkpoint_dir, out_dir = Path(checkpoint_dir), Path(out_dir)
    key = checkpoint_key(checkpoint_dir, embeddings)
    suffix = "" if embeddings == "external" else f"-{embeddings}"
    target = out_dir / f"{checkpoint_dir.name}-{key[:16]}{suffix}"
    if (target / META_FILENAME).exists():
        return target

    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=out_dir))
    try:
        say(f"exporting {checkpoint_dir.name} to ONNX")
        started = time.perf_counter()
        meta = _export(checkpoint_dir, tmp, embeddings)
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


_TOKENIZERS: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
_TOKENIZERS_LOCK = threading.Lock()


def shared_tokenizer(path: Path) -> Any:
    """One tokenizer per distinct ``tokenizer.json`` content in the process, pruned to the pieces Latin-script
    text reaches (:mod:`models.encoders.vocab`: the same ids and offsets, about 100 MB instead of 280 MB for
    XLM-R) unless the tokenizer cannot be pruned exactly.

    Why shared: the XLM-R Unigram tokenizer holds a few hundred MB of live heap (its trie; measured in
    ``reports/perf/memory_breakdown.json``), more than the encoder's remaining weights.  The analyzer loads
    a second encoder (the bundle's base model, without its adapter) with the same tokenizer, which then
    costs nothing extra.  Kept only while an encoder uses it (weak values).  Encoders never change its
    settings after this, so sharing it between threads is safe.
    """
    from tokenizers import Tokenizer

    from voce.models.encoders.vocab import pruned_tokenizer

    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    with _TOKENIZERS_LOCK:
        tokenizer = _TOKENIZERS.get(digest)
        if tokenizer is None:
            tokenizer = pruned_tokenizer(Path(path), digest)
            if tokenizer is None:
                tokenizer = Tokenizer.from_file(str(path))
                tokenizer.no_truncation()
                tokenizer.no_padding()
            _TOKENIZERS[digest] = tokenizer
    return tokenizer


class EmbeddingRows:
    """Rows of a word-embedding table read from its file on demand, with a bounded LRU of hot rows.

    Why not ``np.memmap``: mapped pages count in the process's RSS (as file-backed pages) once touched, and a
    service that saw many languages would end up with the whole table resident again.  ``os.preadv`` copies
    each row into the batch instead; the file's pages live in the kernel's page cache, shared and reclaimable,
    and only ``cache_mb`` of hot rows stay in the process.  A miss costs one system call per row (about a
    microsecond from the page cache) against tens of milliseconds for the forward pass it feeds.
    Thread-safe: lookups from concurrent callers share the cache under one lock.
    """

    def __init__(self, path: Path, rows: int, dim: int, *, cache_mb: float = DEFAULT_EMBEDDING_CACHE_MB) -> None:
        path = Path(path)
        self.rows, self.dim = rows, dim
        self._row_bytes = dim * 4
        expected = rows * self._row_bytes
        if path.stat().st_size != expected:
            raise ValueError(f"{path} has {path.stat().st_size} bytes, expected {rows} x {dim} float32 = {expected}")
        self.capacity = max(0, int(cache_mb * 2**20) // self._row_bytes)
        # np.empty maps pages lazily: the cache costs memory only as it fills
        self._store = np.empty((self.capacity, dim), dtype=np.float32)
        self._slots: OrderedDict[int, int] = OrderedDict()
        self._lock = threading.Lock()
        self._fd = os.open(path, os.O_RDONLY)
        self._closer = weakref.finalize(self, os.close, self._fd)
        self.hits = 0
        self.misses = 0

    def close(self) -> None:
        """Close the table's file now (otherwise when the object is collected)."""
        self._closer()

    def lookup(self, ids: npt.NDArray[np.integer]) -> npt.NDArray[np.float32]:
        """``table[ids]`` for any shape of ids: the rows, bit for bit, with a trailing ``dim`` axis."""
        flat = np.asarray(ids).reshape(-1)
        unique, inverse = np.unique(flat, return_inverse=True)
        if len(unique) and (unique[0] < 0 or unique[-1] >= self.rows):
            raise IndexError(f"token id out of range [0, {self.rows}): {unique[0]}..{unique[-1]}")
        block = np.empty((len(unique), self.dim), dtype=np.float32)
        with self._lock:
            for k, token in enumerate(unique.tolist()):
                slot = self._slots.get(token)
                if slot is not None:
                    self._slots.move_to_end(token)
                    block[k] = self._store[slot]
                    self.hits += 1
                    continue
                self.misses += 1
                got = os.preadv(self._fd, [memoryview(block[k]).cast("B")], token * self._row_bytes)
                if got != self._row_bytes:
                    raise OSError(f"short read of embedding row {token}: {got} bytes")
                if not self.capacity:
                    continue
                if len(self._slots) < self.capacity:
                    slot = len(self._slots)
                else:
                    _, slot = self._slots.popitem(last=False)
                self._slots[token] = slot
                self._store[slot] = block[k]
        return block[inverse].reshape(*np.shape(ids), self.dim)


def int8_graph_name(keep_fp32: tuple[int, ...] | None) -> str:
    """File name of the int8 graph in an export folder: one per recipe and set of layers kept fp32."""
    kept = "all" if keep_fp32 is None else "-".join(str(i) for i in sorted(keep_fp32)) or "none"
    return f"model.int8.{INT8_RECIPE}.keep-{kept}.onnx"


def _ffn_output_matmuls(graph: Any) -> dict[int, str]:
    """Layer number -> name of its feed-forward output projection's MatMul in a traced BERT-style graph."""
    import re

    found: dict[int, str] = {}
    for node in graph.node:
        match = re.search(r"/layer\.(\d+)/output/dense/MatMul$", node.name)
        if node.op_type == "MatMul" and match:
            found[int(match.group(1))] = node.name
    return found


class _DropMessage(logging.Filter):
    def __init__(self, fragment: str) -> None:
        super().__init__()
        self.fragment = fragment

    def filter(self, record: logging.LogRecord) -> bool:
        return self.fragment not in record.getMessage()


def quantize_int8(export_dir: Path, keep_fp32: tuple[int, ...] | None = None) -> Path:
    """Write (once) the int8 graph of an fp32 export next to it; return its path.

    Written to a temporary file in the same folder and renamed into place, so a concurrent reader never sees a
    partial graph; the word-embedding table, tokenizer and metadata are the fp32 export's own (the lookup stays
    exact; only the transformer's matrix products are quantised).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    onnxruntime_offline()  # quantize_dynamic imports onnxruntime: its telemetry must be off first
    export_dir = Path(export_dir)
    target = export_dir / int8_graph_name(keep_fp32)
    if target.exists():
        return target
    source = export_dir / MODEL_FILENAME
    projections = _ffn_output_matmuls(onnx.load(str(source), load_external_data=False).graph)
    if not projections:
        raise ValueError(f"{source}: no feed-forward output projections found; int8 needs a BERT-style graph")
    layers = sorted(projections) if keep_fp32 is None else sorted(keep_fp32)
    missing = [i for i in layers if i not in projections]
    if missing:
        raise ValueError(f"{source} has no layer {missing} to keep fp32 (layers 0-{max(projections)})")
    # it advises "pre-processing" through the root logger on every call (shape inference: nothing to gain
    # on a graph traced with dynamic axes); only records logged on the root logger itself pass this filter
    advice = _DropMessage("pre-processing before quantization")
    logging.getLogger().addFilter(advice)
    try:
        with atomic_file(target) as tmp_name, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(
                str(source), tmp_name, weight_type=QuantType.QInt8, per_channel=True,
                nodes_to_exclude=[projections[i] for i in layers],
            )
    finally:
        logging.getLogger().removeFilter(advice)
    return target


def execution_providers(ort: Any) -> list[str]:
    """CPU, unless this process was given a GPU (a Ray actor with ``num_gpus``, or CUDA_VISIBLE_DEVICES set by the
    operator) and ONNX Runtime's CUDA build (``onnxruntime-gpu``) is installed: then CUDA first, CPU for the rest."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    if visible.strip() not in ("", "-1") and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


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
        embedding_cache_mb: float = DEFAULT_EMBEDDING_CACHE_MB,
        session_options: Callable[[Any], None] | None = None,
        graph: str = MODEL_FILENAME,
    ) -> None:
        ort = onnxruntime_offline()

        export_dir = Path(export_dir)
        meta = json.loads((export_dir / META_FILENAME).read_text(encoding="utf-8"))
        self._tokenizer = shared_tokenizer(export_dir / "tokenizer.json")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if session_options is not None:  # benchmarks try other settings on the same export
            session_options(options)
        #: the graph file this encoder runs (``model.onnx``, or an int8 graph made by :func:`quantize_int8`)
        self.graph = graph
        #: run every row of a batch alone.  Why: an int8 graph quantises its activations with one scale per run,
        #: computed over every row in it (padding included), so a comment's vector would depend on the comments
        #: sharing its batch (cosine down to 0.974 between batches of 32 and of 1 on real texts).  Alone, the same
        #: text always gets the same vector; int8 runs of one row cost about what batched ones do (no padding).
        self.row_by_row = graph != MODEL_FILENAME
        self._session = ort.InferenceSession(
            str(export_dir / graph), sess_options=options, providers=execution_providers(ort)
        )
        self._shrink_arena = ort.RunOptions()
        self._shrink_arena.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        #: batches larger than this (rows x width²) shrink the arena after their run; None: never (or no arena)
        self.arena_shrink_above: int | None = ARENA_SHRINK_ABOVE if options.enable_cpu_mem_arena else None
        table = meta.get("embeddings")
        #: word embeddings looked up outside the graph (None: the graph takes ``input_ids`` itself)
        self.embedding_rows: EmbeddingRows | None = None
        if table:
            self.embedding_rows = EmbeddingRows(
                export_dir / table["file"], int(table["rows"]), int(table["dim"]), cache_mb=embedding_cache_mb
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
        embeddings: EmbeddingsPlacement = "external",
        embedding_cache_mb: float = DEFAULT_EMBEDDING_CACHE_MB,
        precision: Precision = "fp32",
        int8_keep_fp32: tuple[int, ...] | None = None,
    ) -> OnnxEncoder:
        """Export ``checkpoint_dir`` into ``cache_dir/onnx`` if needed (and quantise it for int8), then load it."""
        export_dir = export_onnx(checkpoint_dir, Path(cache_dir) / "onnx", progress=progress, embeddings=embeddings)
        graph = MODEL_FILENAME
        if precision == "int8":
            if progress and not (export_dir / int8_graph_name(int8_keep_fp32)).exists():
                progress("quantising the ONNX graph to int8")
            graph = quantize_int8(export_dir, int8_keep_fp32).name
        return cls(
            export_dir,
            threads=threads,
            prefix=prefix,
            max_length=max_length,
            name=name or f"onnx/{model_label(checkpoint_dir)}",
            embedding_cache_mb=embedding_cache_mb,
            graph=graph,
        )

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Content token ids (prefix included, no special tokens, no truncation)."""
        encoded = self._tokenizer.encode_batch([self.prefix + t for t in texts], add_special_tokens=False)
        return [e.ids for e in encoded]

    def token_counts(self, texts: list[str]) -> list[int]:
        """Tokens of each text as the model reads it (prefix included, specials and windows not)."""
        return [len(ids) for ids in self.token_ids(texts)]

    def _feed(self, ids: IdMatrix, mask: IdMatrix) -> dict[str, npt.NDArray[Any]]:
        """The graph's inputs for a batch: the ids, or their embedding rows when the table is outside the graph."""
        if self.embedding_rows is None:
            return {"input_ids": ids, "attention_mask": mask}
        return {"inputs_embeds": self.embedding_rows.lookup(ids), "attention_mask": mask}

    def _infer(self, ids: IdMatrix, mask: IdMatrix) -> npt.NDArray[np.float32]:
        """Token states of a batch; a large batch hands its arena growth back (see :data:`ARENA_SHRINK_ABOVE`)."""
        if self.row_by_row and ids.shape[0] > 1:
            states = np.zeros((*ids.shape, self.dim), dtype=np.float32)
            for i, n in enumerate(mask.sum(axis=1).tolist()):
                states[i, :n] = self._infer(ids[i : i + 1, :n], mask[i : i + 1, :n])[0]
            return states
        large = self.arena_shrink_above is not None and ids.shape[0] * ids.shape[1] ** 2 > self.arena_shrink_above
        (hidden,) = self._session.run(["last_hidden_state"], self._feed(ids, mask), self._shrink_arena if large else None)
        return np.asarray(hidden, np.float32)

    def _run(self, ids: IdMatrix, mask: IdMatrix) -> npt.NDArray[np.float32]:
        return masked_mean(self._infer(ids, mask), mask)

    def encode(self, texts: list[str], batch_size: int = 32) -> Embeddings:
        """Embed ``texts``; see :mod:`models.encoders.windowing` for long texts."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        windows = plan_windows(self.token_ids(texts), self.specials, self.max_length)
        return encode_windows(windows, len(texts), self.dim, batch_size, self._run, self.specials.pad)

    def _run_states(self, ids: IdMatrix, mask: IdMatrix) -> npt.NDArray[np.float32]:
        return self._infer(ids, mask)

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
