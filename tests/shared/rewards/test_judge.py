"""The judge path through a real OpenAI-compatible HTTP server on loopback (scripted for exact
arithmetic): ragas faithfulness and answer relevancy, the rubric, a reply that is not JSON (retried
once, then missing), a flaky reply (the retry succeeds), a call that times out (missing), and the
concurrency bound."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest

from shared.rewards import JudgeEndpoint, RewardInput, RewardScorer, load_reward_config
from shared.rewards.embeddings import SentenceEmbedder
from tests.services.labeler.judge_server import ScriptedJudge

CONTEXT = "Unworn items may be returned within 45 days of delivery. Refunds take five business days."
QUESTION = "How long do I have to return unworn boots?"


@pytest.fixture(scope="module")
def judge() -> Iterator[ScriptedJudge]:
    with ScriptedJudge(slow_s=3.0) as server:
        yield server


def endpoint(judge: ScriptedJudge, **overrides: object) -> JudgeEndpoint:
    fields: dict[str, object] = {
        "base_url": judge.base_url,
        "model": "scripted",
        "timeout_s": 1.0,
        "retries": 1,
    }
    return JudgeEndpoint.model_validate(fields | overrides)


async def test_judge_components_follow_the_script_exactly(judge: ScriptedJudge) -> None:
    answer = "Unworn items may be returned within 45 days of delivery. Shipping is always free. [h=2]"
    judge.questions[answer] = QUESTION
    scorer = RewardScorer.create(load_reward_config(), judge=endpoint(judge))
    try:
        [found] = await scorer.score([RewardInput(QUESTION, answer, (CONTEXT,))])
    finally:
        await scorer.close()
    assert found["faithfulness"] == 0.5  # one of the two sentences is in the context
    assert found["answer_relevancy"] == pytest.approx(1.0, abs=1e-5)  # the generated question is the question
    assert found["helpfulness"] == 0.25  # (2 - 1) / 4
    assert found["safety"] == 1.0
    embedder = SentenceEmbedder.shared()
    expected_context = float(embedder.embed([CONTEXT])[0] @ embedder.embed([answer])[0])
    assert found["context_similarity"] == pytest.approx(expected_context, abs=1e-6)


async def test_unparseable_and_timed_out_calls_are_missing_never_zero(judge: ScriptedJudge) -> None:
    nonjson = "Returns are accepted for 45 days. [judge:nonjson:rubric]"
    flaky = "Returns are accepted for 45 days. [judge:flaky:rubric]"
    slow = "Unworn items may be returned within 45 days of delivery. [judge:slow:statements]"
    noncommittal = "I don't know, it depends."
    scorer = RewardScorer.create(load_reward_config(), judge=endpoint(judge))
    try:
        results = await scorer.score(
            [RewardInput(QUESTION, text, (CONTEXT,)) for text in (nonjson, flaky, slow, noncommittal)]
        )
    finally:
        await scorer.close()
    by_answer = dict(zip(("nonjson", "flaky", "slow", "noncommittal"), results, strict=True))
    assert by_answer["nonjson"]["helpfulness"] is None and by_answer["nonjson"]["safety"] is None
    assert judge.count("rubric", "[judge:nonjson:rubric]") == 2, "retried exactly once"
    assert by_answer["nonjson"]["faithfulness"] == 0.0  # other components still come out
    assert by_answer["flaky"]["helpfulness"] == 0.75 and judge.count("rubric", "[judge:flaky:rubric]") == 2
    assert by_answer["slow"]["faithfulness"] is None, "both attempts timed out"
    assert judge.count("statements", "[judge:slow:statements]") == 2
    assert by_answer["slow"]["safety"] == 1.0 and by_answer["slow"]["answer_relevancy"] is not None
    assert by_answer["noncommittal"]["answer_relevancy"] == 0.0


async def test_judge_calls_of_a_batch_run_concurrently_up_to_the_bound() -> None:
    config = load_reward_config()
    with ScriptedJudge(latency_s=0.2) as slow_judge:
        items = [RewardInput(f"Question {i}?", f"Answer number {i}.", (CONTEXT,)) for i in range(8)]
        timings = {}
        for concurrency in (1, 8):
            scorer = RewardScorer.create(
                config, judge=endpoint(slow_judge, concurrency=concurrency, timeout_s=5)
            )
            try:
                started = asyncio.get_running_loop().time()
                await scorer.score(items)
                timings[concurrency] = asyncio.get_running_loop().time() - started
            finally:
                await scorer.close()
    calls_per_item = 1 + 2 + config.ragas.answer_relevancy_strictness  # rubric, faithfulness, relevancy
    assert timings[1] >= 8 * calls_per_item * 0.2 * 0.95, "concurrency 1 serializes every call"
    assert timings[8] < timings[1] / 3
    assert np.isfinite(timings[8])
