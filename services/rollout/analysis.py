"""Canary analysis: canary vs champion over the same window, one verdict per metric.

Pure functions over samples; the controller feeds them from the live event stream (trace.ingested,
trace.labeled, feedback.received) and acts on the result.

- error rate (count-based): a one-sided two-proportion z test whose null is "the canary's error rate is
  at most the champion's plus the tolerance"; rejecting it at the configured confidence is a regression.
- latency p95: regressed when the canary's p95 exceeds the champion's by more than the relative
  tolerance *and* a one-sided Mann-Whitney U test says canary latencies are larger at the confidence.
- feedback score and composite reward: regressed when the canary's mean is lower by more than the
  tolerance *and* a one-sided Mann-Whitney U test says canary values are lower at the confidence.

A metric with fewer samples than its minimum on either arm is ``insufficient``: never a pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from scipy import stats

from services.rollout.settings import Metric, RolloutOptions

Status = Literal["ok", "regressed", "insufficient"]


@dataclass(frozen=True)
class ArmSamples:
    """What one arm (canary or champion) produced in the window."""

    errors: list[int] = field(default_factory=list)
    """One entry per trace: 1 for an error, 0 for a success."""
    latencies_ms: list[float] = field(default_factory=list)
    feedback: list[float] = field(default_factory=list)
    """Explicit feedback values, normalized to [0, 1]."""
    rewards: list[float] = field(default_factory=list)
    """Composite rewards in [0, 1] (the latest label of each trace)."""


@dataclass(frozen=True)
class MetricVerdict:
    metric: Metric
    status: Status
    canary: float | None
    champion: float | None
    canary_n: int
    champion_n: int
    p_value: float | None
    detail: str


@dataclass(frozen=True)
class StageAnalysis:
    verdicts: list[MetricVerdict]

    def regressions(self) -> list[MetricVerdict]:
        return [v for v in self.verdicts if v.status == "regressed"]

    def insufficient(self, required: list[Metric]) -> list[MetricVerdict]:
        return [v for v in self.verdicts if v.status == "insufficient" and v.metric in required]

    def metrics(self) -> dict[str, float]:
        """Flat numbers for rollout.stage: ``<metric>.canary``, ``.champion``, ``.p_value``, ``.n_*``."""
        out: dict[str, float] = {}
        for v in self.verdicts:
            out[f"{v.metric}.canary_n"] = float(v.canary_n)
            out[f"{v.metric}.champion_n"] = float(v.champion_n)
            for name, value in (("canary", v.canary), ("champion", v.champion), ("p_value", v.p_value)):
                if value is not None and math.isfinite(value):
                    out[f"{v.metric}.{name}"] = float(value)
        return out

    def summary(self) -> str:
        return "; ".join(f"{v.metric} {v.status}: {v.detail}" for v in self.verdicts)


def analyse(canary: ArmSamples, champion: ArmSamples, options: RolloutOptions) -> StageAnalysis:
    alpha = 1.0 - options.confidence
    return StageAnalysis(
        [
            error_rate_verdict(
                canary.errors, champion.errors, options.min_traces, options.error_rate_tolerance, alpha
            ),
            latency_verdict(
                canary.latencies_ms,
                champion.latencies_ms,
                options.min_traces,
                options.latency_p95_tolerance,
                alpha,
            ),
            drop_verdict(
                "feedback",
                canary.feedback,
                champion.feedback,
                options.min_feedback,
                options.feedback_tolerance,
                alpha,
            ),
            drop_verdict(
                "composite_reward",
                canary.rewards,
                champion.rewards,
                options.min_labels,
                options.reward_tolerance,
                alpha,
            ),
        ]
    )


def _insufficient(metric: Metric, canary_n: int, champion_n: int, minimum: int) -> MetricVerdict:
    return MetricVerdict(
        metric,
        "insufficient",
        None,
        None,
        canary_n,
        champion_n,
        None,
        f"{canary_n} canary and {champion_n} champion samples; {minimum} per arm needed",
    )


def error_rate_verdict(
    canary: list[int], champion: list[int], minimum: int, tolerance: float, alpha: float
) -> MetricVerdict:
    n_c, n_h = len(canary), len(champion)
    if n_c < minimum or n_h < minimum:
        return _insufficient("error_rate", n_c, n_h, minimum)
    rate_c, rate_h = sum(canary) / n_c, sum(champion) / n_h
    excess = rate_c - rate_h - tolerance
    se = math.sqrt(rate_c * (1 - rate_c) / n_c + rate_h * (1 - rate_h) / n_h)
    # With no variance on either arm the observed excess is the whole story.
    p_value = (0.0 if excess > 0 else 1.0) if se == 0.0 else float(stats.norm.sf(excess / se))
    regressed = p_value < alpha
    detail = (
        f"canary {rate_c:.3f} ({sum(canary)}/{n_c}) vs champion {rate_h:.3f} ({sum(champion)}/{n_h}), "
        f"tolerance +{tolerance:.3f}, p={p_value:.4g} (alpha {alpha:.3g})"
    )
    return MetricVerdict(
        "error_rate", "regressed" if regressed else "ok", rate_c, rate_h, n_c, n_h, p_value, detail
    )


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    rank = max(0, math.ceil(0.95 * len(ordered)) - 1)
    return ordered[rank]


def _mann_whitney(x: list[float], y: list[float], alternative: Literal["less", "greater"]) -> float:
    if len(set(x) | set(y)) == 1:  # every value equal: no evidence of any shift
        return 1.0
    p_value = float(stats.mannwhitneyu(x, y, alternative=alternative).pvalue)
    return p_value if math.isfinite(p_value) else 1.0


def latency_verdict(
    canary: list[float], champion: list[float], minimum: int, tolerance: float, alpha: float
) -> MetricVerdict:
    n_c, n_h = len(canary), len(champion)
    if n_c < minimum or n_h < minimum:
        return _insufficient("latency_p95", n_c, n_h, minimum)
    p95_c, p95_h = _p95(canary), _p95(champion)
    p_value = _mann_whitney(canary, champion, "greater")
    regressed = p95_c > p95_h * (1 + tolerance) and p_value < alpha
    detail = (
        f"p95 canary {p95_c:.1f} ms vs champion {p95_h:.1f} ms, tolerance +{tolerance:.0%}, "
        f"Mann-Whitney p={p_value:.4g} (alpha {alpha:.3g})"
    )
    return MetricVerdict(
        "latency_p95", "regressed" if regressed else "ok", p95_c, p95_h, n_c, n_h, p_value, detail
    )


def drop_verdict(
    metric: Metric, canary: list[float], champion: list[float], minimum: int, tolerance: float, alpha: float
) -> MetricVerdict:
    n_c, n_h = len(canary), len(champion)
    if n_c < minimum or n_h < minimum:
        return _insufficient(metric, n_c, n_h, minimum)
    mean_c, mean_h = sum(canary) / n_c, sum(champion) / n_h
    p_value = _mann_whitney(canary, champion, "less")
    regressed = mean_h - mean_c > tolerance and p_value < alpha
    detail = (
        f"mean canary {mean_c:.3f} vs champion {mean_h:.3f}, tolerance -{tolerance:.3f}, "
        f"Mann-Whitney p={p_value:.4g} (alpha {alpha:.3g})"
    )
    return MetricVerdict(
        metric, "regressed" if regressed else "ok", mean_c, mean_h, n_c, n_h, p_value, detail
    )
