"""The dashboard shows a run's data: real rows in Iceberg, a real MLflow run and versions, real rollout.stage
events on Kafka; the dashboard runs as its own process and headless Chromium loads the page."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from shared.bus import create_broker, declare_publisher, ensure_topics, publish_event
from shared.events import ROLLOUT_STAGE, RolloutStage
from shared.registry import CHALLENGER, CHAMPION, ModelRegistry
from shared.settings import KaizenSettings
from shared.store import DATASETS, LABELS, TRACES, IcebergStore
from tests.services.dashboard.support import chromium, dashboard_process, dump_dom, parse_dom

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Traces per minute, by minutes before the current one, split by model version.
TRACES_AT: dict[int, dict[str, int]] = {6: {"1": 3}, 4: {"1": 2, "2": 3}, 2: {"2": 1}}
REWARDS: dict[str, list[float]] = {"1": [0.2, 0.3, 0.4, 0.5], "2": [0.6, 0.7, 0.8]}
EVAL_PASSED_REASON = "passed every gate: win_rate 0.714 >= 0.55, faithfulness 0.91 >= 0.85"
EVAL_FAILED_REASON = "faithfulness 0.612 is below the minimum 0.85"
STAGES = [  # (stage, canary weight, decision)
    (0, 0.05, "started"),
    (1, 0.25, "advanced"),
    (2, 1.0, "advanced"),
    (2, 1.0, "promoted"),
]


@pytest.fixture
def dashboard_settings(settings: KaizenSettings) -> KaizenSettings:
    settings.mlflow.registered_model = f"kaizen-dashboard-{uuid.uuid4().hex[:10]}"
    return settings


def write_tables(settings: KaizenSettings, now: datetime) -> tuple[str, dict[str, int]]:
    """Traces, labels and one dataset, written the way ingest, the labeler and the curator write them."""
    store = IcebergStore(settings)
    minute = now.replace(second=0, microsecond=0)
    traces: list[dict[str, Any]] = []
    expected: dict[str, int] = {}
    for ago, by_version in TRACES_AT.items():
        ts = minute - timedelta(minutes=ago) + timedelta(seconds=20)
        expected[(minute - timedelta(minutes=ago)).strftime("%Y-%m-%dT%H:%MZ")] = sum(by_version.values())
        for version, count in by_version.items():
            for index in range(count):
                traces.append(
                    {
                        "trace_id": f"tr-{ago}-{version}-{index}",
                        "project_id": settings.project_id,
                        "ts": ts + timedelta(seconds=index),
                        "model": "kaizen-chat",
                        "consent": True,
                        "model_version": version,
                        "prompt": "What does the context say?",
                        "response": "It says so.",
                        "ingested_at": ts + timedelta(seconds=index + 1),
                    }
                )
    # Another project's traces in the same tables never show.
    traces.append({**traces[0], "trace_id": "elsewhere", "project_id": "another-project"})
    store.append(TRACES, traces)

    labels: list[dict[str, Any]] = []
    for version, rewards in REWARDS.items():
        for index, reward in enumerate(rewards):
            labels.append(
                {
                    "trace_id": f"lb-{version}-{index}",
                    "project_id": settings.project_id,
                    "label_version": 1,
                    "labeled_at": minute - timedelta(minutes=3) + timedelta(seconds=index),
                    "model_version": version,
                    "composite_reward": reward,
                    "components": {"feedback": reward, "faithfulness": None},
                    "gated_by": None,
                    "config_hash": "cfg",
                }
            )
    # Late feedback relabels one trace of version 2: only its latest label counts (0.9, not 0.05).
    labels.append({**labels[-1], "trace_id": "lb-2-late", "composite_reward": 0.05})
    labels.append({**labels[-2], "trace_id": "lb-2-late", "label_version": 2, "composite_reward": 0.9})
    store.append(LABELS, labels)

    dataset_id = f"ds-{uuid.uuid4().hex[:8]}"
    items = [
        {
            "dataset_id": dataset_id,
            "project_id": settings.project_id,
            "item_id": f"{dataset_id}-{index}",
            "split": split,
            "kind": "dpo",
            "prompt": "What does the context say?",
            "chosen": "It says so, briefly.",
            "rejected": "A long answer that strays from the context.",
            "created_at": minute - timedelta(minutes=3),
        }
        for index, split in enumerate(["train", "train", "train", "eval"])
    ]
    store.append(
        DATASETS,
        items,
        snapshot_properties={
            "kaizen.dataset_id": dataset_id,
            "kaizen.trigger": "sample_count",
            "kaizen.algorithm": "dpo",
            "kaizen.sizes": '{"eval": 1, "train": 3}',
        },
    )
    return dataset_id, expected


def write_mlflow(settings: KaizenSettings, dataset_id: str) -> None:
    """Champion 1 (the base), then two training runs on the dataset: version 2 passes, version 3 fails."""
    registry = ModelRegistry(settings)
    client = registry.client
    experiment = registry.experiment_id()
    name = registry.ensure_model()

    def register(run_id: str, artifact_uri: str) -> str:
        client.log_text(run_id, "{}", "model/adapter_config.json")
        client.set_terminated(run_id, "FINISHED")
        tags = {"kaizen.dataset_id": dataset_id} if run_id != base_run.info.run_id else {}
        return str(client.create_model_version(name, f"{artifact_uri}/model", run_id, tags=tags).version)

    base_run = client.create_run(experiment, run_name="base")
    base = register(base_run.info.run_id, base_run.info.artifact_uri)
    registry.set_alias(CHAMPION, base)

    for attempt, (verdict, reason, candidate, champion) in enumerate(
        (("passed", EVAL_PASSED_REASON, 0.714, 0.52), ("failed", EVAL_FAILED_REASON, 0.612, 0.88))
    ):
        run = client.create_run(
            experiment,
            run_name=f"dpo-{dataset_id}-{attempt}",
            tags={
                "kaizen.dataset_id": dataset_id,
                "kaizen.algorithm": "dpo",
                "kaizen.trigger_reason": "sample_count",
            },
        )
        for step, loss in enumerate([0.69, 0.55, 0.41 + attempt / 10]):
            client.log_metric(run.info.run_id, "train/loss", loss, step=step)
        version = register(run.info.run_id, run.info.artifact_uri)
        eval_run = client.create_run(
            experiment, run_name=f"eval-{name}-v{version}", tags={"kaizen.kind": "evaluation"}
        )
        client.log_metric(eval_run.info.run_id, "faithfulness", candidate)
        client.log_metric(eval_run.info.run_id, "champion.faithfulness", champion)
        client.set_terminated(eval_run.info.run_id, "FINISHED")
        for key, value in {
            "eval.status": verdict,
            "eval.reason": reason,
            "eval.run_id": eval_run.info.run_id,
            "eval.champion": base,
            "eval.metric.faithfulness": f"{candidate:.6g}",
        }.items():
            registry.tag(version, key, value)
        if verdict == "passed":
            registry.set_alias(CHALLENGER, version)


async def publish_stages(settings: KaizenSettings, now: datetime) -> None:
    await ensure_topics(settings, [ROLLOUT_STAGE])
    broker = create_broker(settings, "dashboard-test", registry=CollectorRegistry())
    publisher = declare_publisher(broker, settings, RolloutStage)
    await broker.connect()
    try:
        for index, (stage, weight, decision) in enumerate(STAGES):
            event = RolloutStage(
                producer="rollout",
                project_id=settings.project_id,
                correlation_id="2",
                occurred_at=now - timedelta(minutes=2) + timedelta(seconds=20 * index),
                model_version="2",
                champion_version="1",
                stage=stage,
                canary_weight=weight,
                decision=decision,  # type: ignore[arg-type]
                reason=f"{decision} at {weight:.0%}: canary reward 0.71 vs champion 0.52",
                metrics={"canary.composite_reward": 0.71, "champion.composite_reward": 0.52},
            )
            await publish_event(publisher, event)
            if index == 0:  # delivered twice (at least once): shown once
                await publish_event(publisher, event)
        other = RolloutStage(
            producer="rollout",
            project_id="another-project",
            correlation_id="9",
            model_version="9",
            stage=0,
            canary_weight=0.05,
            decision="rolled_back",
            reason="another project's canary",
        )
        await publish_event(publisher, other)
    finally:
        await broker.stop()


def wait_for_rollout(url: str, count: int, timeout_s: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        timeline: dict[str, Any] = httpx.get(f"{url}/api/rollout", timeout=10).json()
        if len(timeline["events"]) >= count or time.monotonic() > deadline:
            return timeline
        time.sleep(0.2)


@pytest.fixture
def browser() -> str:
    found = chromium()
    if found is None:
        pytest.skip("Debian's chromium is not installed (scripts/bootstrap installs it)")
    return found


async def test_the_page_shows_the_runs_data(
    dashboard_settings: KaizenSettings, browser: str, tmp_path: Path
) -> None:
    settings = dashboard_settings
    now = datetime.now(UTC)
    dataset_id, expected_minutes = await asyncio.to_thread(write_tables, settings, now)
    await asyncio.to_thread(write_mlflow, settings, dataset_id)
    await publish_stages(settings, now)

    with dashboard_process(settings, tmp_path / "dashboard.log") as url:
        timeline = await asyncio.to_thread(wait_for_rollout, url, len(STAGES))
        assert [(e["stage"], e["canary_weight"], e["decision"]) for e in timeline["events"]] == STAGES

        async with httpx.AsyncClient(timeout=120) as client:
            summary = (await client.get(f"{url}/api/summary")).json()
        assert summary["errors"] == {}
        counted = {m["minute"][:16] + "Z": m["count"] for m in summary["traces"]["minutes"] if m["count"]}
        assert counted == {minute: count for minute, count in expected_minutes.items()}

        dom = parse_dom(await asyncio.to_thread(dump_dom, browser, f"{url}/"))

    # Traces per minute: one bar per minute, the counts of the run, split by version.
    traces = dom.find("section", id="traces")
    bars = traces.find_all("g", cls="bar")
    shown = {bar.attrs["data-minute"]: int(bar.attrs["data-count"]) for bar in bars}
    assert {minute: count for minute, count in shown.items() if count} == expected_minutes
    assert len(bars) == len(shown)  # one bar per minute
    minutes = sorted(shown)
    assert minutes[0] == min(expected_minutes) and all(
        (datetime.fromisoformat(b.replace("Z", "+00:00")) - datetime.fromisoformat(a.replace("Z", "+00:00")))
        == timedelta(minutes=1)
        for a, b in itertools.pairwise(minutes)
    )
    four_ago = (now.replace(second=0, microsecond=0) - timedelta(minutes=4)).strftime("%Y-%m-%dT%H:%MZ")
    segments = traces.find("g", cls="bar", data_minute=four_ago).find_all("rect", cls="segment")
    assert {s.attrs["data-version"]: int(s.attrs["data-count"]) for s in segments} == {"1": 2, "2": 3}
    assert {item.attrs["data-version"] for item in traces.find_all("li", cls="legend-item")} == {"1", "2"}

    # Reward distribution: both versions in the legend; the relabeled trace counts once, at 0.9.
    rewards = dom.find("section", id="rewards")
    assert [item.attrs["data-version"] for item in rewards.find_all("li", cls="legend-item")] == ["1", "2"]
    boxes = {box.attrs["data-version"]: box for box in rewards.find_all("g", cls="box")}
    assert int(boxes["1"].attrs["data-count"]) == 4
    assert float(boxes["1"].attrs["data-mean"]) == pytest.approx(0.35, abs=1e-3)
    assert int(boxes["2"].attrs["data-count"]) == 4
    assert float(boxes["2"].attrs["data-mean"]) == pytest.approx((0.6 + 0.7 + 0.8 + 0.9) / 4, abs=1e-3)

    # Datasets and training runs.
    datasets = dom.find("table", cls="datasets")
    assert dataset_id in datasets.text and "sample_count" in datasets.text
    assert "train 3" in datasets.text and "eval 1" in datasets.text
    runs = {
        row.find("td", cls="run").text: row.find("td", cls="run-version").text
        for row in dom.find("table", cls="training-runs").find_all("tr")[1:]
    }
    assert runs == {f"dpo-{dataset_id}-0": "2", f"dpo-{dataset_id}-1": "3"}  # not the base, not evaluations
    assert "train/loss 0.41" in dom.find("table", cls="training-runs").text

    # Evaluations: pass and fail, their reasons, candidate vs champion.
    passed = dom.find("div", cls="evaluation", data_version="2")
    assert passed.attrs["data-status"] == "passed" and EVAL_PASSED_REASON in passed.text
    assert "0.714" in passed.text and "0.520" in passed.text and "+0.194" in passed.text
    failed = dom.find("div", cls="evaluation", data_version="3")
    assert failed.attrs["data-status"] == "failed" and EVAL_FAILED_REASON in failed.text
    aliases = {node.attrs["data-alias"]: node.text for node in dom.find_all("span", cls="alias")}
    assert aliases == {"champion": "champion = version 1", "challenger": "challenger = version 2"}

    # Canary timeline: every stage once, with its decision, in order; no other project's canary.
    rollout = dom.find("section", id="rollout")
    rows = rollout.find("table", cls="canary-timeline").find_all("tr")[1:]
    assert [
        (
            row.find("td", cls="stage").text,
            row.find("td", cls="weight").text,
            row.find("td", cls="decision").text,
        )
        for row in rows
    ] == [(str(stage), f"{weight:.0%}", decision) for stage, weight, decision in STAGES]
    markers = rollout.find_all("circle", cls="decision")
    assert [m.attrs["data-decision"] for m in markers] == [decision for _, _, decision in STAGES]
    assert "another project" not in rollout.text
