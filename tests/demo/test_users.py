"""Simulated users against a real OpenAI-compatible HTTP server on loopback, feedback through Kafka."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from demo.workload.preference import PreferenceConfig, load_preference
from demo.workload.prompts import Prompt, WorkloadError, load_prompts
from demo.workload.users import Turn, WorkloadConfig, WorkloadReport, plan_users, run_workload
from shared.client import KaizenClient
from shared.events import FEEDBACK_RAW, FeedbackRaw
from shared.rewards import FeedbackSignal, feedback_score
from shared.rewards.config import FeedbackWeights
from shared.settings import KaizenSettings
from tests.demo.chat_server import ChatServer
from tests.fixtures.topics import read_records

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def prompts() -> tuple[Prompt, ...]:
    return load_prompts()


@pytest.fixture(scope="module")
def preference() -> PreferenceConfig:
    return load_preference()


def config_for(server: ChatServer, **overrides: object) -> WorkloadConfig:
    options: dict[str, object] = {
        "base_url": server.base_url,
        "users": 8,
        "requests": 40,
        "concurrency": 4,
        "seed": 1,
        "consent_share": 0.5,
    }
    options.update(overrides)
    return WorkloadConfig.model_validate(options)


async def test_users_ask_with_their_identity_and_read_the_version_and_trace_from_headers(
    prompts: tuple[Prompt, ...], preference: PreferenceConfig
) -> None:
    async with ChatServer({"v1": "rambling", "v2": "grounded"}, naming="headers") as server:
        report = await run_workload(config_for(server), prompts, preference, feedback=None)
    by_prompt = {prompt.id: prompt for prompt in prompts}
    assert len(server.served) == len(report.turns) == 40
    assert report.errors == []
    served = {item.trace_id: item for item in server.served}
    for turn in report.turns:
        item = served[str(turn.trace_id)]
        assert turn.model_version == item.version == server.version_for(turn.session_id)
        assert item.headers["x-kaizen-session"] == turn.session_id
        assert item.headers["x-kaizen-user"] == item.body["user"] == turn.user_id
        assert item.headers["x-kaizen-consent"] == ("true" if turn.consent else "false")
        assert item.body["metadata"]["prompt_id"] == turn.prompt_id
        prompt = by_prompt[turn.prompt_id]
        assert json.loads(item.body["metadata"]["kaizen_contexts"]) == list(prompt.contexts)
        assert not prompt.held_out
    users = {turn.user_id: turn.consent for turn in report.turns}
    assert set(users.values()) == {True, False}
    stats = report.by_version()
    assert set(stats) == {"v1", "v2"}
    assert stats["v2"].mean_preference > 0.8 > 0.1 > stats["v1"].mean_preference
    assert stats["v1"].mean_words > 120 > 30 > stats["v2"].mean_words
    assert stats["v1"].answered + stats["v2"].answered == 40


async def test_a_retry_asks_the_same_prompt_again_in_the_same_session(
    prompts: tuple[Prompt, ...], preference: PreferenceConfig
) -> None:
    async with ChatServer({"v1": "rambling"}) as server:
        report = await run_workload(config_for(server, requests=60), prompts, preference, feedback=None)
    turns_of: dict[str, list[Turn]] = defaultdict(list)
    for turn in report.turns:
        turns_of[turn.user_id].append(turn)
    retries = 0
    for turns in turns_of.values():
        for previous, turn in itertools.pairwise(turns):
            asked_again = any(reaction.kind == "retry" for reaction in previous.reactions)
            if asked_again and not previous.retry:
                retries += 1
                assert turn.retry
                assert (turn.prompt_id, turn.session_id) == (previous.prompt_id, previous.session_id)
            else:
                assert not turn.retry
    assert retries > 0
    assert len(server.served) == 60


async def test_the_same_seed_plays_the_same_workload(
    prompts: tuple[Prompt, ...], preference: PreferenceConfig
) -> None:
    async with ChatServer({"v1": "grounded"}) as server:
        first = await run_workload(config_for(server, requests=20), prompts, preference, feedback=None)
        second = await run_workload(config_for(server, requests=20), prompts, preference, feedback=None)
        other = await run_workload(
            config_for(server, requests=20, seed=2), prompts, preference, feedback=None
        )

    def played(report: WorkloadReport) -> list[tuple[object, ...]]:
        return [
            (turn.index, turn.user_id, turn.prompt_id, [(r.kind, r.value) for r in turn.reactions])
            for turn in report.turns
        ]

    assert played(first) == played(second)
    assert played(first) != played(other)


async def test_trace_id_and_version_are_read_from_the_body_without_headers(
    prompts: tuple[Prompt, ...], preference: PreferenceConfig
) -> None:
    async with ChatServer({"7": "grounded"}, naming="body") as server:
        report = await run_workload(config_for(server, requests=6), prompts, preference, feedback=None)
    assert {turn.trace_id for turn in report.turns} == {item.trace_id for item in server.served}
    assert len(server.served) == 6
    assert {turn.model_version for turn in report.turns} == {"7"}


def test_the_plan_is_bounded_and_draws_consent_per_user(
    prompts: tuple[Prompt, ...], preference: PreferenceConfig
) -> None:
    config = WorkloadConfig(users=50, requests=500, consent_share=0.8, seed=3, split="held_out")
    users = plan_users(config, prompts, preference)
    assert sum(len(user.turns) for user in users) == 500
    assert all(turn.prompt.held_out for user in users for turn in user.turns)
    assert 0.6 <= sum(user.consent for user in users) / len(users) <= 0.95
    assert len({user.profile.rating_style for user in users}) == 3


async def test_an_unreachable_endpoint_is_reported(
    prompts: tuple[Prompt, ...], preference: PreferenceConfig
) -> None:
    config = WorkloadConfig(base_url="http://127.0.0.1:9/v1", users=2, requests=2, timeout_s=5)
    with pytest.raises(WorkloadError, match=r"no request to http://127.0.0.1:9/v1 was answered \(2 failed\)"):
        await run_workload(config, prompts, preference, feedback=None)


@pytest.mark.integration
async def test_grounded_short_answers_earn_more_feedback_through_kafka(
    settings: KaizenSettings, prompts: tuple[Prompt, ...], preference: PreferenceConfig
) -> None:
    async with (
        ChatServer({"v1": "rambling", "v2": "grounded"}) as server,
        KaizenClient.over_kafka(settings) as kaizen,
    ):
        config = config_for(server, requests=60, project_id=settings.project_id)
        report = await run_workload(config, prompts, preference, feedback=kaizen)
    assert report.feedback_errors == []
    assert report.feedback_sent > 30
    records = await read_records(settings, FEEDBACK_RAW, at_least=report.feedback_sent, settle_s=0.5)
    feedback = [FeedbackRaw.model_validate_json(record.value).record for record in records]
    assert len(feedback) == report.feedback_sent
    version_of = {item.trace_id: item.version for item in server.served}
    signals: dict[str, list[FeedbackSignal]] = defaultdict(list)
    for record in feedback:
        assert record.project_id == settings.project_id
        assert record.trace_id in version_of
        assert record.user_id is not None and record.user_id.startswith("user-")
        assert (record.dwell_ms is not None) == (record.kind == "engage")
        signals[record.trace_id].append(FeedbackSignal(record.feedback_id, record.kind, record.value))
    scores: dict[str, list[float]] = defaultdict(list)
    for trace_id, trace_signals in signals.items():
        score = feedback_score(trace_signals, FeedbackWeights())
        assert score is not None
        scores[version_of[trace_id]].append(score)
    grounded = sum(scores["v2"]) / len(scores["v2"])
    rambling = sum(scores["v1"]) / len(scores["v1"])
    assert grounded > rambling + 0.5
    stats = report.by_version()
    assert stats["v2"].mean_feedback == pytest.approx(grounded)
    assert stats["v1"].mean_feedback == pytest.approx(rambling)


async def test_the_command_line_plays_the_users_and_prints_each_version() -> None:
    async with ChatServer({"v1": "rambling", "v2": "grounded"}) as server:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "demo.workload",
            "--base-url",
            server.base_url,
            "--requests",
            "8",
            "--users",
            "4",
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "COLUMNS": "200"},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    text = output.decode()
    assert process.returncode == 0, text
    assert "8 requests" in text
    assert {item.version for item in server.served} <= {"v1", "v2"} and len(server.served) == 8
    for version in {item.version for item in server.served}:
        assert f"│ {version} " in text
    assert "feedback sent: 0" in text
