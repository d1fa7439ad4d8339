"""Triggers and dataset building as plain functions, and the curator's triggers over the real Redis:
each trigger records its reason with the numbers, and one request exists however often it fires."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from services.labeler import triggers
from services.labeler.curation import (
    build_dataset,
    is_held_out,
    latest_labels,
    replay_count,
    served_messages,
)
from services.labeler.curator import Curator
from services.labeler.labeling import LabelState, next_label_version
from services.labeler.settings import CuratorSettings
from shared.evalsets import Decontaminator
from shared.events import TableRef, TraceIngested, TraceLabeled
from shared.rewards import load_reward_config
from shared.rewards.embeddings import SentenceEmbedder
from shared.settings import KaizenSettings
from shared.state import RedisState
from shared.store import IcebergStore


def test_label_versions_follow_the_fingerprint() -> None:
    assert next_label_version(None, "a") == 1
    assert next_label_version(LabelState(1, "a", committed=True), "a") is None  # a redelivery
    assert next_label_version(LabelState(1, "a", committed=False), "a") == 1  # redo the pending write
    assert next_label_version(LabelState(1, "a", committed=True), "b") == 2  # late feedback
    assert next_label_version(LabelState(2, "b", committed=False), "c") == 3


def test_each_trigger_fires_with_its_numbers() -> None:
    assert triggers.sample_count(9, 10) is None
    assert triggers.sample_count(10, 10) == triggers.Trigger(
        "sample_count", {"new_samples": 10, "threshold": 10}
    )
    assert triggers.time_interval(100.0, 50.0, 5, 60.0, 1) is None
    fired = triggers.time_interval(200.0, 50.0, 5, 60.0, 1)
    assert fired is not None and fired.reason == "time_interval" and fired.details["elapsed_s"] == 150.0
    assert triggers.time_interval(200.0, 50.0, 0, 60.0, 1) is None, "nothing new to learn from"
    steady = [0.8] * 20
    assert triggers.reward_drop(steady, 10, 0.1, 50, 1) is None
    drop = triggers.reward_drop([0.8] * 10 + [0.6] * 10, 10, 0.1, 50, 1)
    assert drop is not None and drop.details["drop"] == pytest.approx(0.2)
    assert drop.details["previous_mean"] == pytest.approx(0.8) and drop.details[
        "latest_mean"
    ] == pytest.approx(0.6)
    assert triggers.error_rate([0] * 10 + [0] * 8 + [1] * 2, 10, 0.3, 2.0, 50, 1) is None
    spike = triggers.error_rate([0] * 9 + [1] + [1] * 4 + [0] * 6, 10, 0.3, 2.0, 50, 1)
    assert (
        spike is not None
        and spike.details["error_rate"] == 0.4
        and spike.details["previous_error_rate"] == 0.1
    )
    assert triggers.error_rate([1] * 5 + [1] * 5 + [1] * 4 + [0] * 6, 10, 0.3, 2.0, 50, 1) is None, "no spike"


def _label(trace_id: str, prompt: str, reward: float, version: int = 1, **fields: Any) -> dict[str, Any]:
    return {
        "trace_id": trace_id,
        "label_version": version,
        "composite_reward": reward,
        "gated_by": None,
        "prompt": prompt,
        "response": f"answer of {trace_id}",
        "session_id": None,
        "labeled_at": datetime.now(UTC),
        **fields,
    }


def _embed(texts: Any) -> np.ndarray:
    vectors = np.eye(len(texts), 8, dtype=np.float32)  # every prompt different
    return vectors


def test_build_dataset_pairs_splits_and_replays() -> None:
    config = CuratorSettings(dpo_margin=0.3, eval_fraction=0.0, replay_ratio=0.5, sft_min_reward=0.7)
    labels = [
        _label("a1", "Pick a colour for the tent?", 0.9),
        _label("a2", "Pick a colour for the tent?", 0.7),
        _label("a3", "Pick a colour for the tent?", 0.1),
        _label("a3", "Pick a colour for the tent?", 0.2, version=2),  # the latest version counts
        _label("b1", "Which stove is lightest?", 0.8),
        _label("b2", "Which stove is lightest?", 0.6),  # margin 0.2 < 0.3: no pair
        _label("c1", "Is wool warm?", 0.95, gated_by="safety<0.5"),
    ]
    traces = [
        {"trace_id": t, "consent": True, "contexts": ["ctx"]} for t in ("a1", "a2", "a3", "b1", "b2", "c1")
    ]
    earlier = [
        {
            "dataset_id": "ds-old",
            "item_id": f"old-{i}",
            "split": "train",
            "kind": "sft",
            "prompt": f"Old prompt {i}",
            "completion": "x",
            "source_trace_ids": [f"old-{i}"],
            "label_versions": [1],
        }
        for i in range(20)
    ]
    traces += [{"trace_id": f"old-{i}", "consent": True} for i in range(20)]
    built = build_dataset(
        dataset_id="ds-new",
        project_id="p",
        labels=labels,
        traces=traces,
        earlier_items=earlier,
        config=config,
        decontaminator=Decontaminator([]),
        embed=_embed,
        reward_components=["context_similarity"],
        config_hash="h",
        created_at=datetime.now(UTC),
    )
    pairs = [row for row in built.rows if row["kind"] == "dpo"]
    assert [(p["source_trace_ids"], p["label_versions"]) for p in pairs] == [(["a1", "a3"], [1, 2])]
    new_rows = [row for row in built.rows if row["split"] != "replay"]
    sft = sorted(row["source_trace_ids"][0] for row in new_rows if row["kind"] == "sft")
    assert sft == ["a1", "a2", "b1"], "high reward, never gated"
    grpo = [row for row in built.rows if row["kind"] == "grpo"]
    assert len(grpo) == 2 and all(row["reward_components"] == '["context_similarity"]' for row in grpo)
    train = built.sizes["train"]
    assert built.sizes["replay"] == replay_count(train, 0.5) == train
    assert built.algorithm == "sft"
    assert latest_labels(labels)[2]["label_version"] == 2


def test_items_keep_the_chat_their_chosen_answer_followed() -> None:
    prompt = "Pick a colour for the tent?"
    served = [{"role": "system", "content": "Passages:\n[1] ctx"}, {"role": "user", "content": prompt}]
    traces = [
        {"trace_id": "a1", "consent": True, "contexts": ["ctx"], "input_messages": json.dumps(served)},
        {"trace_id": "a2", "consent": True, "contexts": ["ctx"], "input_messages": json.dumps(served)},
        # a chat whose last user turn is another question is not what this prompt was asked in
        {
            "trace_id": "b1",
            "consent": True,
            "input_messages": json.dumps([{"role": "user", "content": "Hi"}]),
        },
    ]
    built = build_dataset(
        dataset_id="ds",
        project_id="p",
        labels=[_label("a1", prompt, 0.9), _label("a2", prompt, 0.1), _label("b1", "Is wool warm?", 0.9)],
        traces=traces,
        earlier_items=[],
        config=CuratorSettings(dpo_margin=0.3, eval_fraction=0.0),
        decontaminator=Decontaminator([]),
        embed=_embed,
        reward_components=["context_similarity"],
        config_hash="h",
        created_at=datetime.now(UTC),
    )
    (pair,) = [row for row in built.rows if row["kind"] == "dpo"]
    assert json.loads(pair["messages"]) == served
    assert {row["messages"] for row in built.rows if row["source_trace_ids"][0] == "b1"} == {None}
    assert served_messages("not json", prompt) is None
    assert served_messages(json.dumps(served[:1]), prompt) is None, "no user turn last"


def test_held_out_split_is_a_pure_function_of_the_prompt() -> None:
    prompts = [f"question {i}" for i in range(2000)]
    share = sum(is_held_out(p, 0.1) for p in prompts) / len(prompts)
    assert 0.07 < share < 0.13
    assert all(is_held_out(p, 0.1) == is_held_out(f"  {p.upper()} ", 0.1) for p in prompts[:100])


def clocked_curator(
    config: CuratorSettings,
    settings: KaizenSettings,
    state: RedisState,
    now: list[float],
    champion: str | None,
) -> Curator:
    """A curator over the real Redis and Iceberg whose clock reads ``now[0]`` and whose champion is fixed."""

    async def champion_version() -> str | None:
        return champion

    return Curator(
        config,
        IcebergStore(settings),
        state,
        SentenceEmbedder.shared(),
        load_reward_config(),
        champion_version,
        clock=lambda: now[0],
    )


@pytest.mark.integration
async def test_curator_triggers_record_one_request_with_reason_and_numbers(settings: KaizenSettings) -> None:
    config = CuratorSettings(
        sample_count_threshold=10_000,
        reward_window=5,
        reward_drop_threshold=0.2,
        min_new_samples=3,
        error_window=4,
        error_rate_threshold=0.5,
        max_interval_s=60.0,
    )
    now = [1000.0]
    state = RedisState(settings)
    curator = clocked_curator(config, settings, state, now, champion="7")
    project = settings.project_id

    def labeled(i: int, reward: float) -> TraceLabeled:
        return TraceLabeled(
            producer="labeler",
            project_id=project,
            correlation_id=f"t{i}",
            trace_id=f"t{i}",
            model_version="7",
            components={},
            composite_reward=reward,
            label_version=1,
            config_hash="h",
        )

    events = [labeled(i, 0.9) for i in range(5)] + [labeled(5 + i, 0.5) for i in range(5)]
    await curator.on_labeled(events)
    await curator.on_labeled(events)  # redelivered: counted once
    assert await state.counter(f"curator:new:{project}") == 10
    request = await curator.pending(project)
    assert request is not None and request.reason == "reward_drop"
    assert request.details["drop"] == pytest.approx(0.4) and request.details["champion_version"] == 7.0
    assert await curator.check(project) is None, "one request at a time"

    await state.client.delete(curator._request_key(project))
    await state.client.delete(state.key("window", curator._reward_window(project, "7")))
    ingested = [
        TraceIngested(
            producer="ingest-worker",
            project_id=project,
            correlation_id=f"e{i}",
            trace_id=f"e{i}",
            model="m",
            consent=True,
            stored=TableRef(table="kaizen.traces"),
            status="error" if i % 2 else "ok",
        )
        for i in range(4)
    ]
    await curator.on_ingested(ingested)
    request = await curator.pending(project)
    assert request is not None and request.reason == "error_rate" and request.details["error_rate"] == 0.5

    await state.client.delete(
        curator._request_key(project), state.key("window", curator._error_window(project))
    )
    assert await curator.check(project) is None
    now[0] += 61.0
    assert (await curator.check(project)) is not None
    request = await curator.pending(project)
    assert request is not None and request.reason == "time_interval" and request.details["elapsed_s"] == 61.0
    await state.close()


@pytest.mark.integration
async def test_cooldown_holds_every_trigger_until_min_interval_after_the_last_dataset(
    settings: KaizenSettings,
) -> None:
    config = CuratorSettings(sample_count_threshold=5, min_new_samples=1, min_interval_s=300.0)
    now = [5000.0]
    state = RedisState(settings)
    curator = clocked_curator(config, settings, state, now, champion=None)
    project = settings.project_id
    await state.incr(curator._new_counter(project), 50)
    # A trigger that built nothing does not start the cooldown; a built dataset does.
    await state.put_json(curator._last_key(project), {"dataset_id": None, "built_at": now[0]})
    assert await curator.cooling_down(project) is False
    await state.put_json(
        curator._last_key(project),
        {"dataset_id": "ds-1", "dataset_built_at": now[0], "built_at": now[0], "watermark": None},
    )
    now[0] += 299.0
    assert await curator.check(project) is None, "50 new samples, but the last dataset is 299 s old"
    assert await curator.pending(project) is None
    now[0] += 2.0
    assert await curator.check(project) is not None
    request = await curator.pending(project)
    assert request is not None and request.reason == "sample_count" and request.counted == 50
    await state.close()
