"""The feedback component: explicit ratings and implicit signals become one score in [0, 1].

score = clamp01( sum of the weights of the implicit signal kinds seen (each kind once)
                 + explicit_rating_weight * mean of the explicit ratings )

Ratings are normalized to [0, 1] at ingest. Each feedback counts once (by feedback id), and the result
depends only on the set of feedback, never on the order it arrived in. No feedback: the component is
missing (None), never 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shared.events import EXPLICIT_FEEDBACK_KINDS
from shared.rewards.config import FeedbackWeights


@dataclass(frozen=True)
class FeedbackSignal:
    """One piece of feedback as the reward sees it."""

    feedback_id: str
    kind: str
    value: float | None = None


def feedback_score(signals: Iterable[FeedbackSignal], weights: FeedbackWeights) -> float | None:
    """The feedback component of one trace, or None when the trace has no usable feedback."""
    unique = {signal.feedback_id: signal for signal in signals}
    if not unique:
        return None
    implicit_kinds = sorted(
        {signal.kind for signal in unique.values() if weights.implicit(signal.kind) is not None}
    )
    ratings = sorted(
        float(signal.value)
        for signal in unique.values()
        if signal.kind in EXPLICIT_FEEDBACK_KINDS and signal.value is not None
    )
    if not implicit_kinds and not ratings:
        return None
    total = 0.0
    for kind in implicit_kinds:
        total += weights.implicit(kind) or 0.0
    if ratings:
        total += weights.explicit_rating_weight * (sum(ratings) / len(ratings))
    return min(1.0, max(0.0, total))
