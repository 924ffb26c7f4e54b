"""The XLM-R tokenizer cut to the pieces Latin-script text can reach, giving the full tokenizer's output exactly.

Why: the Unigram tokenizer of multilingual-e5-small holds about 280 MB of heap for its 250,002 pieces (its trie
keeps a node per character), the largest single item of the service's memory.  134k of those pieces contain
letters of other scripts (Cyrillic, CJK, Arabic, Devanagari, ...) that Italian and English text never reaches.

**Which pieces are kept** (:func:`keeps`): every piece none of whose letters belongs to another script than Latin,
so Latin letters, digits, punctuation, symbols, emoji, combining marks and ``▁`` (116,097 pieces, about 100 MB).

**Why the output is exactly the full tokenizer's.**  A Unigram tokenizer cuts each pre-tokenised word along the
best-scoring path through the lattice of the vocabulary's pieces that match its substrings; a character no piece
of length one covers also gets an "unknown" node scored ``min(score) - 10``.  For a text none of whose normalised
characters occurs in a removed piece, every piece that matches it is kept, so the lattice is the same, the unknown
score is the same (the lowest-scoring piece is kept: checked when the file is built, else no pruned tokenizer is
made), the best path is the same, and its pieces are mapped back to the full vocabulary's ids; offsets come from
the same normaliser and pre-tokeniser.  A character that occurs only in removed pieces can only be covered by the
unknown piece in the pruned lattice, so a text that needs the full vocabulary always shows an unknown id in the
pruned output: only those texts (2 of 38,116 real IT/EN texts: a ``ಠ_ಠ`` and a Japanese ``ー``; most unknown ids
are emoji the full vocabulary lacks too) are normalised and looked up against the characters that occur only in
removed pieces, and if one of their characters is there they are tokenised by the full tokenizer.  That one is loaded for the call
(about 0.7 s) and released :data:`FULL_KEEP_SECONDS` after its last use, so its 280 MB are resident only while
texts in other scripts keep arriving.  ``benchmarks/bench_tokenizer.py`` checks ids and offsets on every real
text of ``../shared/data`` and measures memory and speed (``reports/perf/tokenizer_pruning.json``).

The pruned ``tokenizer.json`` and its id map are built once per export folder (next to the full one, cached) and
rebuilt when the full file or :data:`RULE` changes.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import unicodedata
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from voce.models.caches import release_heap
from voce.models.files import atomic_file

log = logging.getLogger(__name__)

#: bump when :func:`keeps` changes: pruned files of another rule are rebuilt
RULE = "latin-letters-1"
#: seconds the full tokenizer stays loaded after the last text that needed it
FULL_KEEP_SECONDS = 60.0


def keeps(piece: str) -> bool:
    """Whether a piece stays: it has no letter of a script other than Latin (everything that is not a letter —
    digits, punctuation, symbols, emoji, combining marks, ``▁`` — stays)."""
    return all(unicodedata.category(ch)[0] != "L" or unicodedata.name(ch, "").startswith("LATIN") for ch in piece)


class Encoded(NamedTuple):
    """What the encoders read of a tokenisation: the full vocabulary's ids and each piece's character offsets."""

    ids: list[int]
    offsets: list[tuple[int, int]]


def _paths(full: Path) -> tuple[Path, Path]:
    return full.with_name(f"{full.stem}.pruned.json"), full.with_name(f"{full.stem}.pruned.npz")


def build(full: Path, digest: str) -> tuple[str, dict[str, Any]] | None:
    """The pruned tokenizer's JSON text and its sidecar (``ids``: pruned id -> full id, ``removed``: the characters
    that occur only in removed pieces), or None when this tokenizer cannot be pruned exactly (not a Unigram model
    with an unknown piece, which is how a text that needs the full vocabulary shows, or its lowest-scoring piece
    would go)."""
    spec = json.loads(full.read_text(encoding="utf-8"))
    model = spec.get("model") or {}
    vocab = model.get("vocab")
    if model.get("type") != "Unigram" or not vocab or model.get("byte_fallback") or model.get("unk_id") is None:
        return None
    specials = {t["id"] for t in spec.get("added_tokens", [])}
    kept = [i for i, (piece, _score) in enumerate(vocab) if i in specials or keeps(piece)]
    if min(s for _p, s in vocab) != min(vocab[i][1] for i in kept):
        return None  # the unknown piece would score differently
    new_id = {old: new for new, old in enumerate(kept)}
    if model["unk_id"] not in new_id:
        return None
    kept_chars = {ch for i in kept for ch in vocab[i][0]}
    removed = sorted({ch for i, (piece, _s) in enumerate(vocab) if i not in new_id for ch in piece} - kept_chars)
    model["vocab"] = [vocab[i] for i in kept]
    model["unk_id"] = new_id[model["unk_id"]]
    for token in spec.get("added_tokens", []):
        token["id"] = new_id[token["id"]]
    _remap_post_processor(spec.get("post_processor"), new_id)
    side = {"ids": np.asarray(kept, np.int32), "removed": "".join(removed), "source": digest, "rule": RULE,
            "unk": int(model["unk_id"])}
    return json.dumps(spec, ensure_ascii=False), side


def _remap_post_processor(node: Any, new_id: dict[int, int]) -> None:
    """Template special tokens carry their ids: move them to the pruned vocabulary's."""
    if not isinstance(node, dict):
        return
    for tok in (node.get("special_tokens") or {}).values():
        tok["ids"] = [new_id[i] for i in tok.get("ids", [])]
    for sub in node.get("processors") or []:  # a Sequence of post-processors
        _remap_post_processor(sub, new_id)


def _load_or_build(full: Path, digest: str) -> tuple[Any, dict[str, Any]] | None:
    """The pruned tokenizer and sidecar for ``full``: read from next to it, or built (and written there when the
    folder is writable; else kept in memory only)."""
    from tokenizers import Tokenizer

    json_path, side_path = _paths(full)
    if json_path.is_file() and side_path.is_file():
        with np.load(side_path, allow_pickle=False) as z:
            side = {k: z[k] for k in z.files}
        if str(side["source"]) == digest and str(side["rule"]) == RULE:
            return Tokenizer.from_file(str(json_path)), {
                "ids": side["ids"], "removed": str(side["removed"]), "unk": int(side["unk"])}
    started = time.perf_counter()
    built = build(full, digest)
    if built is None:
        return None
    text, side = built
    try:
        with atomic_file(side_path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **side)
        with atomic_file(json_path) as tmp:
            Path(tmp).write_text(text, encoding="utf-8")
    except OSError as exc:  # a read-only cache: the pruned tokenizer lives in memory only
        log.info("could not store the pruned tokenizer next to %s (%s); built in memory", full, exc)
    tokenizer = Tokenizer.from_str(text)
    del text
    release_heap()
    log.info("pruned tokenizer built in %.1f s: %d of the pieces kept", time.perf_counter() - started, len(side["ids"]))
    return tokenizer, side


class _OnDemand:
    """The full tokenizer, loaded when a text needs it and released ``keep_seconds`` after its last use."""

    def __init__(self, path: Path, keep_seconds: float) -> None:
        self.path = path
        self.keep_seconds = keep_seconds
        self._tokenizer: Any = None
        self._last = 0.0
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        #: how many times it was loaded (a metric for tests and benchmarks)
        self.loads = 0

    def get(self) -> Any:
        from tokenizers import Tokenizer

        with self._lock:
            if self._tokenizer is None:
                self._tokenizer = Tokenizer.from_file(str(self.path))
                self._tokenizer.no_truncation()
                self._tokenizer.no_padding()
                self.loads += 1
                log.info("a text needs letters of another script: the full tokenizer is loaded (for %.0f s)",
                         self.keep_seconds)
            self._last = time.monotonic()
            if self._timer is None:
                self._schedule(self.keep_seconds)
            return self._tokenizer

    def _schedule(self, delay: float) -> None:
        self._timer = threading.Timer(delay, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _expire(self) -> None:
        with self._lock:
            self._timer = None
            idle = time.monotonic() - self._last
            if idle < self.keep_seconds:
                self._schedule(self.keep_seconds - idle)
                return
            self._tokenizer = None
        release_heap()

    @property
    def loaded(self) -> bool:
        return self._tokenizer is not None


class PrunedTokenizer:
    """``encode_batch`` as :class:`tokenizers.Tokenizer`'s (ids and offsets only), from the pruned vocabulary, with
    the texts that need the full one tokenised by it (see the module's docstring for why this is exact)."""

    def __init__(self, full_path: Path, pruned: Any, side: dict[str, Any],
                 keep_seconds: float = FULL_KEEP_SECONDS) -> None:
        self._pruned = pruned
        self._pruned.no_truncation()
        self._pruned.no_padding()
        self._ids: list[int] = np.asarray(side["ids"], np.int64).tolist()  # pruned id -> full id
        self._removed = frozenset(side["removed"])
        self._unk = int(side["unk"])
        self._full = _OnDemand(full_path, keep_seconds)
        self.vocab_size = len(self._ids)

    @property
    def full_loads(self) -> int:
        """How many times the full tokenizer had to be loaded."""
        return self._full.loads

    def needs_full(self, text: str, ids: list[int]) -> bool:
        """Whether ``text`` (whose pruned ids are ``ids``) may tokenise differently with the full vocabulary."""
        if self._unk not in ids:
            return False
        normalizer = self._pruned.normalizer
        normalized = normalizer.normalize_str(text) if normalizer is not None else text
        return not self._removed.isdisjoint(normalized)

    def encode_batch(self, texts: list[str], add_special_tokens: bool = False) -> list[Encoded]:
        encodings = self._pruned.encode_batch(texts, add_special_tokens=add_special_tokens)
        full_id = self._ids.__getitem__
        out: list[Encoded] = []
        redo: list[int] = []
        unk = self._unk
        for k, enc in enumerate(encodings):
            ids = enc.ids
            if unk in ids and self.needs_full(texts[k], ids):
                redo.append(k)
                out.append(Encoded([], []))
                continue
            out.append(Encoded(list(map(full_id, ids)), enc.offsets))
        if redo:
            full = self._full.get()
            for k, enc in zip(redo, full.encode_batch([texts[k] for k in redo], add_special_tokens=add_special_tokens),
                              strict=True):
                out[k] = Encoded(list(enc.ids), list(enc.offsets))
        return out

    def encode(self, text: str, add_special_tokens: bool = False) -> Encoded:
        return self.encode_batch([text], add_special_tokens=add_special_tokens)[0]


def pruned_tokenizer(full: Path, digest: str | None = None, keep_seconds: float = FULL_KEEP_SECONDS
                     ) -> PrunedTokenizer | None:
    """The pruned tokenizer for the ``tokenizer.json`` at ``full`` (built and cached next to it the first time), or
    None when it cannot be pruned exactly."""
    full = Path(full)
    digest = digest or hashlib.sha256(full.read_bytes()).hexdigest()
    loaded = _load_or_build(full, digest)
    if loaded is None:
        return None
    tokenizer, side = loaded
    return PrunedTokenizer(full, tokenizer, side, keep_seconds)
