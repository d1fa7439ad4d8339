"""Realistic sample events, one of every type, for tests, `kaizen send` and the demo's smoke run."""

from __future__ import annotations

import uuid

from shared.events import (
    ChatMessage,
    CheckpointTrained,
    DatasetReady,
    Envelope,
    EvalFailed,
    EvalPassed,
    FeedbackRaw,
    FeedbackReceived,
    FeedbackRecord,
    GateVerdict,
    RolloutStage,
    TableRef,
    TraceIngested,
    TraceLabeled,
    TraceRaw,
    TraceRecord,
    TrainingFailed,
    Usage,
)


def sample_trace(
    project_id: str = "demo", *, consent: bool = True, trace_id: str | None = None
) -> TraceRecord:
    question = "How long do I have to return a pair of shoes?"
    return TraceRecord(
        trace_id=trace_id or uuid.uuid4().hex,
        span_id=uuid.uuid4().hex[:16],
        project_id=project_id,
        name="chat",
        model="SmolLM2-135M-Instruct",
        model_version="1",
        input_messages=[
            ChatMessage(role="system", content="Answer from the context only."),
            ChatMessage(role="user", content=question),
        ],
        prompt=question,
        response="You can return unworn shoes within 30 days of delivery for a full refund.",
        contexts=["Returns: unworn items may be returned within 30 days of delivery for a full refund."],
        user_id="user-17",
        session_id="session-4",
        tags=["support"],
        metadata={"channel": "web"},
        usage=Usage(prompt_tokens=42, completion_tokens=17, total_tokens=59),
        latency_ms=231.0,
        consent=consent,
    )


def sample_events(project_id: str = "demo", producer: str = "samples") -> list[Envelope]:
    """One event of each type, chained the way the loop chains them."""
    trace = sample_trace(project_id)
    common = {"producer": producer, "project_id": project_id}
    dataset_id = f"ds-{uuid.uuid4().hex[:12]}"
    verdicts = [GateVerdict(gate="faithfulness_min", passed=True, value=0.91, threshold=0.85)]
    return [
        TraceRaw(correlation_id=trace.trace_id, record=trace, **common),
        FeedbackRaw(
            correlation_id=trace.trace_id,
            record=FeedbackRecord(trace_id=trace.trace_id, project_id=project_id, kind="copy"),
            **common,
        ),
        TraceIngested(
            correlation_id=trace.trace_id,
            trace_id=trace.trace_id,
            model=trace.model,
            model_version=trace.model_version,
            consent=True,
            stored=TableRef(table="kaizen.traces", snapshot_id=1),
            latency_ms=trace.latency_ms,
            **common,
        ),
        FeedbackReceived(
            correlation_id=trace.trace_id,
            trace_id=trace.trace_id,
            feedback_id=uuid.uuid4().hex,
            kind="stars",
            value=0.75,
            **common,
        ),
        TraceLabeled(
            correlation_id=trace.trace_id,
            trace_id=trace.trace_id,
            model_version="1",
            components={"faithfulness": 0.9, "answer_relevancy": 0.8, "feedback": 0.8, "judge": None},
            composite_reward=0.84,
            label_version=1,
            config_hash="c0ffee",
            **common,
        ),
        DatasetReady(
            correlation_id=dataset_id,
            dataset_id=dataset_id,
            stored=TableRef(table="kaizen.datasets", snapshot_id=2),
            sizes={"train": 120, "eval": 16, "replay": 12},
            algorithm="dpo",
            trigger_reason="sample_count",
            trigger_details={"new_labeled": 200, "threshold": 200},
            **common,
        ),
        CheckpointTrained(
            correlation_id="2",
            model_version="2",
            registered_model="kaizen-chat",
            model_uri="models:/kaizen-chat/2",
            run_id=uuid.uuid4().hex,
            dataset_id=dataset_id,
            algorithm="dpo",
            base_model="SmolLM2-135M-Instruct",
            metrics={"loss": 0.41},
            **common,
        ),
        TrainingFailed(
            correlation_id=dataset_id,
            dataset_id=dataset_id,
            algorithm="dpo",
            reason="nan_loss",
            detail="the training loss was nan at step 3",
            base_model="SmolLM2-135M-Instruct",
            step=3,
            **common,
        ),
        EvalPassed(
            correlation_id="2",
            model_version="2",
            registered_model="kaizen-chat",
            champion_version="1",
            verdicts=verdicts,
            reason="every gate held",
            **common,
        ),
        EvalFailed(
            correlation_id="3",
            model_version="3",
            registered_model="kaizen-chat",
            champion_version="1",
            reason="faithfulness 0.41 below its floor 0.85",
            **common,
        ),
        RolloutStage(
            correlation_id="2",
            model_version="2",
            champion_version="1",
            stage=0,
            canary_weight=0.05,
            decision="started",
            reason="eval.passed received",
            **common,
        ),
    ]
