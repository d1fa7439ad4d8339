"""The evaluator over the real Kafka, Redis, Iceberg and MLflow, with the tiny random llama's adapters.

The champion is either the random base model (no `champion` alias yet) or a registered adapter holding
the alias; candidates are registered in MLflow the way the trainer registers them and announced on
checkpoint.trained. The judge is a scripted OpenAI-compatible HTTP server.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from prometheus_client import CollectorRegistry

from services.evaluator.app import create_app
from services.evaluator.approve import approve
from services.evaluator.errors import ApprovalError
from services.evaluator.evaluation import create_scorer, evaluate
from services.evaluator.jobs import EvalJobs, job_key
from services.evaluator.recording import read_evaluation_table, version_tags
from services.evaluator.settings import EvaluatorSettings
from shared.bus import create_broker, declare_publisher, ensure_topics, publish_event
from shared.events import CHECKPOINT_TRAINED, EVAL_FAILED, EVAL_PASSED, CheckpointTrained
from shared.registry import CHALLENGER, CHAMPION, ModelRegistry
from shared.state import RedisState
from tests.services.evaluator.support import (
    PairwiseJudgeServer,
    checkpoint_trained,
    read_topic,
    register_version,
    scale_adapter,
    until,
    write_heldout,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@asynccontextmanager
async def evaluator_running(settings: EvaluatorSettings) -> AsyncIterator[None]:
    async with create_app(settings, registry=CollectorRegistry()):
        yield


async def announce(settings: EvaluatorSettings, event: CheckpointTrained) -> None:
    await ensure_topics(settings, [CHECKPOINT_TRAINED])
    broker = create_broker(settings, "tests", registry=CollectorRegistry())
    publisher = declare_publisher(broker, settings, CheckpointTrained)
    await broker.start()
    try:
        await publish_event(publisher, event)
    finally:
        await broker.stop()


async def evaluate_over_kafka(
    settings: EvaluatorSettings, model_dir: Path, topic: str, *, announcements: int = 1
) -> tuple[str, dict[str, Any]]:
    """Register ``model_dir``, announce it on checkpoint.trained, and return its outcome event."""
    dataset_id = f"ds-{uuid.uuid4().hex[:8]}"
    write_heldout(settings, dataset_id)
    version = register_version(settings, model_dir)
    event = checkpoint_trained(settings, version, dataset_id)
    async with evaluator_running(settings):
        for _ in range(announcements):  # a redelivered or duplicate event is evaluated once
            await announce(settings, event)
        events = await read_topic(settings, topic, at_least=1, settle_s=2.0)
    assert len(events) == 1, events
    assert events[0]["model_version"] == version
    return version, events[0]


def verdicts(event: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {verdict["gate"]: verdict for verdict in event["verdicts"]}


async def test_better_candidate_passes_gets_the_challenger_alias_and_its_table_reads_back(
    evaluator: EvaluatorSettings, good_adapter: Path
) -> None:
    # No champion yet: the candidate's base model (the random llama) stands in for it.
    version, passed = await evaluate_over_kafka(evaluator, good_adapter, EVAL_PASSED, announcements=2)

    gates = verdicts(passed)
    assert all(verdict["passed"] for verdict in gates.values()), passed["reason"]
    assert gates["faithfulness_min"]["value"] >= 0.85
    assert gates["win_rate"]["value"] > 0.55
    assert gates["rule_pass_rate"]["value"] == 1.0
    assert passed["champion_version"] is None
    assert passed["metrics"]["composite_reward"] > 0

    registry = ModelRegistry(evaluator)
    challenger = registry.version(CHALLENGER)
    assert challenger is not None and challenger.version == version
    client = MlflowClient(evaluator.mlflow.tracking_uri)
    name = evaluator.mlflow.registered_model
    tags = version_tags(client, name, version)
    assert tags["eval.status"] == "passed"
    assert tags["eval.reason"] == passed["reason"]
    assert float(tags["eval.metric.win_rate"]) == pytest.approx(gates["win_rate"]["value"], rel=1e-5)
    eval_run = client.get_run(tags["eval.run_id"])
    assert eval_run.data.metrics["faithfulness"] == pytest.approx(gates["faithfulness_min"]["value"])
    assert "champion.composite_reward" in eval_run.data.metrics

    table = read_evaluation_table(client, name, version)
    assert [row["set"] for row in table] == ["heldout"] * 3 + ["golden"] * 2 + ["regression"] * 2
    golden = table[3]
    assert golden["prompt"].startswith("How long do I have to return")
    assert golden["candidate_answer"].startswith("Northwind Outfitters returns policy")
    assert golden["candidate_answer"] != golden["champion_answer"]
    assert golden["candidate_faithfulness"] == 1.0
    assert golden["preference"] == "win"
    assert {"candidate_composite_reward", "champion_composite_reward", "candidate_string_similarity"} <= set(
        golden
    )
    refusal = table[5]
    assert refusal["candidate_rules_passed"] is True
    assert refusal["champion_rules_failed"] == ["must_refuse"]


async def test_damaged_candidate_fails_with_a_reason_naming_the_metric(
    evaluator: EvaluatorSettings, good_adapter: Path, tmp_path: Path
) -> None:
    champion = register_version(evaluator, good_adapter)
    ModelRegistry(evaluator).set_alias(CHAMPION, champion)
    damaged = scale_adapter(good_adapter, tmp_path / "damaged", 40.0)

    version, failed = await evaluate_over_kafka(evaluator, damaged, EVAL_FAILED)

    assert failed["champion_version"] == champion
    gates = verdicts(failed)
    assert not gates["faithfulness_min"]["passed"]
    assert "faithfulness_min" in failed["reason"] and "faithfulness" in failed["reason"]
    assert not gates["win_rate"]["passed"]
    client = MlflowClient(evaluator.mlflow.tracking_uri)
    tags = version_tags(client, evaluator.mlflow.registered_model, version)
    assert tags["eval.status"] == "failed"
    assert "faithfulness" in tags["eval.reason"]
    assert ModelRegistry(evaluator).version(CHALLENGER) is None
    table = read_evaluation_table(client, evaluator.mlflow.registered_model, version)
    assert all(row["candidate_answer"] != row["champion_answer"] for row in table)


async def test_candidate_identical_to_the_champion_fails_the_relative_gate(
    evaluator: EvaluatorSettings, good_adapter: Path
) -> None:
    champion = register_version(evaluator, good_adapter)
    ModelRegistry(evaluator).set_alias(CHAMPION, champion)

    _, failed = await evaluate_over_kafka(evaluator, good_adapter, EVAL_FAILED)

    gates = verdicts(failed)
    failing = sorted(gate for gate, verdict in gates.items() if not verdict["passed"])
    assert failing == ["win_rate"], failed["reason"]
    assert gates["win_rate"]["value"] == 0.5
    assert "5 ties" in gates["win_rate"]["detail"]
    assert gates["faithfulness_min"]["passed"]
    assert failed["reason"].startswith("failed win_rate")


async def test_a_judge_that_always_prefers_the_first_answer_gives_a_tie(
    evaluator: EvaluatorSettings, good_adapter: Path, first_judge: PairwiseJudgeServer
) -> None:
    evaluator.judge.base_url = first_judge.base_url

    version, failed = await evaluate_over_kafka(evaluator, good_adapter, EVAL_FAILED)

    gates = verdicts(failed)
    assert gates["win_rate"]["value"] == 0.5
    assert not gates["win_rate"]["passed"]
    assert failed["metrics"]["pairwise.ties"] == 5 and failed["metrics"]["pairwise.wins"] == 0
    table = read_evaluation_table(
        MlflowClient(evaluator.mlflow.tracking_uri), evaluator.mlflow.registered_model, version
    )
    scored = [row for row in table if row["set"] != "regression"]
    assert {(row["judge_candidate_first"], row["judge_champion_first"]) for row in scored} == {("A", "A")}
    assert first_judge.count("pairwise", "") >= 2 * len(scored)


async def test_manual_approval_publishes_eval_passed_only_after_approve(
    evaluator: EvaluatorSettings, good_adapter: Path
) -> None:
    evaluator.evaluator.manual_approval = True
    dataset_id = f"ds-{uuid.uuid4().hex[:8]}"
    write_heldout(evaluator, dataset_id)
    version = register_version(evaluator, good_adapter)
    client = MlflowClient(evaluator.mlflow.tracking_uri)
    name = evaluator.mlflow.registered_model
    state = RedisState(evaluator)
    jobs = EvalJobs(state, lease_s=10, ttl_s=3600)
    try:
        async with evaluator_running(evaluator):
            await announce(evaluator, checkpoint_trained(evaluator, version, dataset_id))

            async def decided() -> bool:
                job = await jobs.get(job_key(name, version))
                return job is not None and job.status == "awaiting_approval"

            await until(decided)
            assert version_tags(client, name, version)["eval.status"] == "awaiting_approval"
            assert ModelRegistry(evaluator).version(CHALLENGER) is None
            with pytest.raises(AssertionError, match="0 records"):
                await read_topic(evaluator, EVAL_PASSED, at_least=1, settle_s=0, timeout_s=3)

            event = await approve(evaluator, version, "ops@example.com")

        published = await read_topic(evaluator, EVAL_PASSED, at_least=1)
        assert [e["event_id"] for e in published] == [str(event.event_id)]
        assert "approved by ops@example.com" in published[0]["reason"]
        tags = version_tags(client, name, version)
        assert tags["eval.status"] == "passed" and tags["eval.approved_by"] == "ops@example.com"
        challenger = ModelRegistry(evaluator).version(CHALLENGER)
        assert challenger is not None and challenger.version == version
        # Approving again announces the same fact, not a second one.
        again = await approve(evaluator, version, "someone-else")
        assert again.event_id == event.event_id
        with pytest.raises(ApprovalError, match="no evaluation"):
            await approve(evaluator, "999", "ops@example.com")
    finally:
        await state.close()


async def test_without_a_judge_the_win_rate_comes_from_composite_rewards(
    evaluator: EvaluatorSettings, good_adapter: Path
) -> None:
    evaluator.evaluator.judge_enabled = False
    dataset_id = f"ds-{uuid.uuid4().hex[:8]}"
    write_heldout(evaluator, dataset_id)
    version = register_version(evaluator, good_adapter)
    scorer = create_scorer(evaluator)
    try:
        evaluation = await evaluate(
            evaluator, checkpoint_trained(evaluator, version, dataset_id), scorer=scorer
        )
    finally:
        await scorer.close()

    gates = {verdict.gate: verdict for verdict in evaluation.verdicts}
    assert evaluation.passed, evaluation.reason
    assert "skipped: no judge" in gates["faithfulness_min"].detail
    assert "composite reward, no judge" in gates["win_rate"].detail
    assert "faithfulness" not in evaluation.metrics  # a judge component is missing, never 0
    assert evaluation.metrics["composite_reward"] > evaluation.metrics["champion.composite_reward"]


async def test_a_checkpoint_that_does_not_load_fails_with_the_error_as_the_reason(
    evaluator: EvaluatorSettings, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "README.md").write_text("no model here")

    version, failed = await evaluate_over_kafka(evaluator, broken, EVAL_FAILED)

    assert failed["reason"].startswith(
        "evaluation error after 1 attempts: EvaluationError: cannot load model"
    )
    assert "holds no config.json or adapter_config.json" in failed["reason"]
    tags = version_tags(
        MlflowClient(evaluator.mlflow.tracking_uri), evaluator.mlflow.registered_model, version
    )
    assert tags["eval.status"] == "failed"


def test_both_models_can_answer_in_bfloat16_and_a_bad_precision_is_named(good_adapter: Path) -> None:
    from services.evaluator.errors import EvaluationError
    from services.evaluator.generation import Decoding, generate_with
    from services.evaluator.sets import EvalItem

    items = [EvalItem("golden", f"q{index}", question) for index, question in enumerate(["Hi?", "Returns?"])]
    decoding = Decoding(max_new_tokens=8, batch_size=2)
    in_float32 = generate_with(str(good_adapter), items, decoding, "cpu", "float32")
    in_bfloat16 = generate_with(str(good_adapter), items, decoding, "cpu", "bfloat16")
    assert len(in_float32) == len(in_bfloat16) == 2
    assert all(isinstance(answer, str) for answer in in_bfloat16)
    with pytest.raises(EvaluationError, match="precision must be one of auto, float32, bfloat16, got 'fp8'"):
        generate_with(str(good_adapter), items, decoding, "cpu", "fp8")
