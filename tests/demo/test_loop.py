"""The reduced loop, end to end: every service as its own process on the real local stack, simulated
traffic through the gateway, until a new champion serves 100% of it.

The configuration is demo/config/reduced.yaml: the tiny random llama, tiny counts, short stages. Its
evaluation gate and canary analysis are permissive (documented in the file): noise cannot really beat
noise, so what this test holds the loop to is that every event flows through every real service
(ingest, labeler, curator, trainer + kernel service, evaluator, rollout controller, gateway) and that
the promotion is real: the alias moved in MLflow and the gateway serves the new version.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from demo.__main__ import run_settings
from demo.config import REDUCED_CONFIG, load_config
from demo.loop import STAGES, run_loop
from demo.report import comparison, write_html, write_timeline
from demo.status import loop_status
from shared.events import (
    CHECKPOINT_TRAINED,
    DATASET_READY,
    EVAL_PASSED,
    FEEDBACK_RECEIVED,
    ROLLOUT_STAGE,
    TRACE_INGESTED,
    TRACE_LABELED,
)
from shared.registry import ModelRegistry
from shared.services import Supervisor
from shared.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.loop]


@pytest.mark.timeout(1500)
def test_reduced_loop_promotes_a_new_champion(stack: Stack, tmp_path: Path) -> None:
    config = load_config(REDUCED_CONFIG)
    settings = run_settings(home=tmp_path / "home")
    result = run_loop(config, settings, log=print)
    timeline = result.timeline

    # Every stage was reached, in the loop's order, and the run says it stopped at the promotion.
    assert timeline.promoted, f"{timeline.stopped_because}; failures: {timeline.failures}"
    reached = [timeline.reached[key] for key, _ in STAGES]
    assert reached == sorted(reached)
    assert "promoted to champion" in timeline.stopped_because
    for topic in (
        TRACE_INGESTED,
        FEEDBACK_RECEIVED,
        TRACE_LABELED,
        DATASET_READY,
        CHECKPOINT_TRAINED,
        EVAL_PASSED,
    ):
        assert timeline.counts[topic] >= 1, topic
    decisions = [
        item["decision"] for item in timeline.rollout if item["model_version"] == timeline.candidate_version
    ]
    assert decisions[0] == "started" and decisions[-1] == "promoted"
    assert [
        item["canary_weight"] for item in timeline.rollout if item["decision"] in ("started", "advanced")
    ] == [
        0.05,
        0.25,
        1.0,
    ]
    assert timeline.counts[ROLLOUT_STAGE] >= 4

    # The promotion is real: MLflow's champion alias, and the gateway answers with the new version.
    champion = ModelRegistry(settings).version("champion")
    assert champion is not None and str(champion.version) == timeline.candidate_version
    assert set(result.before_versions) == {"base"}
    assert set(result.after_versions) == {timeline.candidate_version}

    # Every service was stopped.
    assert Supervisor(settings.home).recorded() == {}
    assert result.services_dead == []

    # What `kaizen loop status` reads back from the tables, the registry and the controller.
    status = loop_status(settings)
    assert status["tables"]["traces"] >= timeline.counts[TRACE_INGESTED] > 0
    assert status["tables"]["labels"] >= 1
    assert status["tables"]["datasets"] >= 1
    assert status["registry"]["model versions"] >= 1
    assert status["registry"]["aliases"]["champion"] == timeline.candidate_version
    assert status["rollout"]["rollout"] is None

    # The stage times and the report.
    rows = comparison(result, users=config.comparison.users)
    assert {row.metric for row in rows} == {"feedback_score", "preference", "grounding", "words"}
    document = json.loads(write_timeline(tmp_path / "timeline.json", result, rows, config.name).read_text())
    assert [row["stage"] for row in document["stages"]] == [key for key, _ in STAGES]
    assert all(row["at_s"] is not None for row in document["stages"])
    page = write_html(tmp_path / "report.html", result, rows, config.name).read_text()
    assert "promoted to champion" in page and page.count("<svg") >= 3


@pytest.mark.timeout(1200)
def test_a_candidate_that_fails_evaluation_ends_the_loop_and_the_run_says_why(
    stack: Stack, tmp_path: Path
) -> None:
    config = load_config(REDUCED_CONFIG)
    # A floor no candidate can reach: composite rewards lie in [0, 1].
    config.settings["evaluator"]["absolute"] = {"composite_reward": 1.5}
    settings = run_settings(home=tmp_path / "home")
    started = time.monotonic()
    result = run_loop(config, settings, log=print)
    timeline = result.timeline

    assert not timeline.promoted
    assert "trained" in timeline.reached and "evaluated" not in timeline.reached
    assert timeline.stopped_because.startswith("no new champion: evaluation failed for version "), (
        timeline.stopped_because
    )
    assert "composite_reward" in timeline.stopped_because, timeline.stopped_because
    # It ended at the failure, not at its time limit, and the base stays the champion.
    assert time.monotonic() - started < config.time_limit_s
    assert ModelRegistry(settings).version("champion") is None
    assert result.after == {} and result.services_dead == []
    assert Supervisor(settings.home).recorded() == {}
