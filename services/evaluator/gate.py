"""The evaluation gate: pure functions from per-item scores to verdicts, every threshold configurable.

- absolute: the candidate's mean of a metric (faithfulness by default) is at least its floor;
- relative, win rate: the pairwise win rate (ties count half) is at least 0.5 plus the margin;
- relative, no worse: for each compared metric, the paired bootstrap interval of the mean difference
  (candidate minus champion, over the items where both have a score) has its lower bound at or above
  minus the metric's tolerance: the gate asks the candidate to *show* it is not worse, so a point estimate
  that happens to be fine is not enough;
- relative, rules: the candidate's rule-check pass rate is no worse than the champion's (less a
  tolerance, 0 by default).

The reason of a failed gate names the metric and the numbers behind it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from services.evaluator.settings import EvaluationSettings
from shared.events import GateVerdict

COMPOSITE = "composite_reward"
WIN_RATE = "win_rate"
RULE_PASS_RATE = "rule_pass_rate"


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int


def bootstrap_mean(differences: Sequence[float], samples: int, confidence: float, seed: int) -> Interval:
    """Percentile bootstrap interval of the mean of paired differences."""
    values = np.asarray(differences, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no paired differences to bootstrap")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(samples, values.size))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return Interval(float(values.mean()), float(low), float(high), int(values.size))


def mean_present(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if value is not None and not math.isnan(value)]
    return sum(present) / len(present) if present else None


def absolute_verdicts(
    candidate: Mapping[str, Sequence[float | None]], settings: EvaluationSettings, judged: bool
) -> list[GateVerdict]:
    verdicts = []
    for metric, floor in settings.absolute.items():
        mean = mean_present(candidate.get(metric, []))
        gate = f"{metric}_min"
        if mean is None:
            if not judged:
                verdicts.append(
                    GateVerdict(
                        gate=gate, passed=True, threshold=floor, detail="skipped: no judge configured"
                    )
                )
            else:
                verdicts.append(
                    GateVerdict(
                        gate=gate,
                        passed=False,
                        threshold=floor,
                        detail=f"{metric} could not be computed for any item",
                    )
                )
            continue
        verdicts.append(
            GateVerdict(
                gate=gate,
                passed=mean >= floor,
                value=mean,
                threshold=floor,
                detail=f"mean {metric} {mean:.3f} {'>=' if mean >= floor else '<'} {floor:g}",
            )
        )
    return verdicts


def win_rate_verdict(scores: Sequence[float | None], settings: EvaluationSettings, how: str) -> GateVerdict:
    threshold = 0.5 + settings.min_win_margin
    present = [score for score in scores if score is not None]
    if not present:
        return GateVerdict(
            gate=WIN_RATE, passed=False, threshold=threshold, detail="no item could be compared"
        )
    rate = sum(present) / len(present)
    wins = sum(score > 0.5 for score in present)
    ties = sum(score == 0.5 for score in present)
    losses = len(present) - wins - ties
    return GateVerdict(
        gate=WIN_RATE,
        passed=rate >= threshold,
        value=rate,
        threshold=threshold,
        detail=(
            f"win rate {rate:.3f} {'>=' if rate >= threshold else '<'} {threshold:.3f} ({how}; "
            f"{wins} wins, {ties} ties, {losses} losses over {len(present)} items)"
        ),
    )


def no_worse_verdicts(
    candidate: Mapping[str, Sequence[float | None]],
    champion: Mapping[str, Sequence[float | None]],
    metrics: Sequence[str],
    settings: EvaluationSettings,
) -> list[GateVerdict]:
    verdicts = []
    for index, metric in enumerate(metrics):
        pairs = [
            (c, b)
            for c, b in zip(candidate.get(metric, []), champion.get(metric, []), strict=True)
            if c is not None and b is not None
        ]
        tolerance = settings.tolerance_of(metric)
        gate = f"{metric}_no_worse"
        if not pairs:
            verdicts.append(
                GateVerdict(gate=gate, passed=True, threshold=-tolerance, detail="skipped: no paired scores")
            )
            continue
        interval = bootstrap_mean(
            [c - b for c, b in pairs], settings.bootstrap_samples, settings.confidence, settings.seed + index
        )
        passed = interval.low >= -tolerance - 1e-12
        verdicts.append(
            GateVerdict(
                gate=gate,
                passed=passed,
                value=interval.mean,
                threshold=-tolerance,
                detail=(
                    f"{metric} candidate - champion {interval.mean:+.3f}, "
                    f"{settings.confidence:.0%} bootstrap interval [{interval.low:+.3f}, "
                    f"{interval.high:+.3f}] over {interval.n} items; lower bound "
                    f"{'>=' if passed else '<'} -{tolerance:g}"
                ),
            )
        )
    return verdicts


def rules_verdict(candidate_rate: float | None, champion_rate: float | None, tolerance: float) -> GateVerdict:
    if candidate_rate is None or champion_rate is None:
        return GateVerdict(gate=RULE_PASS_RATE, passed=True, detail="skipped: no regression items")
    threshold = champion_rate - tolerance
    passed = candidate_rate >= threshold - 1e-12
    return GateVerdict(
        gate=RULE_PASS_RATE,
        passed=passed,
        value=candidate_rate,
        threshold=threshold,
        detail=(
            f"rule pass rate {candidate_rate:.3f} {'>=' if passed else '<'} champion's {champion_rate:.3f}"
            + (f" - {tolerance:g}" if tolerance else "")
        ),
    )


def reason(verdicts: Sequence[GateVerdict]) -> str:
    """Why the gate decided what it did: every failed gate with its numbers, or that all held."""
    failed = [verdict for verdict in verdicts if not verdict.passed]
    if failed:
        return "failed " + "; ".join(f"{verdict.gate}: {verdict.detail}" for verdict in failed)
    return f"passed all {len(verdicts)} gates: " + "; ".join(
        verdict.detail for verdict in verdicts if verdict.gate in (WIN_RATE,) or verdict.gate.endswith("_min")
    )
