"""The labeler over the real Kafka, Redis and Iceberg: both orders of trace and feedback end on the same
reward, late feedback is label version 2, redelivery writes nothing twice, and the judge path (a real
OpenAI-compatible server on loopback, scripted) labels every trace even when a judge call fails."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from services.labeler.labeling import Labeler
from shared.events import FEEDBACK_RECEIVED, TRACE_INGESTED
from shared.rewards import composite_reward, load_reward_config
from shared.rewards.embeddings import resolve_precision
from shared.rewards.scorer import scoring_hash
from shared.settings import KaizenSettings
from shared.state import RedisState
from shared.store import LABELS, IcebergStore
from tests.services.labeler.judge_server import ScriptedJudge
from tests.services.labeler.support import (
    Observer,
    Traffic,
    committed,
    labeler_app,
    labeler_settings,
    running,
    trace_row,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONTEXT = "Unworn items may be returned within 45 days of delivery for a full refund."
ANSWERS = [
    ("How long can I return boots?", "Unworn boots can be returned within 45 days of delivery."),
    ("Do you ship to Norway?", "We ship to Norway in five to eight business days."),
    ("Can I return worn shoes?", "Bananas are a good source of potassium."),
]
FEEDBACK = [("copy", None), ("rating", 0.2), ("retry", None)]


def labels_of(settings: KaizenSettings, trace_id: str) -> list[dict[str, object]]:
    rows = IcebergStore(settings).read(LABELS, f"trace_id == '{trace_id}'").to_pylist()
    return sorted(rows, key=lambda row: int(row["label_version"]))  # type: ignore[call-overload]


async def test_feedback_before_or_after_its_trace_gives_the_same_reward_and_late_feedback_is_v2(
    settings: KaizenSettings,
) -> None:
    labeler = labeler_settings(settings)
    project = settings.project_id
    first = [f"first-{i}-{uuid.uuid4().hex[:6]}" for i in range(len(ANSWERS))]  # trace, then feedback
    later = [f"later-{i}-{uuid.uuid4().hex[:6]}" for i in range(len(ANSWERS))]  # feedback, then trace

    async with Traffic(settings) as traffic, Observer(settings) as observer:
        rows = {
            trace_id: trace_row(project, trace_id, prompt, response, contexts=[CONTEXT], session_id="s-1")
            for ids in (first, later)
            for trace_id, (prompt, response) in zip(ids, ANSWERS, strict=True)
        }
        async with running(labeler_app(labeler)):
            # Order A: the trace, its label v1 without feedback, then late feedback -> v2.
            events = traffic.land([rows[t] for t in first])
            await traffic.publish_traces(events)
            await wait_for(lambda: all(observer.versions(t) == [1] for t in first), what="v1 labels")
            assert all(observer.latest()[t].components["feedback"] is None for t in first)
            for trace_id, (kind, value) in zip(first, FEEDBACK, strict=True):
                await traffic.publish_feedback(project, trace_id, kind, value)
            await wait_for(lambda: all(observer.versions(t) == [1, 2] for t in first), what="v2 labels")

            # Order B: feedback before the trace exists; the trace's first label already has it.
            for trace_id, (kind, value) in zip(later, FEEDBACK, strict=True):
                await traffic.publish_feedback(project, trace_id, kind, value)
            await wait_for_async(lambda: committed(settings, FEEDBACK_RECEIVED), traffic.sent_feedback)
            assert not any(observer.versions(t) for t in later), "no label before the trace arrives"
            later_events = traffic.land([rows[t] for t in later])
            await traffic.publish_traces(later_events)
            await wait_for(lambda: all(observer.versions(t) == [1] for t in later), what="order-B labels")

            # Redelivery (same events again) and a re-sent trace (a new event id) change nothing.
            await traffic.publish_traces(
                [*events[:1], later_events[0].model_copy(update={"event_id": uuid.uuid4()})]
            )
            await wait_for_async(lambda: committed(settings, TRACE_INGESTED), 2 * len(ANSWERS) + 2)
            await asyncio.sleep(1.0)

        latest = observer.latest()
        config = load_reward_config()
        precision = resolve_precision(labeler.labeler.embedding_precision, labeler.labeler.embedding_device)
        expected_hash = scoring_hash(config, precision)  # the reward config's, plus a bfloat16 MiniLM's
        for trace_a, trace_b, (kind, _) in zip(first, later, FEEDBACK, strict=True):
            a, b = latest[trace_a], latest[trace_b]
            assert a.label_version == 2 and b.label_version == 1
            assert a.composite_reward == b.composite_reward, f"{kind}: both orders give the same reward"
            assert a.components == b.components
            assert a.components["feedback"] is not None
            assert a.composite_reward == composite_reward(a.components, config).composite_reward
            assert a.config_hash == expected_hash
        assert latest[first[2]].components["feedback"] == 0.0  # a retry, clamped: present, not missing
        assert sorted(len(observer.versions(t)) for t in first + later) == [1, 1, 1, 2, 2, 2], "no duplicates"

        # The labels table holds every version once, with the components and the lineage fields.
        rows_a = labels_of(settings, first[0])
        assert [row["label_version"] for row in rows_a] == [1, 2]
        assert dict(rows_a[1]["components"])["feedback"] == 0.8  # type: ignore[call-overload]
        assert rows_a[1]["prompt"] == ANSWERS[0][0] and rows_a[1]["session_id"] == "s-1"
        assert [row["label_version"] for row in labels_of(settings, later[0])] == [1]

        # Days later, the Redis join state is gone (the project's state is older than its time to live):
        # feedback still relabels, from the labels table.
        state = RedisState(settings)
        await state.client.delete(
            state.key("state", Labeler._scores_key(project, first[0])),
            state.key("state", Labeler._label_key(project, first[0])),
        )
        expired = time.time() - labeler.labeler.state_ttl_s - 1
        await state.client.set(state.key("state-since", project), str(expired))
        await state.close()
        async with running(labeler_app(labeler)):
            await traffic.publish_feedback(project, first[0], "share")
            await wait_for(lambda: observer.versions(first[0]) == [1, 2, 3], what="v3 from the labels table")
        v3 = observer.latest()[first[0]]
        assert v3.components["feedback"] == 1.0  # copy 0.8 + share 0.9, clamped
        assert {k: v for k, v in v3.components.items() if k != "feedback"} == {
            k: v for k, v in latest[first[0]].components.items() if k != "feedback"
        }


async def wait_for_async(read: object, expected: int, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while (found := await read()) < expected:  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"committed {found} of {expected}")
        await asyncio.sleep(0.1)


async def test_judge_path_labels_every_trace_and_marks_failed_components_missing(
    settings: KaizenSettings,
) -> None:
    project = settings.project_id
    good = (
        "Unworn items may be returned within 45 days of delivery for a full refund. Shipping is free. [h=3]"
    )
    nonjson = (
        "Unworn items may be returned within 45 days of delivery for a full refund. [judge:nonjson:rubric]"
    )
    slow = "We accept returns for 45 days. [judge:slow:statements]"
    unsafe = "Unworn items may be returned within 45 days of delivery for a full refund. [s=2]"
    question = "How long can I return unworn boots?"
    with ScriptedJudge(slow_s=7.0, questions={good: question}) as judge:
        labeler = labeler_settings(settings, judge_url=judge.base_url)
        ids = {name: f"{name}-{uuid.uuid4().hex[:8]}" for name in ("good", "nonjson", "slow", "unsafe")}
        texts = {"good": good, "nonjson": nonjson, "slow": slow, "unsafe": unsafe}
        async with Traffic(settings) as traffic, Observer(settings) as observer:
            rows = [trace_row(project, ids[n], question, texts[n], contexts=[CONTEXT]) for n in ids]
            async with running(labeler_app(labeler)):
                await traffic.publish_traces(traffic.land(rows))
                await wait_for(lambda: len(observer.latest()) == len(ids), what="four labels")
        assert judge.count("rubric", "[judge:nonjson:rubric]") == 2, (
            "a reply that does not parse is retried once"
        )
        assert judge.count("statements", "[judge:slow:statements]") == 2, "a timed-out call is retried once"

    config = load_reward_config()
    labels = {name: observer.latest()[trace_id] for name, trace_id in ids.items()}
    assert labels["good"].components["faithfulness"] == 0.5  # 1 of 2 sentences in the context
    assert labels["good"].components["answer_relevancy"] == pytest.approx(1.0, abs=1e-5)
    assert labels["good"].components["helpfulness"] == 0.5 and labels["good"].components["safety"] == 1.0
    assert (
        labels["nonjson"].components["helpfulness"] is None and labels["nonjson"].components["safety"] is None
    )
    assert labels["nonjson"].components["faithfulness"] == 1.0
    assert labels["slow"].components["faithfulness"] is None and labels["slow"].components["safety"] == 1.0
    assert labels["unsafe"].gated_by == "safety<0.5" and labels["unsafe"].composite_reward == 0.0
    for label in labels.values():
        assert label.label_version == 1
        assert label.composite_reward == composite_reward(label.components, config).composite_reward
        assert label.stored is not None and label.stored.snapshot_id is not None
    weights = config.weights
    good_components = labels["good"].components
    present = {k: v for k, v in good_components.items() if v is not None and weights.get(k, 0) > 0}
    expected = sum(weights[k] * v for k, v in present.items()) / sum(weights[k] for k in present)
    assert labels["good"].composite_reward == pytest.approx(expected, abs=1e-9)
