"""Before/after on the held-out prompts: means with bootstrap confidence intervals.

The demo generates an answer to every held-out prompt with the base model and with the new champion,
scores both sets (``score_held_out``: preference, grounding, words, and the expected feedback score of
the simulated users), may add metrics of its own per answer (composite reward, faithfulness from the
labeler or evaluator), and ``compare`` reports, per metric, each side's mean with a percentile
bootstrap interval and the difference (after - before) with its own interval, paired by prompt when
both sides answered the same prompts. Everything is seeded: the same inputs give the same table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

from demo.workload.preference import PreferenceConfig, expected_feedback, score_answer
from demo.workload.prompts import Prompt, WorkloadError

Vector: TypeAlias = npt.NDArray[np.float64]

FEEDBACK = "feedback_score"
PREFERENCE = "preference"
GROUNDING = "grounding"
WORDS = "words"
DEFAULT_METRICS: tuple[str, ...] = (FEEDBACK, PREFERENCE, GROUNDING, WORDS)


@dataclass(frozen=True)
class Interval:
    """A mean and its bootstrap confidence interval."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"


@dataclass(frozen=True)
class AnswerMetrics:
    """The metrics of one answer to one prompt (a None value: not available for this answer)."""

    prompt_id: str
    values: Mapping[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricComparison:
    metric: str
    before: Interval
    after: Interval
    difference: Interval
    """after - before, paired by prompt when ``paired``."""
    paired: bool


def bootstrap_mean(
    values: Sequence[float], *, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> Interval:
    """The mean of ``values`` with a percentile bootstrap interval (seeded, so reproducible)."""
    data = _checked(values, confidence, resamples)
    means = _resampled_means(data, resamples, np.random.default_rng(seed))
    return _interval(float(data.mean()), means, len(data), confidence)


def bootstrap_difference(
    before: Sequence[float],
    after: Sequence[float],
    *,
    paired: bool,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> Interval:
    """mean(after) - mean(before) with a bootstrap interval; paired samples resample their differences."""
    first = _checked(before, confidence, resamples)
    second = _checked(after, confidence, resamples)
    rng = np.random.default_rng(seed)
    if paired:
        if len(first) != len(second):
            raise WorkloadError(f"paired samples differ in size: {len(first)} and {len(second)}")
        differences = second - first
        means = _resampled_means(differences, resamples, rng)
        return _interval(float(differences.mean()), means, len(differences), confidence)
    means = _resampled_means(second, resamples, rng) - _resampled_means(first, resamples, rng)
    return _interval(float(second.mean() - first.mean()), means, min(len(first), len(second)), confidence)


def _checked(values: Sequence[float], confidence: float, resamples: int) -> Vector:
    if not 0 < confidence < 1:
        raise WorkloadError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise WorkloadError(f"resamples must be >= 1, got {resamples}")
    data: Vector = np.asarray(values, dtype=np.float64)
    if data.ndim != 1 or len(data) == 0:
        raise WorkloadError("a bootstrap needs at least one value")
    if not np.isfinite(data).all():
        raise WorkloadError("a bootstrap needs finite values")
    return data


def _resampled_means(data: Vector, resamples: int, rng: np.random.Generator) -> Vector:
    means: Vector = np.empty(resamples, dtype=np.float64)
    block = max(1, 2_000_000 // len(data))  # bound the index matrix to about 16 MB
    for start in range(0, resamples, block):
        count = min(block, resamples - start)
        picks = rng.integers(0, len(data), size=(count, len(data)))
        means[start : start + count] = data[picks].mean(axis=1)
    return means


def _interval(mean: float, means: Vector, n: int, confidence: float) -> Interval:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(mean=mean, low=float(low), high=float(high), n=n, confidence=confidence)


def score_held_out(
    answers: Mapping[str, str],
    prompts: Sequence[Prompt],
    preference: PreferenceConfig,
    *,
    users: int = 32,
    seed: int = 0,
    extra: Mapping[str, Mapping[str, float | None]] | None = None,
) -> list[AnswerMetrics]:
    """Metrics of answers by prompt id: expected feedback score, preference, grounding, words.

    ``extra`` adds metrics computed elsewhere (by prompt id, then metric name), e.g. the composite
    reward or faithfulness. The feedback score is what ``users`` simulated users would give on average
    (``preference.expected_feedback``, seeded by ``seed`` and the prompt id: the same for both sides).
    """
    by_id = {prompt.id: prompt for prompt in prompts}
    unknown = sorted(set(answers) - set(by_id))
    if unknown:
        raise WorkloadError(f"answers to unknown prompts: {unknown[:5]}")
    rows: list[AnswerMetrics] = []
    for prompt_id in sorted(answers):
        score = score_answer(answers[prompt_id], by_id[prompt_id].contexts, preference)
        values: dict[str, float | None] = {
            FEEDBACK: expected_feedback(score, preference.reactions, users=users, seed=seed, key=prompt_id),
            PREFERENCE: score.preference,
            GROUNDING: score.grounding,
            WORDS: float(score.words),
        }
        values.update((extra or {}).get(prompt_id, {}))
        rows.append(AnswerMetrics(prompt_id, values))
    return rows


def compare(
    before: Sequence[AnswerMetrics],
    after: Sequence[AnswerMetrics],
    metrics: Sequence[str] | None = None,
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> list[MetricComparison]:
    """Per metric: before, after and their difference, each a mean with a bootstrap interval.

    Metrics default to every metric either side has (``DEFAULT_METRICS`` first). The difference is
    paired over the prompts both sides have a value for, when there are at least two; else the two
    sides are resampled independently. A metric with no value on one side is left out.
    """
    names = list(metrics) if metrics is not None else _metric_names(before, after)
    rows: list[MetricComparison] = []
    for name in names:
        first = _present(before, name)
        second = _present(after, name)
        if not first or not second:
            continue
        common = sorted(set(first) & set(second))
        paired = len(common) >= 2
        keys_before, keys_after = (common, common) if paired else (sorted(first), sorted(second))
        rows.append(
            MetricComparison(
                metric=name,
                before=bootstrap_mean(
                    [first[key] for key in sorted(first)],
                    confidence=confidence,
                    resamples=resamples,
                    seed=seed,
                ),
                after=bootstrap_mean(
                    [second[key] for key in sorted(second)],
                    confidence=confidence,
                    resamples=resamples,
                    seed=seed,
                ),
                difference=bootstrap_difference(
                    [first[key] for key in keys_before],
                    [second[key] for key in keys_after],
                    paired=paired,
                    confidence=confidence,
                    resamples=resamples,
                    seed=seed,
                ),
                paired=paired,
            )
        )
    return rows


def _present(side: Sequence[AnswerMetrics], name: str) -> dict[str, float]:
    present: dict[str, float] = {}
    for row in side:
        value = row.values.get(name)
        if value is not None:
            present[row.prompt_id] = float(value)
    return present


def _metric_names(*sides: Sequence[AnswerMetrics]) -> list[str]:
    seen = {name for side in sides for row in side for name in row.values}
    return [name for name in DEFAULT_METRICS if name in seen] + sorted(seen - set(DEFAULT_METRICS))


def format_table(rows: Sequence[MetricComparison], *, before: str = "base", after: str = "champion") -> str:
    """A plain-text table of a comparison (means with their intervals)."""
    header = ("metric", before, after, "difference")
    lines = [(row.metric, str(row.before), str(row.after), str(row.difference)) for row in rows]
    widths = [max(len(cells[i]) for cells in [header, *lines]) for i in range(4)]
    text = [
        " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)) for cells in [header]
    ]
    text.append("-+-".join("-" * width for width in widths))
    text += [
        " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)) for cells in lines
    ]
    return "\n".join(line.rstrip() for line in text)
