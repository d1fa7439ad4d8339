"""The event contracts between Kaizen's services.

Every event is a pydantic model with the common envelope of DESIGN.md. Events carry references
(Iceberg snapshot ids, MLflow URIs), never bulk data; the one exception is ``trace.raw`` /
``feedback.raw``, which carry the validated, redacted record itself because they *are* the intake.

Fields are only ever added, optional and with defaults. A breaking change is a new model and topic.
Follow an event through the loop by its topic constant:

    TRACE_RAW / FEEDBACK_RAW        ingest HTTP, production apps -> ingest worker
    TRACE_INGESTED / FEEDBACK_RECEIVED   ingest worker -> labeler, rollout analysis
    TRACE_LABELED                   labeler -> curator, rollout analysis
    DATASET_READY                   curator -> trainer
    CHECKPOINT_TRAINED              trainer -> evaluator
    TRAINING_FAILED                 trainer -> operators, dashboard (a job that ended without a checkpoint)
    EVAL_PASSED / EVAL_FAILED       evaluator -> rollout
    ROLLOUT_STAGE                   rollout -> dashboard, anyone
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

# Topic names (logical: ``KafkaSettings.topic`` adds the deployment's prefix).
TRACE_RAW = "trace.raw"
FEEDBACK_RAW = "feedback.raw"
TRACE_INGESTED = "trace.ingested"
FEEDBACK_RECEIVED = "feedback.received"
TRACE_LABELED = "trace.labeled"
DATASET_READY = "dataset.ready"
CHECKPOINT_TRAINED = "checkpoint.trained"
TRAINING_FAILED = "training.failed"
EVAL_PASSED = "eval.passed"
EVAL_FAILED = "eval.failed"
ROLLOUT_STAGE = "rollout.stage"
DLQ_SUFFIX = ".dlq"


def dlq_topic(topic: str) -> str:
    """The dead-letter topic of a (physical) topic."""
    return f"{topic}{DLQ_SUFFIX}"


def _now() -> datetime:
    return datetime.now(UTC)


class Envelope(BaseModel):
    """The fields every event carries."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    topic: ClassVar[str]

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4, description="Unique id; consumers dedup by it.")
    type: str = Field(description="The event type, equal to its logical topic name.")
    schema_version: int = Field(1, description="Version of this event's schema; fields are only added.")
    occurred_at: datetime = Field(default_factory=_now, description="When the fact happened (UTC).")
    producer: str = Field(description="The service (or app) that produced the event.")
    project_id: str = Field(
        description="Project the data belongs to; a key of one project never writes another."
    )
    correlation_id: str = Field(
        description="What ties a chain of events together: the trace id, dataset id or model version."
    )

    def key(self) -> bytes:
        """The Kafka message key: the correlation id, so one trace (or dataset, or version) stays ordered."""
        return self.correlation_id.encode()


# ---------------------------------------------------------------------------------------------
# Records carried by the intake events.


class ChatMessage(BaseModel):
    role: str = Field(description="system, user, assistant or tool.")
    content: str = Field(description="The message text.")


def prompt_chat(raw: Any) -> list[dict[str, str]] | None:
    """A chat a model answers, from its JSON text (a trace's ``input_messages``, a dataset item's
    ``messages``): a non-empty list of {role, content} ending with a user turn; None when it is not."""
    try:
        value = json.loads(raw) if isinstance(raw, str | bytes) else raw
    except ValueError:
        return None
    if not isinstance(value, list) or not value:
        return None
    chat = [
        {"role": m["role"], "content": m["content"]}
        for m in value
        if isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
    ]
    return chat if len(chat) == len(value) and chat[-1]["role"] == "user" else None


class Usage(BaseModel):
    prompt_tokens: int | None = Field(None, ge=0, description="Tokens in the prompt.")
    completion_tokens: int | None = Field(None, ge=0, description="Tokens in the completion.")
    total_tokens: int | None = Field(None, ge=0, description="Prompt plus completion tokens.")


class TraceRecord(BaseModel):
    """One LLM generation as Kaizen keeps it: the unit that gets a reward and may become training data."""

    trace_id: str = Field(min_length=1, description="Trace id (32 hex chars for OTLP traces).")
    span_id: str | None = Field(None, description="Span id of the generation inside the trace.")
    project_id: str = Field(min_length=1, description="Owning project.")
    name: str | None = Field(None, description="Span or observation name.")
    model: str = Field("unknown", description="Model name as the application reported it.")
    model_version: str | None = Field(None, description="Serving model version (kaizen.model_version).")
    input_messages: list[ChatMessage] = Field(
        default_factory=list, description="The prompt as chat messages."
    )
    prompt: str = Field("", description="The prompt as plain text (the last user message when chat).")
    response: str = Field("", description="The generated answer.")
    contexts: list[str] = Field(
        default_factory=list, description="Retrieved contexts the answer should rest on."
    )
    reference: str | None = Field(None, description="A reference answer, when the application has one.")
    user_id: str | None = Field(None, description="End user id.")
    session_id: str | None = Field(None, description="Conversation or session id.")
    tags: list[str] = Field(default_factory=list, description="Free tags.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Every attribute not mapped above.")
    usage: Usage = Field(default_factory=Usage, description="Token counts.")
    latency_ms: float | None = Field(None, ge=0, description="Generation latency in milliseconds.")
    status: Literal["ok", "error"] = Field("ok", description="Whether the generation succeeded.")
    error: str | None = Field(None, description="The error message when status is error.")
    consent: bool = Field(False, description="Whether the user consented to training on this trace.")
    started_at: datetime = Field(default_factory=_now, description="When the generation started (UTC).")
    completion_token_ids: list[int] | None = Field(
        None, description="Token ids of the completion (on-policy)."
    )
    completion_logprobs: list[float] | None = Field(
        None, description="Log-probs of those tokens (on-policy)."
    )
    redactions: int = Field(0, ge=0, description="How many PII spans were redacted from this record.")
    contexts_only: bool = Field(
        False,
        description=(
            "A partial record carrying only the retrieved contexts of a trace whose generation comes in a "
            "later export; the ingest worker joins it to that generation and never stores it alone."
        ),
    )


FeedbackKind = Literal["rating", "thumbs", "stars", "score", "copy", "share", "retry", "dismiss", "engage"]
EXPLICIT_FEEDBACK_KINDS: frozenset[str] = frozenset({"rating", "thumbs", "stars", "score"})
IMPLICIT_FEEDBACK_KINDS: frozenset[str] = frozenset({"copy", "share", "retry", "dismiss", "engage"})


class FeedbackRecord(BaseModel):
    """A user's reaction to one trace: an explicit rating or an implicit signal."""

    feedback_id: str = Field(
        default_factory=lambda: uuid.uuid4().hex, description="Unique id; a resent feedback keeps its id."
    )
    trace_id: str = Field(min_length=1, description="The trace the feedback is about.")
    project_id: str = Field(min_length=1, description="Owning project.")
    kind: FeedbackKind = Field(description="rating/thumbs/stars/score (explicit) or an implicit signal.")
    value: float | None = Field(
        None, ge=0.0, le=1.0, description="Explicit feedback normalized to [0, 1]; none for implicit signals."
    )
    raw_value: float | str | None = Field(None, description="The value as the client sent it.")
    name: str | None = Field(None, description="Score name (Langfuse scores carry one).")
    dwell_ms: float | None = Field(None, ge=0, description="Dwell time for engage signals.")
    user_id: str | None = Field(None, description="User who gave the feedback.")
    comment: str | None = Field(None, description="Free-text comment.")
    occurred_at: datetime = Field(default_factory=_now, description="When the user reacted (UTC).")


# ---------------------------------------------------------------------------------------------
# The events, in the order of the loop.


class TraceRaw(Envelope):
    """A generation accepted at intake, validated and redacted, on its way to the ingest worker."""

    topic: ClassVar[str] = TRACE_RAW
    type: Literal["trace.raw"] = Field("trace.raw", description="The event type, equal to its topic.")
    record: TraceRecord = Field(description="The validated, redacted trace.")


class FeedbackRaw(Envelope):
    """A user's feedback accepted at intake, on its way to the ingest worker."""

    topic: ClassVar[str] = FEEDBACK_RAW
    type: Literal["feedback.raw"] = Field("feedback.raw", description="The event type, equal to its topic.")
    record: FeedbackRecord = Field(description="The validated feedback.")


class TableRef(BaseModel):
    """Where rows landed: an Iceberg table and the snapshot that holds them."""

    table: str = Field(description="Fully qualified table name, e.g. kaizen.traces.")
    snapshot_id: int | None = Field(None, description="Iceberg snapshot id of the commit.")


class TraceIngested(Envelope):
    """A consented trace is durable in the traces table; the labeler and the rollout analysis start here."""

    topic: ClassVar[str] = TRACE_INGESTED
    type: Literal["trace.ingested"] = Field(
        "trace.ingested", description="The event type, equal to its topic."
    )
    trace_id: str = Field(description="The trace id.")
    model: str = Field(description="Model name.")
    model_version: str | None = Field(None, description="Serving model version.")
    consent: bool = Field(description="Consent flag (always true on this topic: the trainable table only).")
    stored: TableRef = Field(description="Table and snapshot holding the trace.")
    user_id: str | None = Field(None, description="End user id (for sticky analysis).")
    session_id: str | None = Field(None, description="Session id.")
    latency_ms: float | None = Field(None, description="Generation latency, for the rollout analysis.")
    status: Literal["ok", "error"] = Field("ok", description="Generation status, for the rollout analysis.")


class FeedbackReceived(Envelope):
    """Feedback about a trace is recorded; the labeler joins it with the trace's label."""

    topic: ClassVar[str] = FEEDBACK_RECEIVED
    type: Literal["feedback.received"] = Field(
        "feedback.received", description="The event type, equal to its topic."
    )
    trace_id: str = Field(description="The trace the feedback is about.")
    feedback_id: str = Field(description="Feedback id.")
    kind: FeedbackKind = Field(description="Feedback kind.")
    value: float | None = Field(None, description="Normalized value for explicit feedback.")
    name: str | None = Field(None, description="Score name.")
    dwell_ms: float | None = Field(None, description="Dwell time for engage signals.")
    model_version: str | None = Field(None, description="Model version that produced the trace, when known.")


class TraceLabeled(Envelope):
    """A trace has a reward: every component and the gated composite, with its label version."""

    topic: ClassVar[str] = TRACE_LABELED
    type: Literal["trace.labeled"] = Field("trace.labeled", description="The event type, equal to its topic.")
    trace_id: str = Field(description="The labeled trace.")
    model_version: str | None = Field(None, description="Model version that produced the trace.")
    components: dict[str, float | None] = Field(
        description="Every reward component; None marks a component that could not be computed (never 0)."
    )
    composite_reward: float = Field(ge=0.0, le=1.0, description="The gated, weighted reward in [0, 1].")
    gated_by: str | None = Field(None, description="The gate that zeroed the reward, if one did.")
    label_version: int = Field(ge=1, description="1 for the first label; late feedback makes a new version.")
    config_hash: str = Field(description="Hash of the reward configuration that produced the label.")
    stored: TableRef | None = Field(None, description="Table and snapshot holding the label.")


class DatasetReady(Envelope):
    """The curator built an immutable dataset snapshot; the trainer trains on it."""

    topic: ClassVar[str] = DATASET_READY
    type: Literal["dataset.ready"] = Field("dataset.ready", description="The event type, equal to its topic.")
    dataset_id: str = Field(description="Dataset id.")
    stored: TableRef = Field(description="The datasets table and the snapshot holding this dataset.")
    sizes: dict[str, int] = Field(description="Item counts by split and kind, e.g. train, eval, replay.")
    algorithm: Literal["dpo", "grpo", "sft"] = Field(description="Suggested training algorithm.")
    trigger_reason: str = Field(description="Which trigger fired: sample_count, time_interval, ...")
    trigger_details: dict[str, float] = Field(
        default_factory=dict, description="The numbers behind the trigger."
    )
    config_hash: str | None = Field(None, description="Hash of the curator configuration.")


class CheckpointTrained(Envelope):
    """A training job registered a new model version in MLflow; the evaluator gates it."""

    topic: ClassVar[str] = CHECKPOINT_TRAINED
    type: Literal["checkpoint.trained"] = Field(
        "checkpoint.trained", description="The event type, equal to its topic."
    )
    model_version: str = Field(description="Registered model version.")
    registered_model: str = Field(description="Registered model name.")
    model_uri: str = Field(description="MLflow model URI of the adapter (models:/name/version or runs:/...).")
    run_id: str = Field(description="MLflow run id of the training job.")
    dataset_id: str = Field(description="Dataset the checkpoint was trained on.")
    algorithm: Literal["dpo", "grpo", "sft"] = Field(description="Training algorithm.")
    base_model: str = Field(description="Base model the adapter applies to.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Final training metrics.")


TrainingFailureReason = Literal[
    "empty_dataset",
    "broken_dataset",
    "nan_loss",
    "out_of_memory",
    "kernel_unavailable",
    "error",
]


class TrainingFailed(Envelope):
    """A training job ended without a checkpoint; the reason is also recorded on its MLflow run."""

    topic: ClassVar[str] = TRAINING_FAILED
    type: Literal["training.failed"] = Field(
        "training.failed", description="The event type, equal to its topic."
    )
    dataset_id: str = Field(description="Dataset the job was training on.")
    algorithm: Literal["dpo", "grpo", "sft"] = Field(description="Training algorithm.")
    reason: TrainingFailureReason = Field(
        description=(
            "Why the job failed: empty_dataset, broken_dataset, nan_loss, out_of_memory, kernel_unavailable "
            "or error (anything else)."
        )
    )
    detail: str = Field("", description="The error, in words, with the numbers behind it.")
    run_id: str | None = Field(None, description="MLflow run of the job, when one was started.")
    base_model: str | None = Field(None, description="Base model the job started from.")
    step: int | None = Field(None, ge=0, description="Optimizer steps completed when the job failed.")
    attempts: int = Field(1, ge=1, description="Attempts the job made before it was given up.")


class GateVerdict(BaseModel):
    gate: str = Field(description="Gate name, e.g. faithfulness_min or win_rate.")
    passed: bool = Field(description="Whether the gate held.")
    value: float | None = Field(None, description="Measured value (None when it could not be measured).")
    threshold: float | None = Field(None, description="The threshold it was compared with.")
    detail: str = Field("", description="How it was judged (e.g. the bootstrap interval).")


class EvalPassed(Envelope):
    """A candidate passed every gate against the champion and is now the challenger; rollout canaries it."""

    topic: ClassVar[str] = EVAL_PASSED
    type: Literal["eval.passed"] = Field("eval.passed", description="The event type, equal to its topic.")
    model_version: str = Field(description="Candidate model version.")
    registered_model: str = Field(description="Registered model name.")
    champion_version: str | None = Field(None, description="Champion it was compared with.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Summary metrics of the candidate.")
    verdicts: list[GateVerdict] = Field(default_factory=list, description="Every gate and its verdict.")
    reason: str = Field("", description="Why it passed.")


class EvalFailed(Envelope):
    """A candidate failed a gate; the reason names the metric."""

    topic: ClassVar[str] = EVAL_FAILED
    type: Literal["eval.failed"] = Field("eval.failed", description="The event type, equal to its topic.")
    model_version: str = Field(description="Candidate model version.")
    registered_model: str = Field(description="Registered model name.")
    champion_version: str | None = Field(None, description="Champion it was compared with.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Summary metrics of the candidate.")
    verdicts: list[GateVerdict] = Field(default_factory=list, description="Every gate and its verdict.")
    reason: str = Field(description="Why it failed, naming the metric.")


RolloutDecision = Literal[
    "started",
    "advanced",
    "extended",
    "held",
    "paused",
    "resumed",
    "promoted",
    "rolled_back",
    "aborted",
    "queued",
]


class RolloutStage(Envelope):
    """The rollout controller changed a canary's stage or weight, or decided its fate."""

    topic: ClassVar[str] = ROLLOUT_STAGE
    type: Literal["rollout.stage"] = Field("rollout.stage", description="The event type, equal to its topic.")
    model_version: str = Field(description="Canary model version.")
    champion_version: str | None = Field(None, description="Champion it runs against.")
    stage: int = Field(ge=0, description="Stage index in the plan (0-based).")
    canary_weight: float = Field(ge=0.0, le=1.0, description="Share of traffic sent to the canary now.")
    decision: RolloutDecision = Field(description="What the controller decided.")
    reason: str = Field(description="Why, with the numbers.")
    metrics: dict[str, float] = Field(
        default_factory=dict, description="Canary vs champion metrics of the window."
    )


EVENT_TYPES: tuple[type[Envelope], ...] = (
    TraceRaw,
    FeedbackRaw,
    TraceIngested,
    FeedbackReceived,
    TraceLabeled,
    DatasetReady,
    CheckpointTrained,
    TrainingFailed,
    EvalPassed,
    EvalFailed,
    RolloutStage,
)
"""Every event model, in the order of the loop."""

EVENT_BY_TOPIC: dict[str, type[Envelope]] = {model.topic: model for model in EVENT_TYPES}

AnyEvent = Annotated[
    TraceRaw
    | FeedbackRaw
    | TraceIngested
    | FeedbackReceived
    | TraceLabeled
    | DatasetReady
    | CheckpointTrained
    | TrainingFailed
    | EvalPassed
    | EvalFailed
    | RolloutStage,
    Field(discriminator="type"),
]
