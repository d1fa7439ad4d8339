"""The curator over the real Kafka, Redis and Iceberg: feeding traces until the sample-count trigger fires
gives exactly one dataset.ready, and the dataset keeps every promise (pair margins, held-out prompts,
consent, decontamination, replay share, lineage, one snapshot)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.labeler.curation import normalize_prompt, replay_count
from shared.evalsets import load_golden, load_regression
from shared.settings import KaizenSettings
from shared.store import DATASETS, LABELS, TRACES, IcebergStore
from tests.services.labeler.support import (
    Observer,
    Traffic,
    labeler_app,
    labeler_settings,
    running,
    trace_row,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOPICS = [
    ("What colour is the Alpine 40 backpack?", "The Alpine 40 backpack comes in moss green and slate grey."),
    ("How heavy is the Ridge 2 tent?", "The Ridge 2 tent weighs 1.9 kilograms with its poles and pegs."),
    ("Does the Summit stove fold flat?", "The Summit stove folds flat to a thickness of three centimetres."),
    (
        "What size is the Drift sleeping mat?",
        "The Drift sleeping mat measures 183 by 51 centimetres when inflated.",
    ),
    ("Which lamp has the longest battery life?", "The Beacon lamp runs for 60 hours on its lowest setting."),
    (
        "Is the Fjord jacket machine washable?",
        "The Fjord jacket can be machine washed at 30 degrees on a gentle cycle.",
    ),
    (
        "What is the capacity of the Tarn bottle?",
        "The Tarn bottle holds 750 millilitres and keeps drinks cold for a day.",
    ),
    ("Are the Scree gaiters waterproof?", "The Scree gaiters use a waterproof membrane and sealed seams."),
    ("How many pockets does the Cairn vest have?", "The Cairn vest has six pockets, two of them with zips."),
    ("What sizes do the Moraine boots come in?", "The Moraine boots come in European sizes 36 to 48."),
    (
        "Can the Esker hammock hold two people?",
        "The Esker hammock is rated for a single person up to 120 kilograms.",
    ),
    (
        "What material is the Col fleece made from?",
        "The Col fleece is made from recycled polyester grid fleece.",
    ),
]
OFF_TOPIC = "Bananas ripen faster next to apples because of ethylene gas."
MEDIUM = "I believe it is one of our products, please check the product page."


def reward_config(tmp_path: Path) -> Path:
    path = tmp_path / "reward.yaml"
    path.write_text(
        yaml.safe_dump({"version": 1, "weights": {"context_similarity": 1.0}, "rubric": {"criteria": {}}})
    )
    return path


def earlier_dataset(
    project_id: str, dataset_id: str, count: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """An earlier dataset's SFT items and the consented traces they came from."""
    items, traces = [], []
    for i in range(count):
        trace_id = f"old-{dataset_id}-{i}"
        prompt = f"Old question number {i} about the Heron kayak paddle model {i * 7}?"
        traces.append(trace_row(project_id, trace_id, prompt, f"Old answer {i}.", contexts=["ctx"]))
        items.append(
            {
                "dataset_id": dataset_id,
                "project_id": project_id,
                "item_id": f"sft-old-{i}",
                "split": "train",
                "kind": "sft",
                "prompt": prompt,
                "completion": f"Old answer {i}.",
                "chosen_reward": 0.9,
                "contexts": ["ctx"],
                "source_trace_ids": [trace_id],
                "label_versions": [1],
                "config_hash": "earlier",
                "created_at": datetime.now(UTC),
            }
        )
    return items, traces


async def test_sample_count_trigger_gives_exactly_one_dataset_that_keeps_every_promise(
    settings: KaizenSettings, tmp_path: Path
) -> None:
    project = settings.project_id
    labeler = labeler_settings(settings)
    labeler.labeler.reward_config = reward_config(tmp_path)
    curator = labeler.curator
    curator.sample_count_threshold = 30
    curator.min_new_samples = 1000  # only the sample-count trigger may fire
    curator.max_interval_s = 1e9
    curator.dpo_margin = 0.3
    curator.eval_fraction = 0.3
    curator.replay_ratio = 0.25
    curator.min_dpo_pairs = 5
    curator.sft_min_reward = 0.7
    curator.label_settle_s = 1.0

    store = IcebergStore(settings)
    earlier_id = f"ds-earlier-{uuid.uuid4().hex[:8]}"
    earlier_items, earlier_traces = earlier_dataset(project, earlier_id, 40)
    store.append(TRACES, earlier_traces)
    store.append(DATASETS, earlier_items, snapshot_properties={"kaizen.dataset_id": earlier_id})

    rows: list[dict[str, Any]] = []
    consented: set[str] = set()
    for g, (prompt, answer) in enumerate(TOPICS):
        session = f"session-{g}" if g % 2 == 0 else None  # even groups: the user retried in one session
        variants = [answer, OFF_TOPIC] + ([MEDIUM] if g % 3 == 0 else [])
        for v, response in enumerate(variants):
            asked = prompt if not (g == 0 and v == 1) else prompt.replace("?", " ??")  # a near-duplicate
            trace_id = f"g{g}-v{v}-{uuid.uuid4().hex[:6]}"
            served = [
                {"role": "system", "content": f"Passages:\n[1] {answer}"},
                {"role": "user", "content": asked},
            ]
            rows.append(
                trace_row(
                    project,
                    trace_id,
                    asked,
                    response,
                    contexts=[answer],
                    session_id=session,
                    input_messages=json.dumps(served),
                )
            )
            consented.add(trace_id)
    refused = [f"refused-{i}-{uuid.uuid4().hex[:6]}" for i in range(3)]
    for i, trace_id in enumerate(refused):
        rows.append(
            trace_row(project, trace_id, TOPICS[i][0], TOPICS[i][1], contexts=[TOPICS[i][1]], consent=False)
        )
    revoked = f"revoked-{uuid.uuid4().hex[:6]}"
    rows.append(trace_row(project, revoked, TOPICS[4][0], TOPICS[4][1], contexts=[TOPICS[4][1]]))
    golden = load_golden()[3]
    contaminated = f"contaminated-{uuid.uuid4().hex[:6]}"
    rows.append(
        trace_row(project, contaminated, golden.prompt, golden.reference, contexts=list(golden.contexts))
    )
    assert len(rows) > curator.sample_count_threshold

    async with Traffic(settings) as traffic, Observer(settings) as observer:
        async with running(labeler_app(labeler, roles=("labeler", "curator"))):
            first, rest = rows[:20], rows[20:]
            await traffic.publish_traces(traffic.land(first))
            await wait_for(lambda: len(observer.latest()) == len(first), what="the first labels")
            await asyncio.sleep(1.0)
            assert observer.datasets == [], "below the threshold nothing is built"
            # Consent withdrawn after ingest: a later row without consent must keep it out of datasets.
            store.append(TRACES, [trace_row(project, revoked, TOPICS[4][0], TOPICS[4][1], consent=False)])
            await traffic.publish_traces(traffic.land(rest))
            await wait_for(lambda: len(observer.datasets) >= 1, what="dataset.ready")
            await wait_for(lambda: len(observer.latest()) == len(rows), what="every label")
            await asyncio.sleep(3.0)  # more labels were counted after the trigger: still one dataset
        assert len(observer.datasets) == 1

    ready = observer.datasets[0]
    assert ready.trigger_reason == "sample_count"
    assert ready.trigger_details["threshold"] == 30 and ready.trigger_details["new_samples"] >= 30
    assert ready.stored.snapshot_id is not None
    items = store.read_snapshot(
        DATASETS, ready.stored.snapshot_id, f"dataset_id == '{ready.dataset_id}'"
    ).to_pylist()
    assert len(items) == ready.sizes["total"], "the whole dataset is in its one snapshot"
    table = store.table(DATASETS)
    snapshot = table.snapshot_by_id(ready.stored.snapshot_id)
    assert snapshot is not None and snapshot.summary is not None
    assert snapshot.summary["kaizen.dataset_id"] == ready.dataset_id
    assert snapshot.summary["added-records"] == str(len(items))

    by_split: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        by_split.setdefault(item["split"], []).append(item)
    train, held_out, replay = by_split.get("train", []), by_split.get("eval", []), by_split.get("replay", [])
    assert train and held_out and replay
    assert ready.sizes["train"] == len(train) and ready.sizes["eval"] == len(held_out)

    # Pairs: margin at least the threshold; retry pairs come from one session.
    pairs = [item for item in items if item["kind"] == "dpo"]
    assert len([p for p in pairs if p["split"] == "train"]) >= curator.min_dpo_pairs
    assert ready.algorithm == "dpo"
    for pair in pairs:
        assert pair["chosen_reward"] - pair["rejected_reward"] >= curator.dpo_margin
        assert pair["chosen"] != pair["rejected"] and len(pair["source_trace_ids"]) == 2
        # trained on in the chat the chosen answer followed: its system prompt carries the passages
        served = json.loads(pair["messages"])
        assert served[-1] == {"role": "user", "content": pair["prompt"]}
        assert served[0]["role"] == "system" and pair["contexts"][0] in served[0]["content"]
    assert any(p["item_id"].startswith("dpo-retry") for p in pairs)
    near_dup = [
        p for p in items if p["kind"] == "grpo" and any(t.startswith("g0-") for t in p["source_trace_ids"])
    ]
    group_0 = {row["trace_id"] for row in rows if row["trace_id"].startswith("g0-")}
    assert len(near_dup) == 1 and set(near_dup[0]["source_trace_ids"]) == group_0, (
        "a near-duplicate prompt joins its group"
    )

    # No evaluation prompt in training: neither the held-out split nor any evaluation set.
    training_prompts = {normalize_prompt(i["prompt"]) for i in train + replay}
    assert not training_prompts & {normalize_prompt(i["prompt"]) for i in held_out}
    evaluation = {normalize_prompt(g.prompt) for g in load_golden()} | {
        normalize_prompt(r.prompt) for r in load_regression()
    }
    assert not {normalize_prompt(i["prompt"]) for i in items} & evaluation

    # Consent, checked again at build time, and decontamination.
    lineage = {trace_id for item in items for trace_id in item["source_trace_ids"]}
    assert not lineage & {*refused, revoked, contaminated}

    # Replay share as configured, from the earlier dataset's training items.
    assert len(replay) == replay_count(len(train), curator.replay_ratio)
    assert abs(len(replay) / (len(train) + len(replay)) - curator.replay_ratio) <= 1 / (
        len(train) + len(replay)
    )
    assert {item["source_dataset_id"] for item in replay} == {earlier_id}

    # Lineage: every item names its traces and their label versions; every surviving trace is named.
    for item in items:
        assert item["source_trace_ids"] and len(item["label_versions"]) == len(item["source_trace_ids"])
        assert item["config_hash"] == ready.config_hash or item["split"] == "replay"
    # Labels stamped less than label_settle_s before the build wait for the next dataset; all older are in.
    cutoff = items[0]["created_at"] - timedelta(seconds=curator.label_settle_s)
    labeled_before = {
        row["trace_id"]
        for row in store.read(LABELS, f"project_id == '{project}'").to_pylist()
        if row["labeled_at"] <= cutoff
    }
    new_lineage = {t for item in train + held_out for t in item["source_trace_ids"]}
    assert new_lineage <= consented
    assert new_lineage == consented & labeled_before
