"""Hash splits must be deterministic, group-safe, order-free; fingerprints must be exact."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from pathlib import Path

import pytest

from voce.data import datasets as data
from voce.data import splits
from voce.data.datasets import Example

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"


def make_examples(n_groups: int, per_group: int = 1, source: str = "toy") -> list[Example]:
    return [
        Example(source=source, uid=f"{source}:{g}:{i}", text=f"t{g}", language="en", group=str(g))
        for g in range(n_groups)
        for i in range(per_group)
    ]


def uids(rows: list[Example]) -> set[str]:
    return {ex.uid for ex in rows}


def test_group_hash_is_pinned() -> None:
    # Changing the hash scheme silently reshuffles every dev set; this value must never move.
    expected = int.from_bytes(hashlib.sha256(b"13:toy:42").digest()[:8], "big") / 2**64
    assert splits.group_hash(13, "toy", "42") == expected
    assert 0.0 <= expected < 1.0


def test_split_is_deterministic_and_partitions() -> None:
    rows = make_examples(500, per_group=2)
    train_a, dev_a = splits.split_examples(rows)
    train_b, dev_b = splits.split_examples(rows)
    assert [e.uid for e in dev_a] == [e.uid for e in dev_b]
    assert [e.uid for e in train_a] == [e.uid for e in train_b]
    assert uids(train_a) | uids(dev_a) == uids(rows) and not uids(train_a) & uids(dev_a)


def test_split_does_not_depend_on_input_order() -> None:
    rows = make_examples(300, per_group=3)
    shuffled = rows[:]
    random.Random(0).shuffle(shuffled)
    assert uids(splits.split_examples(rows)[1]) == uids(splits.split_examples(shuffled)[1])
    # nor on which other rows are present
    subset = rows[::2]
    assert uids(splits.split_examples(subset)[1]) == uids(splits.split_examples(rows)[1]) & uids(subset)


def test_groups_never_straddle_the_split() -> None:
    rows = make_examples(400, per_group=4)
    train, dev = splits.split_examples(rows, dev_fraction=0.3)
    assert not {e.group for e in train} & {e.group for e in dev}


def test_dev_fraction_is_roughly_right() -> None:
    rows = make_examples(5000)
    for fraction in (0.1, 0.2, 0.5):
        _, dev = splits.split_examples(rows, dev_fraction=fraction)
        assert abs(len(dev) / len(rows) - fraction) < 0.02


def test_seed_and_source_change_the_assignment() -> None:
    rows = make_examples(500)
    dev13 = uids(splits.split_examples(rows, seed=13)[1])
    assert dev13 != uids(splits.split_examples(rows, seed=14)[1])
    other = make_examples(500, source="other")
    dev_other = {u.split(":", 1)[1] for u in uids(splits.split_examples(other)[1])}
    assert {u.split(":", 1)[1] for u in dev13} != dev_other


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_split_rejects_bad_fraction(fraction: float) -> None:
    with pytest.raises(ValueError):
        splits.split_examples(make_examples(3), dev_fraction=fraction)


def test_split_keeps_fixture_airline_duplicates_together() -> None:
    rows = data.load_airline(FIXTURES)
    for seed in range(30):
        train, dev = splits.split_examples(rows, seed=seed)
        assert not {e.group for e in train} & {e.group for e in dev}


def test_kfold_validates_every_group_exactly_once() -> None:
    rows = make_examples(103, per_group=2) + make_examples(20, per_group=3, source="b")
    folds = splits.kfold_groups(rows, k=5)
    assert len(folds) == 5
    seen: Counter[str] = Counter()
    for train, val in folds:
        assert uids(train) | uids(val) == uids(rows) and not uids(train) & uids(val)
        assert not {(e.source, e.group) for e in train} & {(e.source, e.group) for e in val}
        seen.update(e.uid for e in val)
    assert set(seen.values()) == {1} and len(seen) == len(rows)


def test_kfold_folds_are_balanced_per_source_and_order_free() -> None:
    rows = make_examples(103, per_group=2) + make_examples(20, per_group=3, source="b")
    assignment = splits.assign_folds(rows, k=5)
    for source in ("toy", "b"):
        sizes = Counter(f for (s, _), f in assignment.items() if s == source)
        assert max(sizes.values()) - min(sizes.values()) <= 1
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    assert splits.assign_folds(shuffled, k=5) == assignment
    assert [uids(v) for _, v in splits.kfold_groups(shuffled, k=5)] == [
        uids(v) for _, v in splits.kfold_groups(rows, k=5)
    ]


def test_kfold_rejects_k_below_two() -> None:
    with pytest.raises(ValueError):
        splits.kfold_groups(make_examples(5), k=1)


def test_official_ate_dev_is_exposed_separately() -> None:
    dev = splits.load_ate_absita("dev", FIXTURES)
    assert {ex.raw["split"] for ex in dev} == {"dev"}


def test_data_fingerprint_hashes_files(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    f1, f2 = tmp_path / "a" / "x.csv", tmp_path / "y.txt"
    f1.write_bytes(b"hello")
    f2.write_bytes(b"world")
    fp = splits.data_fingerprint([f1, f2], root=tmp_path)
    assert fp == {"a/x.csv": hashlib.sha256(b"hello").hexdigest(), "y.txt": hashlib.sha256(b"world").hexdigest()}
    assert splits.data_fingerprint([f1]) == {f1.as_posix(): hashlib.sha256(b"hello").hexdigest()}
    # a directory stands for its files (hidden ones skipped), keyed relative to it
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "junk").write_bytes(b"junk")
    assert splits.data_fingerprint(tmp_path) == fp
    f1.write_bytes(b"hello!")
    assert splits.data_fingerprint([f1, f2], root=tmp_path)["a/x.csv"] != fp["a/x.csv"]


def test_data_fingerprint_of_fixture_dataset_files() -> None:
    fp = splits.data_fingerprint(data.dataset_paths(FIXTURES), root=FIXTURES)
    assert set(fp) == {rel for rels in data.DATASET_FILES.values() for rel in rels}
    assert all(len(h) == 64 for h in fp.values())
