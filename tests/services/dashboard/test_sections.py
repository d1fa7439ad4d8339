"""The dashboard's sections on a local catalog (SQLite + a warehouse on disk, no stack) and its page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.dashboard import page, sources
from services.dashboard.views import DatasetSummary, RolloutTimeline, Summary
from shared.settings import KaizenSettings
from shared.store import LABELS, TRACES, IcebergStore
from tests.services.dashboard.support import parse_dom

NOW = datetime(2026, 5, 1, 12, 30, 40, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> IcebergStore:
    return IcebergStore(KaizenSettings(home=tmp_path, project_id="shop"))


def label(
    trace_id: str, minutes_ago: float, version: str | None, reward: float, label_version: int = 1
) -> Any:
    return {
        "trace_id": trace_id,
        "project_id": "shop",
        "label_version": label_version,
        "labeled_at": NOW - timedelta(minutes=minutes_ago),
        "model_version": version,
        "composite_reward": reward,
        "components": {},
        "config_hash": "cfg",
    }


def test_a_catalog_without_tables_reads_as_empty_and_stays_untouched(store: IcebergStore) -> None:
    since = NOW - timedelta(hours=1)
    assert sources.traces_per_minute(store, since, NOW).minutes == []
    assert sources.reward_distribution(store, since, 12).buckets == []
    assert sources.datasets(store) == []
    assert list(store.catalog.list_namespaces()) == []  # the dashboard only reads


def test_traces_fill_empty_minutes_up_to_now_and_skip_other_projects(store: IcebergStore) -> None:
    def trace(trace_id: str, minutes_ago: int, version: str | None, project: str = "shop") -> Any:
        ts = NOW.replace(second=5) - timedelta(minutes=minutes_ago)
        return {"trace_id": trace_id, "project_id": project, "ts": ts, "model": "m", "consent": True} | (
            {"model_version": version}
        )

    store.append(
        TRACES,
        [
            trace("a", 3, "1"),
            trace("b", 3, None),
            trace("c", 1, "1"),
            trace("d", 1, "1", project="other"),
            trace("old", 90, "1"),  # before the window
        ],
    )
    traces = sources.traces_per_minute(store, NOW - timedelta(minutes=60), NOW)
    assert [(m.minute.strftime("%H:%M"), m.count, m.by_version) for m in traces.minutes] == [
        ("12:27", 2, {"1": 1, "unknown": 1}),
        ("12:28", 0, {}),
        ("12:29", 1, {"1": 1}),
        ("12:30", 0, {}),
    ]
    assert traces.total == 3 and traces.versions == ["1", "unknown"]


def test_rewards_count_each_traces_latest_label_in_time_buckets(store: IcebergStore) -> None:
    store.append(
        LABELS,
        [
            label("a", 29, "1", 0.2),
            label("b", 28, "1", 0.4),
            label("c", 15, "10", 0.5),
            label("c", 1, "10", 0.9, label_version=2),  # relabeled by late feedback: counts once, here
            label("d", 1, "2", 0.7),
        ],
    )
    rewards = sources.reward_distribution(store, NOW - timedelta(hours=1), buckets=10)
    assert rewards.bucket_minutes == 3  # 29 minutes of labels in at most 10 buckets
    assert rewards.versions == ["1", "2", "10"]
    assert {v: s.count for v, s in rewards.overall.items()} == {"1": 2, "2": 1, "10": 1}
    assert rewards.overall["1"].mean == pytest.approx(0.3)
    assert rewards.overall["10"].mean == pytest.approx(0.9)
    assert [sorted(b.by_version) for b in rewards.buckets] == [["1"], ["10", "2"]]
    assert rewards.buckets[1].end - rewards.buckets[1].start == timedelta(minutes=3)


def test_the_page_escapes_what_it_shows_and_says_which_source_failed() -> None:
    summary = Summary(
        project_id="shop",
        generated_at=NOW,
        traces=None,
        rewards=None,
        datasets=[
            DatasetSummary(
                dataset_id="ds-1",
                created_at=NOW,
                items=2,
                sizes={"train": 2},
                kinds={"dpo": 2},
                trigger_reason="<script>alert(1)</script>",
                algorithm="dpo",
                snapshot_id=7,
            )
        ],
        registry=None,
        rollout=RolloutTimeline(connected=False, events=[]),
        errors={
            "traces": "OSError: catalog down",
            "rewards": "OSError: catalog down",
            "registry": "MLflow down",
        },
    )
    dom = parse_dom(page.render(summary, refresh_s=0))
    assert not dom.find_all("script")
    assert "<script>alert(1)</script>" in dom.find("td", cls="trigger").text
    assert "catalog down" in dom.find("section", id="traces").text
    assert "MLflow down" in dom.find("section", id="evaluations").text
    assert "Not connected to rollout.stage" in dom.find("section", id="rollout").text
    assert not dom.find_all("meta", http_equiv="refresh")
