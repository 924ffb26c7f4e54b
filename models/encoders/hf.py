"""PyTorch backend: any Hugging Face encoder through ``transformers``.

This is the reference implementation the faster backends are checked against
(ONNX parity tests) and the one later fine-tuning builds on, so it favours
plainness over speed: ``AutoTokenizer`` + ``AutoModel``, mean pooling over the
attention mask, L2 normalisation.  Long texts use the shared windowing in
:mod:`models.encoders.windowing` instead of being truncated.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from voce.models.encoders.base import Embeddings
from voce.models.encoders.windowing import IdMatrix, SpecialTokens, encode_windows, plan_windows

#: e5 convention: symmetric tasks (classification, clustering) use the query prefix
E5_QUERY_PREFIX = "query: "
#: tokenizers report "no limit" as a huge number; anything above this is not a real limit
NO_LIMIT = 1_000_000


def model_label(model: str | Path) -> str:
    """Short, stable model identifier for encoder names (an HF id, or a folder's name)."""
    path = Path(model)
    return path.name if path.exists() else str(model)


def effective_max_length(requested: int, tokenizer_limit: int | None, positions: int | None) -> int:
    """The longest window the model can really take: the smallest of the known limits."""
    limits = [requested]
    if tokenizer_limit and tokenizer_limit < NO_LIMIT:
        limits.append(tokenizer_limit)
    if positions:
        limits.append(positions)
    return min(limits)


class TorchEncoder:
    """Sentence embeddings from a transformers ``AutoModel`` (mean pooling, unit norm).

    ``model`` is a Hugging Face model id or a local checkpoint folder (for the
    default e5 model, the folder made by :func:`models.encoders.e5_convert.ensure_e5_checkpoint`).
    Only safetensors weights are loaded: pickle checkpoints are refused.

    ``threads`` sets torch's intra-op thread pool, which is process-wide; leave
    it ``None`` to keep torch's default.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        prefix: str = E5_QUERY_PREFIX,
        max_length: int = 512,
        threads: int | None = None,
        name: str | None = None,
    ) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self._tokenizer: Any = AutoTokenizer.from_pretrained(str(model))
        self._model: Any = AutoModel.from_pretrained(str(model), use_safetensors=True).eval()
        config = self._model.config
        self.dim: int = int(config.hidden_size)
        self.prefix = prefix
        self.max_length = effective_max_length(
            max_length, self._tokenizer.model_max_length, getattr(config, "max_position_embeddings", None)
        )
        probe = self._tokenizer("probe", add_special_tokens=False)["input_ids"]
        wrapped = self._tokenizer("probe", add_special_tokens=True)["input_ids"]
        self.specials = SpecialTokens.from_template(wrapped, probe, self._tokenizer.pad_token_id)
        self.name: str = name or f"torch/{model_label(model)}"

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Content token ids (prefix included, no special tokens, no truncation)."""
        encoded = self._tokenizer(
            [self.prefix + t for t in texts], add_special_tokens=False, truncation=False, verbose=False
        )
        return [list(ids) for ids in encoded["input_ids"]]

    def token_counts(self, texts: list[str]) -> list[int]:
        """Tokens of each text as the model reads it (prefix included, specials and windows not)."""
        return [len(ids) for ids in self.token_ids(texts)]

    def _run(self, ids: IdMatrix, mask: IdMatrix) -> npt.NDArray[np.float32]:
        torch = self._torch
        mask_t = torch.from_numpy(mask)
        hidden = self._model(input_ids=torch.from_numpy(ids), attention_mask=mask_t).last_hidden_state
        m = mask_t.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
        return pooled.float().numpy()

    def encode(self, texts: list[str], batch_size: int = 32) -> Embeddings:
        """Embed ``texts``; see :mod:`models.encoders.windowing` for long texts."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        windows = plan_windows(self.token_ids(texts), self.specials, self.max_length)
        with self._torch.inference_mode():
            return encode_windows(windows, len(texts), self.dim, batch_size, self._run, self.specials.pad)
