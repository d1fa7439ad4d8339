"""The canary analysis as pure functions: regressions beyond tolerance at the confidence roll back,
noise and small differences do not, and too few samples are never a pass."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from services.rollout.analysis import ArmSamples, analyse, drop_verdict, error_rate_verdict, latency_verdict
from services.rollout.settings import RolloutOptions

ALPHA = 0.01


def test_error_rate_regression_beyond_tolerance_is_called() -> None:
    verdict = error_rate_verdict([1] * 30 + [0] * 170, [1] * 4 + [0] * 196, 100, 0.02, ALPHA)
    assert verdict.status == "regressed"
    assert verdict.canary == pytest.approx(0.15) and verdict.champion == pytest.approx(0.02)
    assert "30/200" in verdict.detail and "4/200" in verdict.detail


def test_error_rate_increase_within_tolerance_is_not_a_regression() -> None:
    # One point worse on 5,000 requests each: real, but inside the two-point tolerance.
    verdict = error_rate_verdict([1] * 150 + [0] * 4850, [1] * 100 + [0] * 4900, 100, 0.02, ALPHA)
    assert verdict.status == "ok"


def test_too_few_samples_are_insufficient_not_ok() -> None:
    verdict = error_rate_verdict([1] * 20, [0] * 500, 100, 0.02, ALPHA)
    assert verdict.status == "insufficient"
    assert verdict.detail == "20 canary and 500 champion samples; 100 per arm needed"


def test_latency_regression_needs_both_the_p95_and_the_test() -> None:
    rng = random.Random(1)
    champion = [rng.gauss(100, 10) for _ in range(300)]
    slow = [rng.gauss(160, 15) for _ in range(300)]
    same = [rng.gauss(100, 10) for _ in range(300)]
    assert latency_verdict(slow, champion, 100, 0.25, ALPHA).status == "regressed"
    assert latency_verdict(same, champion, 100, 0.25, ALPHA).status == "ok"
    # A rare outlier lifts no p95 beyond tolerance when the bulk is unchanged.
    assert latency_verdict([*same[:-3], 900.0, 900.0, 900.0], champion, 100, 0.25, ALPHA).status == "ok"


def test_feedback_drop_is_called_by_mann_whitney_and_the_tolerance() -> None:
    disliked = [0.0] * 70 + [1.0] * 30
    liked = [0.0] * 30 + [1.0] * 70
    verdict = drop_verdict("feedback", disliked, liked, 20, 0.05, ALPHA)
    assert verdict.status == "regressed"
    assert verdict.p_value is not None and verdict.p_value < ALPHA
    # A canary better than the champion is never a regression.
    assert drop_verdict("feedback", liked, disliked, 20, 0.05, ALPHA).status == "ok"
    # Identical samples: no evidence at all.
    assert drop_verdict("composite_reward", [0.7] * 50, [0.7] * 50, 20, 0.05, ALPHA).status == "ok"


def test_identical_arms_pass_every_metric_and_report_their_numbers() -> None:
    rng = random.Random(7)
    arm = ArmSamples(
        errors=[1 if rng.random() < 0.03 else 0 for _ in range(400)],
        latencies_ms=[rng.gauss(120, 20) for _ in range(400)],
        feedback=[float(rng.random() < 0.7) for _ in range(100)],
        rewards=[rng.uniform(0.4, 0.9) for _ in range(100)],
    )
    result = analyse(arm, arm, RolloutOptions(min_traces=100, min_feedback=50, min_labels=50))
    assert [v.status for v in result.verdicts] == ["ok"] * 4
    metrics = result.metrics()
    assert metrics["error_rate.canary_n"] == 400
    assert metrics["feedback.canary"] == metrics["feedback.champion"]
    assert result.insufficient(["feedback"]) == []


def test_missing_metrics_are_listed_only_when_required() -> None:
    arm = ArmSamples(errors=[0] * 300, latencies_ms=[100.0] * 300)
    result = analyse(arm, arm, RolloutOptions(min_traces=100))
    assert [v.metric for v in result.insufficient(["error_rate", "feedback", "composite_reward"])] == [
        "feedback",
        "composite_reward",
    ]
    assert result.insufficient(["error_rate", "latency_p95"]) == []


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ([], "at least one weight"),
        ([0.05, 0.5], "last rollout stage must be 1.0"),
        ([0.25, 0.05, 1.0], "must increase"),
        ([0.0, 1.0], "in (0, 1]"),
    ],
)
def test_a_bad_stage_plan_is_refused_with_the_reason(stages: list[float], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace("[", r"\[")):
        RolloutOptions(stages=stages)


@pytest.mark.parametrize(
    ("per_stage", "message"),
    [
        ([["error_rate"], ["error_rate"]], "names 2 stages, the plan [0.05, 0.25, 1.0] has 3"),
        ([["error_rate"], ["feedback"], ["error_rate", "feedback"]], "it leaves out ['latency_p95'"),
    ],
)
def test_a_bad_per_stage_requirement_is_refused_with_the_reason(
    per_stage: list[list[str]], message: str
) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace("[", r"\[")):
        RolloutOptions(stage_required_metrics=per_stage)


def test_each_stage_requires_its_own_metrics_and_the_last_requires_them_all() -> None:
    everything = ["error_rate", "latency_p95", "feedback", "composite_reward"]
    health = ["error_rate", "latency_p95", "composite_reward"]
    options = RolloutOptions(stage_required_metrics=[health, everything, everything])
    assert [options.required_at(stage) for stage in range(3)] == [health, everything, everything]
    assert RolloutOptions().required_at(0) == everything


def test_the_gateway_refuses_the_placeholder_ingest_key_outside_development() -> None:
    from services.rollout.settings import RolloutSettings

    with pytest.raises(ValueError, match="KAIZEN_GATEWAY__INGEST_SECRET_KEY is the development placeholder"):
        RolloutSettings(environment="production", s3={"secret_access_key": None})
    assert RolloutSettings(
        environment="production", s3={"secret_access_key": None}, gateway={"ingest_url": None}
    )
