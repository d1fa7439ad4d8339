"""The rollout service's settings: ``KAIZEN_ROLLOUT__*`` (controller), ``KAIZEN_GATEWAY__*`` (serving)
and ``KAIZEN_SERVE_ALIAS`` on top of Kaizen's own.

Every duration and sample count of the stage plan is configurable, so a test runs a whole rollout in
seconds and a production deployment waits for real evidence. Defaults are production values.
"""

from __future__ import annotations

import itertools
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from shared.models import Precision
from shared.settings import DEV_PLACEHOLDER_SECRET, KaizenSettings, SettingsError

Metric = Literal["error_rate", "latency_p95", "feedback", "composite_reward"]
METRICS: tuple[Metric, ...] = ("error_rate", "latency_p95", "feedback", "composite_reward")


class KubernetesRoute(BaseModel):
    """The Gateway API HTTPRoute the Kubernetes router patches (deploy/helm/kaizen/templates/route.yaml)."""

    namespace: str | None = Field(
        None, description="Namespace of the HTTPRoute; the pod's own namespace when unset (in cluster)."
    )
    name: str = Field("kaizen-chat", description="HTTPRoute name (the chart's gateway.route.name).")
    champion_service: str = Field(
        "kaizen-gateway-champion", description="Service of the champion gateway (release-prefixed)."
    )
    canary_service: str = Field(
        "kaizen-gateway-canary", description="Service of the canary gateway (release-prefixed)."
    )
    port: int = Field(8000, ge=1, le=65535, description="Port of both gateway Services.")
    in_cluster: bool = Field(
        True, description="Load the in-cluster service-account config; off, the local kubeconfig."
    )


class RolloutOptions(BaseModel):
    """The canary controller: stage plan, analysis, and what happens to a second candidate."""

    stages: list[float] = Field(
        default_factory=lambda: [0.05, 0.25, 1.0],
        description="Canary weight of each stage, in order; the last must be 1.0 (full traffic).",
    )
    min_stage_duration_s: float = Field(
        900.0, ge=0, description="Shortest time a stage runs before it can advance."
    )
    min_traces: int = Field(
        200, ge=1, description="Traces per arm (canary and champion) before error rate and latency count."
    )
    min_feedback: int = Field(30, ge=1, description="Explicit feedback values per arm before they count.")
    min_labels: int = Field(50, ge=1, description="Composite rewards per arm before they count.")
    max_extensions: int = Field(
        8,
        ge=0,
        description=(
            "Times a stage is extended (by min_stage_duration_s) for too little data; after that the "
            "canary is rolled back, since missing data is never a pass."
        ),
    )
    required_metrics: list[Metric] = Field(
        default_factory=lambda: list(METRICS),
        description="Metrics that must have enough data on both arms before a stage can advance.",
    )
    stage_required_metrics: list[list[Metric]] | None = Field(
        None,
        description=(
            "Per stage, in the order of stages, the metrics that must have enough data there; unset, "
            "required_metrics at every stage. The last stage must require every metric of "
            "required_metrics. A small first stage sees few explicit ratings on light traffic, so it may "
            "check health and reward and leave feedback to the later stages (the last one compares the "
            "whole rollout). A metric that has enough data is analysed at every stage, required or not."
        ),
    )
    confidence: float = Field(
        0.95, gt=0.5, lt=1.0, description="Confidence at which a regression is called (alpha = 1 - it)."
    )
    error_rate_tolerance: float = Field(
        0.02, ge=0, description="Absolute error-rate increase tolerated (0.02 = two points)."
    )
    latency_p95_tolerance: float = Field(
        0.25, ge=0, description="Relative p95 latency increase tolerated (0.25 = 25% slower)."
    )
    feedback_tolerance: float = Field(0.05, ge=0, description="Drop of the mean feedback score tolerated.")
    reward_tolerance: float = Field(0.05, ge=0, description="Drop of the mean composite reward tolerated.")
    on_new_candidate: Literal["queue", "supersede"] = Field(
        "queue",
        description="A new eval.passed during a rollout waits its turn (queue) or aborts the current one.",
    )
    shadow: bool = Field(
        False,
        description="Shadow mode: the canary answers mirrored copies of requests; users see the champion.",
    )
    tick_s: float = Field(5.0, gt=0, description="How often the controller analyses the running stage.")
    router: Literal["redis", "kubernetes"] = Field(
        "redis",
        description="Where weights go: Redis (read by the local gateway) or a Kubernetes HTTPRoute.",
    )
    kubernetes: KubernetesRoute = Field(default_factory=KubernetesRoute)  # type: ignore[arg-type]
    batch_size: int = Field(
        500, ge=1, description="Most sample events (traces, labels, feedback) read at once."
    )
    window_max: int = Field(100_000, ge=100, description="Most samples kept per metric, arm and stage.")

    @field_validator("stages")
    @classmethod
    def _plan(cls, stages: list[float]) -> list[float]:
        if not stages:
            raise ValueError("rollout stages must name at least one weight, e.g. [0.05, 0.25, 1.0]")
        if any(not 0.0 < weight <= 1.0 for weight in stages):
            raise ValueError(f"every rollout stage weight must be in (0, 1]; got {stages}")
        if any(later <= earlier for earlier, later in itertools.pairwise(stages)):
            raise ValueError(f"rollout stage weights must increase; got {stages}")
        if stages[-1] != 1.0:
            raise ValueError(f"the last rollout stage must be 1.0 (full traffic); got {stages[-1]}")
        return stages

    @model_validator(mode="after")
    def _stage_requirements(self) -> RolloutOptions:
        per_stage = self.stage_required_metrics
        if per_stage is None:
            return self
        if len(per_stage) != len(self.stages):
            raise ValueError(
                f"stage_required_metrics names {len(per_stage)} stages, the plan {self.stages} has "
                f"{len(self.stages)}: give one list of metrics per stage"
            )
        skipped = [m for m in self.required_metrics if m not in per_stage[-1]]
        if skipped:
            raise ValueError(
                f"the last stage must require every metric of required_metrics; it leaves out {skipped}"
            )
        return self

    def required_at(self, stage: int) -> list[Metric]:
        """The metrics that must have enough data on both arms before ``stage`` (an index) can pass."""
        if self.stage_required_metrics is None:
            return self.required_metrics
        return self.stage_required_metrics[min(stage, len(self.stage_required_metrics) - 1)]


class GatewayOptions(BaseModel):
    """The OpenAI-compatible serving gateway."""

    host: str = Field("127.0.0.1", description="Address the gateway binds (0.0.0.0 in containers).")
    port: int = Field(8000, ge=0, le=65535, description="HTTP port of /v1/chat/completions.")
    base_model: str = Field(
        "smollm2-135m-instruct",
        description=(
            "Base model spec (shared.models): serves as champion, labelled version 'base', while no "
            "version holds the champion alias; adapters of registered versions apply to it."
        ),
    )
    served_model_name: str | None = Field(
        None, description="Model name /v1/models lists; the registered model name when unset."
    )
    max_adapters: int = Field(
        4, ge=1, description="LoRA adapters kept loaded at once (least recently used go)."
    )
    max_new_tokens: int = Field(256, ge=1, description="Default and upper bound of max_tokens.")
    max_batch_size: int = Field(
        8, ge=1, description="Most completions with the same decoding settings generated as one batch."
    )
    precision: Precision = Field(
        "float32",
        description=(
            "Weights of the served model: float32, bfloat16, or auto (bfloat16 on a CPU with native "
            "bfloat16, AVX512-BF16 or AMX, where generation is about 1.6x as fast; float32 elsewhere). "
            "Give the evaluator the same, so its gate sees what the users will get."
        ),
    )
    batch_wait_ms: float = Field(
        0.0,
        ge=0,
        description="How long the first request of a batch waits for others to join. 0: a batch starts at "
        "once with what is waiting, and the requests that arrive while it generates form the next one.",
    )
    direct_ingress: bool = Field(
        True,
        description="The replica itself answers on host:port (Ray Serve direct ingress), without the hop "
        "through Serve's HTTP proxy, which then listens on a spare port. With several replicas, replica "
        "i listens on port + i.",
    )
    routing_refresh_s: float = Field(
        0.25, gt=0, description="How often the gateway re-reads the weights and aliases from Redis."
    )
    ingest_url: str | None = Field(
        "http://127.0.0.1:4318",
        description="Ingest service base URL; every completion's trace goes to <url>/v1/traces. None: off.",
    )
    ingest_public_key: str = Field("pk-kaizen-dev", description="Public half of the ingest API key.")
    ingest_secret_key: SecretStr = Field(
        SecretStr(DEV_PLACEHOLDER_SECRET), description="Secret half of the ingest API key."
    )
    trace_export_interval_ms: int = Field(
        500, ge=10, description="Longest a finished completion's trace waits before it is exported."
    )
    num_cpus: float = Field(1.0, gt=0, description="CPUs reserved for the Ray Serve replica.")
    niceness: int = Field(
        0,
        ge=0,
        le=19,
        description=(
            "Niceness a replica lowers its priority to once its model is loaded (it loads at the "
            "gateway process's own). 0 beside nothing else. On a host shared with the trainer or the "
            "evaluator, a few points let those take a core while the replicas share what is left: "
            "answers slow down a little, training does not stall behind traffic. Ray's own default "
            "for its workers (15) starves the replicas of a busy host until requests time out."
        ),
    )
    replicas: int = Field(1, ge=1, description="Ray Serve replicas of the gateway.")
    max_ongoing_requests: int = Field(64, ge=1, description="Requests one replica takes at once.")


class RolloutSettings(KaizenSettings):
    """The rollout service's settings: the shared ones plus ``rollout`` and ``gateway``."""

    rollout: RolloutOptions = Field(default_factory=RolloutOptions)  # type: ignore[arg-type]
    gateway: GatewayOptions = Field(default_factory=GatewayOptions)  # type: ignore[arg-type]
    serve_alias: Literal["champion", "challenger"] | None = Field(
        None,
        description=(
            "KAIZEN_SERVE_ALIAS: on Kubernetes each gateway Deployment serves one alias and the HTTPRoute "
            "splits traffic; unset (local), one gateway splits by the weights in Redis."
        ),
    )

    @model_validator(mode="after")
    def _real_ingest_key(self) -> RolloutSettings:
        gateway = self.gateway
        if (
            self.environment != "development"
            and gateway.ingest_url
            and gateway.ingest_secret_key.get_secret_value() == DEV_PLACEHOLDER_SECRET
        ):
            raise SettingsError(
                "KAIZEN_GATEWAY__INGEST_SECRET_KEY is the development placeholder; set the ingest API key "
                "the gateway sends its traces with (or unset KAIZEN_GATEWAY__INGEST_URL) outside development"
            )
        return self
