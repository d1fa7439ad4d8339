"""Reward components that need no LLM: embedding similarity, string similarity, ROUGE-L.

They compute what ragas's non-LLM metrics compute (``SemanticSimilarity``: cosine of normalized
embeddings; ``NonLLMStringSimilarity``: 1 - normalized Levenshtein distance via rapidfuzz;
``RougeScore``: rougeL F-measure with stemming via rouge-score), batched over many traces at once
instead of one embedding call per text. ``tests/shared/rewards`` checks the equality with ragas.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from shared.rewards.config import RewardError
from shared.rewards.embeddings import Vectors


def cosine_to_closest(answer: Vectors, candidates: Vectors) -> float | None:
    """Cosine similarity (normalized vectors) between an answer and its closest candidate, in [0, 1]."""
    if candidates.shape[0] == 0:
        return None
    best = float(np.max(candidates @ answer))
    return min(1.0, max(0.0, best))


def string_similarity(reference: str, response: str) -> float:
    """1 - normalized Levenshtein distance (ragas NonLLMStringSimilarity, LEVENSHTEIN)."""
    from rapidfuzz.distance import Levenshtein

    return float(1.0 - Levenshtein.normalized_distance(reference, response))


@functools.cache
def _rouge_scorer() -> Any:
    try:
        from rouge_score import rouge_scorer
    except ImportError as exc:
        raise RewardError(
            "the rouge_l component needs the rouge-score package, which is not installed; "
            "remove rouge_l from the reward configuration or install rouge-score"
        ) from exc
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(reference: str, response: str) -> float:
    """ROUGE-L F-measure with stemming (ragas RougeScore, rougeL, fmeasure)."""
    return float(_rouge_scorer().score(reference, response)["rougeL"].fmeasure)


def rouge_available() -> bool:
    try:
        _rouge_scorer()
    except RewardError:
        return False
    return True


def similarity_matrix(vectors: Vectors) -> Vectors:
    """The cosine similarity matrix of normalized row vectors (n x n)."""
    return np.asarray(vectors @ vectors.T, dtype=np.float32)


def unique_texts(groups: Sequence[Sequence[str]]) -> list[str]:
    """Every distinct text of several lists, in first-seen order."""
    return list(dict.fromkeys(text for group in groups for text in group))
