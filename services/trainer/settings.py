"""The trainer's settings: the shared pieces, the job runner's own, and the training defaults.

``KAIZEN_TRAINER__*`` configures the job runner (where jobs write, leases, attempts);
``KAIZEN_TRAINING__*`` sets the training defaults of every job (``services.trainer.config``), e.g.
``KAIZEN_TRAINING__BASE_MODEL=/models/my-llama`` or ``KAIZEN_TRAINING__DPO_LOSS_TYPE='["ipo"]'``;
``KAIZEN_KERNELS__BACKEND=grpc`` sends the loss math to the kernel service.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from services.trainer.config import TrainingConfig
from shared.settings import KaizenSettings


class JobRunnerSettings(BaseModel):
    work_dir: Path | None = Field(
        None, description="Where jobs keep their checkpoints and outputs; default <home>/trainer."
    )
    lease_s: float = Field(
        60.0,
        gt=0,
        description=(
            "A running job holds its lease this long between heartbeats; a worker that stops heartbeating "
            "(killed, its node lost) loses the job to the next worker after this."
        ),
    )
    heartbeat_s: float = Field(10.0, gt=0, description="How often a running job renews its lease.")
    poll_s: float = Field(
        1.0, gt=0, description="How long an idle worker waits for a job before looking again."
    )
    max_attempts: int = Field(
        3, ge=1, description="Attempts of a job that failed for a passing reason before it is given up."
    )
    checkpoint_uri: str | None = Field(
        None,
        description=(
            "s3://bucket/prefix to copy every checkpoint to, so a job resumed on another node (a retried "
            "Kubernetes Job, a reclaimed spot instance) finds it; None keeps checkpoints on local disk only."
        ),
    )
    judge: dict[str, Any] | None = Field(
        None,
        description=(
            "The LLM judge for GRPO reward components that need one (ragas, rubric), as the labeler's "
            "JudgeEndpoint fields: base_url, model, api_key, ... None: datasets asking for them fail."
        ),
    )
    reward_config: Path | None = Field(
        None, description="The reward configuration YAML; default: the packaged shared/rewards/default.yaml."
    )
    launcher: Literal["worker", "kubernetes"] = Field(
        "worker",
        description=(
            "Where recorded jobs run: worker (python -m services.trainer.worker claims them) or kubernetes "
            "(the consumer also creates a Job per dataset from the chart's template; see launcher.py)."
        ),
    )
    job_template_dir: Path = Field(
        Path("/etc/kaizen/training-job"),
        description="Where the kubernetes launcher reads the Job template (job.yaml, podgroup.yaml).",
    )
    namespace: str | None = Field(
        None, description="Namespace of the training Jobs; default: the service account's own."
    )
    job_ttl_s: int = Field(
        30 * 24 * 3600, gt=0, description="How long a job's record is kept in Redis after it was created."
    )


class TrainerSettings(KaizenSettings):
    """Settings of the trainer's consumer (``python -m services.trainer``) and worker."""

    trainer: JobRunnerSettings = Field(default_factory=JobRunnerSettings)  # type: ignore[arg-type]
    training: TrainingConfig = Field(default_factory=TrainingConfig)

    @model_validator(mode="after")
    def _work_dir(self) -> TrainerSettings:
        if self.trainer.work_dir is None:
            self.trainer.work_dir = self.home / "trainer"
        self.trainer.work_dir = self.trainer.work_dir.expanduser().resolve()
        return self

    @property
    def work_dir(self) -> Path:
        assert self.trainer.work_dir is not None
        return self.trainer.work_dir
