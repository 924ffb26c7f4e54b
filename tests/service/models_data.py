"""A second tiny bundle for the registry and hot-swap tests: other training rows and regularisation than
``tiny_bundle_dir`` (version tiny-test), so it answers differently and a mix of the two would show."""
from __future__ import annotations

from pathlib import Path


def train_second_bundle(out: Path, version: str = "tiny-v2") -> Path:
    from tests.tiny import tiny_config, tiny_examples
    from voce.models.encoders.factory import EncoderSpec, load_encoder
    from voce.training.train import train_heads

    enc = load_encoder(EncoderSpec(backend="fake", model="fake", cache_dir=out.parent))
    cfg = tiny_config(out).model_copy(update={"version": version, "C_sentiment": 0.05})
    train_heads(cfg, enc, tiny_examples(repeat=2), progress=lambda _m: None).save(out)
    return out
