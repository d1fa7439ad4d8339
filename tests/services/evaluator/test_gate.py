"""The gate's arithmetic, without anything running: bootstrap intervals, both-order preferences, verdicts."""

from __future__ import annotations

import pytest

from services.evaluator import gate
from services.evaluator.pairwise import candidate_score, composite_preference, parse_preference
from services.evaluator.settings import EvaluationSettings


def test_a_judge_that_always_says_a_scores_every_item_as_a_tie() -> None:
    # Candidate first: "A" is the candidate; champion first: "A" is the champion.
    assert candidate_score("A", "A") == 0.5
    assert candidate_score("B", "B") == 0.5
    assert candidate_score("A", "B") == 1.0
    assert candidate_score("B", "A") == 0.0
    assert candidate_score("tie", "B") == 0.75
    assert candidate_score(None, "B") == 1.0
    assert candidate_score(None, None) is None


def test_win_rate_counts_ties_as_half_and_needs_the_margin() -> None:
    settings = EvaluationSettings(min_win_margin=0.05)
    tie = gate.win_rate_verdict([0.5] * 6, settings, "test")
    assert (tie.passed, tie.value, tie.threshold) == (False, 0.5, 0.55)
    assert "0 wins, 6 ties, 0 losses" in tie.detail
    better = gate.win_rate_verdict([1.0, 1.0, 0.5, 0.0, None], settings, "test")
    assert better.passed and better.value == pytest.approx(0.625)
    assert not gate.win_rate_verdict([None, None], settings, "test").passed


def test_parse_preference_accepts_a_b_or_tie_and_names_a_bad_reply() -> None:
    assert parse_preference('{"winner": "a", "reason": "x"}') == "A"
    assert parse_preference('<think>hmm</think>{"winner": "Tie"}') == "tie"
    with pytest.raises(ValueError, match="winner"):
        parse_preference('{"better": "A"}')
    with pytest.raises(ValueError, match="Expecting value"):
        parse_preference("Answer A is better.")


def test_composite_preference_without_a_judge() -> None:
    assert composite_preference(0.8, 0.6).outcome == "win"
    assert composite_preference(0.6, 0.6).outcome == "tie"
    assert composite_preference(0.2, 0.6).outcome == "loss"
    assert composite_preference(None, 0.6).outcome == "missing"


def test_bootstrap_interval_brackets_the_mean_and_is_degenerate_for_equal_scores() -> None:
    equal = gate.bootstrap_mean([0.0] * 10, 500, 0.95, 0)
    assert (equal.low, equal.mean, equal.high) == (0.0, 0.0, 0.0)
    spread = gate.bootstrap_mean([0.1, -0.2, 0.3, 0.0, 0.05, -0.1], 2000, 0.95, 1)
    assert spread.low < spread.mean < spread.high
    with pytest.raises(ValueError, match="no paired"):
        gate.bootstrap_mean([], 100, 0.95, 0)


def test_no_worse_judges_the_interval_not_the_point_estimate() -> None:
    settings = EvaluationSettings(tolerance=0.05, bootstrap_samples=2000)
    champion = {"faithfulness": [0.9] * 8}
    # A mean drop of 0.02 (inside the tolerance) but so noisy that the interval reaches far below -0.05.
    noisy = {"faithfulness": [0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.74]}
    verdict = gate.no_worse_verdicts(noisy, champion, ["faithfulness"], settings)[0]
    assert verdict.value == pytest.approx(-0.02)
    assert not verdict.passed
    assert "faithfulness" in verdict.detail and "bootstrap interval" in verdict.detail
    same = gate.no_worse_verdicts(champion, champion, ["faithfulness"], settings)[0]
    assert same.passed and same.value == 0.0
    loose = EvaluationSettings(tolerances={"faithfulness": 0.5}, bootstrap_samples=2000)
    assert gate.no_worse_verdicts(noisy, champion, ["faithfulness"], loose)[0].passed
    # Items where either side is missing are left out of the pairs.
    gaps = gate.no_worse_verdicts({"x": [None, 0.5]}, {"x": [0.4, None]}, ["x"], settings)[0]
    assert gaps.passed and "skipped" in gaps.detail


def test_absolute_gate_fails_below_the_floor_and_when_a_judged_metric_is_missing() -> None:
    settings = EvaluationSettings()
    low = gate.absolute_verdicts({"faithfulness": [1.0, 0.5, None]}, settings, judged=True)[0]
    assert (low.gate, low.passed, low.value) == ("faithfulness_min", False, 0.75)
    missing = gate.absolute_verdicts({"faithfulness": [None]}, settings, judged=True)[0]
    assert not missing.passed and "could not be computed" in missing.detail
    skipped = gate.absolute_verdicts({"faithfulness": [None]}, settings, judged=False)[0]
    assert skipped.passed and "no judge" in skipped.detail


def test_rules_no_worse_than_the_champion() -> None:
    assert gate.rules_verdict(0.5, 0.5, 0.0).passed
    worse = gate.rules_verdict(0.4, 0.5, 0.0)
    assert not worse.passed and "rule pass rate 0.400 < champion's 0.500" in worse.detail
    assert gate.rules_verdict(0.4, 0.5, 0.1).passed


def test_reason_names_every_failed_gate() -> None:
    verdicts = [
        gate.win_rate_verdict([0.5], EvaluationSettings(), "test"),
        gate.rules_verdict(0.0, 1.0, 0.0),
        gate.rules_verdict(1.0, 1.0, 0.0),
    ]
    text = gate.reason(verdicts)
    assert text.startswith("failed win_rate: win rate 0.500 < 0.550")
    assert "rule_pass_rate: rule pass rate 0.000" in text


def test_settings_refuse_negative_tolerances() -> None:
    with pytest.raises(ValueError, match="tolerances must be >= 0"):
        EvaluationSettings(tolerances={"faithfulness": -0.1})
