"""Learning triggers: when the curator builds a dataset, and the numbers behind the decision.

Each trigger is a pure function of counters and windows the curator keeps in Redis; it returns a
``Trigger`` (the reason and its numbers, recorded on dataset.ready) or None.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

SAMPLE_COUNT = "sample_count"
TIME_INTERVAL = "time_interval"
REWARD_DROP = "reward_drop"
ERROR_RATE = "error_rate"


@dataclass(frozen=True)
class Trigger:
    reason: str
    details: dict[str, float] = field(default_factory=dict)


def sample_count(new_samples: int, threshold: int) -> Trigger | None:
    """Enough new labeled traces since the last dataset."""
    if new_samples < threshold:
        return None
    return Trigger(SAMPLE_COUNT, {"new_samples": float(new_samples), "threshold": float(threshold)})


def time_interval(
    now: float, since: float | None, new_samples: int, max_interval_s: float, min_new_samples: int
) -> Trigger | None:
    """Too long since the last dataset (or since the first label), with enough new traces to learn from."""
    if since is None or new_samples < min_new_samples:
        return None
    elapsed = now - since
    if elapsed < max_interval_s:
        return None
    return Trigger(
        TIME_INTERVAL,
        {"elapsed_s": round(elapsed, 3), "max_interval_s": max_interval_s, "new_samples": float(new_samples)},
    )


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def reward_drop(
    rewards: Sequence[float], window: int, threshold: float, new_samples: int, min_new_samples: int
) -> Trigger | None:
    """The champion's mean live reward over the latest ``window`` labels fell ``threshold`` below the
    window before it."""
    if len(rewards) < 2 * window or new_samples < min_new_samples:
        return None
    previous = _mean(rewards[-2 * window : -window])
    latest = _mean(rewards[-window:])
    if previous - latest < threshold:
        return None
    return Trigger(
        REWARD_DROP,
        {
            "previous_mean": round(previous, 6),
            "latest_mean": round(latest, 6),
            "drop": round(previous - latest, 6),
            "threshold": threshold,
            "window": float(window),
            "new_samples": float(new_samples),
        },
    )


def error_rate(
    errors: Sequence[int],
    window: int,
    threshold: float,
    factor: float,
    new_samples: int,
    min_new_samples: int,
) -> Trigger | None:
    """The share of failed generations over the latest ``window`` traces reached ``threshold`` and is
    ``factor`` times the share of the window before it (or there is no window before it yet)."""
    if len(errors) < window or new_samples < min_new_samples:
        return None
    latest = _mean(errors[-window:])
    before = errors[-2 * window : -window]
    previous = _mean(before) if len(before) == window else None
    if latest < threshold or (previous is not None and latest < factor * previous):
        return None
    details = {
        "error_rate": round(latest, 6),
        "threshold": threshold,
        "window": float(window),
        "new_samples": float(new_samples),
    }
    if previous is not None:
        details["previous_error_rate"] = round(previous, 6)
    return Trigger(ERROR_RATE, details)
