"""What the dashboard shows, as plain models: the page and the JSON API render the same objects.

Each section is read from the system of record, never from a copy the dashboard keeps:

- traces per minute        the ``traces`` table (generation start time, per model version)
- reward distribution      the ``labels`` table (latest label version of each trace, by label time)
- datasets                 the ``datasets`` table, with each dataset's snapshot properties (trigger, sizes)
- training runs            MLflow runs of the project's experiment that carry ``kaizen.dataset_id``
- model versions, evals    the registered model's versions, their ``eval.*`` tags, aliases and eval runs
- canary timeline          rollout.stage events (``services.dashboard.timeline``)
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, computed_field

UNKNOWN_VERSION = "unknown"
"""The version shown for traces and labels that carry no model version."""


class MinuteCount(BaseModel):
    minute: datetime = Field(description="Start of the minute (UTC).")
    count: int = Field(description="Traces whose generation started in this minute.")
    by_version: dict[str, int] = Field(description="The count split by model version.")


class TracesPerMinute(BaseModel):
    since: datetime = Field(description="Start of the window shown.")
    total: int = Field(description="Traces in the window.")
    versions: list[str] = Field(description="Model versions seen in the window.")
    minutes: list[MinuteCount] = Field(
        description="Every minute from the first with traces to now, empty minutes included."
    )


class RewardStats(BaseModel):
    count: int
    mean: float
    p10: float
    p25: float
    p50: float
    p75: float
    p90: float


class RewardBucket(BaseModel):
    start: datetime = Field(description="Start of the time bucket (UTC).")
    end: datetime = Field(description="End of the time bucket (UTC).")
    by_version: dict[str, RewardStats] = Field(description="Composite-reward distribution per model version.")


class RewardDistribution(BaseModel):
    since: datetime
    bucket_minutes: int = Field(description="Width of one time bucket.")
    versions: list[str] = Field(description="Model versions with labels in the window.")
    buckets: list[RewardBucket]
    overall: dict[str, RewardStats] = Field(description="The whole window's distribution per version.")


class DatasetSummary(BaseModel):
    dataset_id: str
    created_at: datetime | None
    items: int
    sizes: dict[str, int] = Field(description="Items by split (train, eval, replay).")
    kinds: dict[str, int] = Field(description="Items by kind (dpo, grpo, sft).")
    trigger_reason: str | None = Field(description="Which trigger built it (snapshot property).")
    algorithm: str | None
    snapshot_id: int | None


class TrainingRun(BaseModel):
    run_id: str
    name: str | None
    status: str
    started_at: datetime | None
    ended_at: datetime | None
    dataset_id: str | None
    algorithm: str | None
    base_model: str | None
    trigger_reason: str | None
    failure_reason: str | None
    model_version: str | None = Field(description="The registered version the run produced, if any.")
    metrics: dict[str, float] = Field(description="Latest value of every metric the run logged.")


class MetricComparison(BaseModel):
    metric: str
    candidate: float | None
    champion: float | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def delta(self) -> float | None:
        """Candidate minus champion."""
        if self.candidate is None or self.champion is None:
            return None
        return self.candidate - self.champion


class Evaluation(BaseModel):
    model_version: str
    status: str = Field(description="passed, failed or awaiting_approval (the eval.status tag).")
    reason: str
    champion: str | None = Field(description="The champion it was compared with.")
    run_id: str | None
    metrics: list[MetricComparison]


class ModelVersionSummary(BaseModel):
    version: str
    created_at: datetime | None
    aliases: list[str]
    run_id: str | None
    dataset_id: str | None
    algorithm: str | None
    eval_status: str | None


class Registry(BaseModel):
    registered_model: str
    aliases: dict[str, str] = Field(description="Alias (champion, challenger, previous) to version.")
    versions: list[ModelVersionSummary]
    evaluations: list[Evaluation]
    training_runs: list[TrainingRun]


class RolloutEvent(BaseModel):
    event_id: str
    occurred_at: datetime
    model_version: str
    champion_version: str | None
    stage: int
    canary_weight: float
    decision: str
    reason: str
    metrics: dict[str, float]


class RolloutTimeline(BaseModel):
    connected: bool = Field(description="Whether the dashboard is reading rollout.stage now.")
    events: list[RolloutEvent] = Field(description="This project's rollout.stage events, oldest first.")


class Summary(BaseModel):
    project_id: str
    generated_at: datetime
    traces: TracesPerMinute | None
    rewards: RewardDistribution | None
    datasets: list[DatasetSummary] | None
    registry: Registry | None
    rollout: RolloutTimeline
    errors: dict[str, str] = Field(
        default_factory=dict, description="Sections that could not be read, and why; the rest still show."
    )
