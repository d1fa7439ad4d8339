"""Before/after helpers: bootstrap intervals and the held-out comparison table."""

from __future__ import annotations

import numpy as np
import pytest

from demo.workload.compare import (
    FEEDBACK,
    PREFERENCE,
    WORDS,
    AnswerMetrics,
    bootstrap_difference,
    bootstrap_mean,
    compare,
    format_table,
    score_held_out,
)
from demo.workload.preference import load_preference
from demo.workload.prompts import WorkloadError, load_prompts, select
from tests.demo.chat_server import RAMBLING


def test_the_interval_contains_the_mean_and_is_reproducible() -> None:
    values = np.random.default_rng(7).normal(0.6, 0.2, size=50).tolist()
    interval = bootstrap_mean(values, seed=3)
    assert interval.low < interval.mean < interval.high
    assert interval.mean == pytest.approx(float(np.mean(values)))
    assert interval.n == 50 and interval.confidence == 0.95
    assert bootstrap_mean(values, seed=3) == interval
    assert bootstrap_mean(values, seed=4) != interval


def test_the_interval_narrows_with_more_samples_as_theory_says() -> None:
    rng = np.random.default_rng(11)
    widths = {}
    for n in (25, 400):
        interval = bootstrap_mean(rng.normal(0.0, 1.0, size=n).tolist(), resamples=4000, seed=0)
        widths[n] = interval.high - interval.low
        # The normal approximation: 2 * 1.96 * sd / sqrt(n), within 25%.
        assert widths[n] == pytest.approx(2 * 1.96 / np.sqrt(n), rel=0.25)
    assert widths[400] < widths[25] / 3


def test_a_constant_sample_has_a_zero_width_interval() -> None:
    interval = bootstrap_mean([0.5] * 10)
    assert (interval.low, interval.mean, interval.high) == (0.5, 0.5, 0.5)


def test_a_paired_difference_resamples_the_differences() -> None:
    before = np.random.default_rng(5).uniform(0, 1, size=30).tolist()
    after = [value + 0.1 for value in before]
    paired = bootstrap_difference(before, after, paired=True)
    assert paired.mean == pytest.approx(0.1)
    assert paired.low == pytest.approx(0.1) and paired.high == pytest.approx(0.1)
    independent = bootstrap_difference(before, after, paired=False)
    assert independent.mean == pytest.approx(0.1)
    assert independent.low < 0.1 < independent.high


@pytest.mark.parametrize(
    ("values", "options", "message"),
    [
        ([], {}, "at least one value"),
        ([0.1, float("nan")], {}, "finite"),
        ([0.1], {"confidence": 1.0}, "confidence"),
        ([0.1], {"resamples": 0}, "resamples"),
    ],
)
def test_bad_bootstrap_input_is_refused(values: list[float], options: dict[str, float], message: str) -> None:
    with pytest.raises(WorkloadError, match=message):
        bootstrap_mean(values, **options)  # type: ignore[arg-type]


def test_grounded_short_answers_beat_rambling_ones_on_the_held_out_prompts() -> None:
    prompts = select(load_prompts(), "held_out")
    preference = load_preference()
    before = score_held_out({prompt.id: RAMBLING for prompt in prompts}, prompts, preference, users=16)
    grounded = {prompt.id: prompt.contexts[0].split(". ")[0] + "." for prompt in prompts}
    extra = {prompt.id: {"composite_reward": 0.7} for prompt in prompts}
    after = score_held_out(grounded, prompts, preference, users=16, extra=extra)
    rows = {row.metric: row for row in compare(before, after)}
    assert list(rows) == [FEEDBACK, PREFERENCE, "grounding", WORDS]  # composite only on one side
    assert all(row.paired for row in rows.values())
    assert rows[FEEDBACK].difference.low > 0.3
    assert rows[PREFERENCE].difference.low > 0.5
    assert rows[WORDS].before.mean == len(RAMBLING.split())
    assert rows[WORDS].difference.high < -50
    assert rows[FEEDBACK].after.n == len(prompts)
    table = format_table(list(rows.values()))
    assert table.splitlines()[0].split(" | ")[0].strip() == "metric"
    assert str(rows[FEEDBACK].difference) in table


def test_metrics_missing_on_some_answers_are_compared_where_present() -> None:
    before = [AnswerMetrics("a", {"faithfulness": 0.2}), AnswerMetrics("b", {"faithfulness": None})]
    after = [AnswerMetrics("a", {"faithfulness": 0.8}), AnswerMetrics("b", {"faithfulness": 0.6})]
    (row,) = compare(before, after)
    assert (row.before.n, row.after.n) == (1, 2)
    assert not row.paired  # one prompt in common is too few to pair
    assert row.difference.mean == pytest.approx(0.7 - 0.2)


def test_answers_to_unknown_prompts_are_refused() -> None:
    prompts = load_prompts()
    with pytest.raises(WorkloadError, match="unknown prompts"):
        score_held_out({"no-such-prompt": "hi"}, prompts, load_preference())
