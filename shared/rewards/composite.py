"""The composite reward: the weighted mean of the present components, zeroed by a failed gate."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from shared.rewards.config import RewardConfig

NO_COMPONENTS = "no_components"
"""``gated_by`` of a label none of whose weighted components could be computed."""


@dataclass(frozen=True)
class Composite:
    composite_reward: float
    gated_by: str | None


def clean(value: float | None) -> float | None:
    """A component score as stored: None for missing (NaN included), else clamped to [0, 1]."""
    if value is None or math.isnan(value):
        return None
    return min(1.0, max(0.0, float(value)))


def composite_reward(components: Mapping[str, float | None], config: RewardConfig) -> Composite:
    """Weighted mean over the present components (in the configuration's order, so the float sum is
    the same whatever order the components were computed in), then the gates."""
    for gate in config.gates:
        score = components.get(gate.component)
        if score is not None and score < gate.min:
            return Composite(0.0, gate.name)
    weighted = 0.0
    total_weight = 0.0
    for name, weight in config.weights.items():
        score = components.get(name)
        if score is None or weight <= 0:
            continue
        weighted += weight * score
        total_weight += weight
    if total_weight == 0:
        return Composite(0.0, NO_COMPONENTS)
    return Composite(round(min(1.0, max(0.0, weighted / total_weight)), 12), None)
