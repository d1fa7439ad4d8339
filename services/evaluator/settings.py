"""The evaluator's settings: the shared pieces, the judge, and the evaluation gate.

Environment: ``KAIZEN_EVALUATOR__MIN_WIN_MARGIN``, ``KAIZEN_EVALUATOR__ABSOLUTE='{"faithfulness": 0.9}'``,
``KAIZEN_EVALUATOR__MANUAL_APPROVAL=true``, ``KAIZEN_JUDGE__BASE_URL``, ... (prefix ``KAIZEN_``, nested
with ``__``). The judge and the reward configuration are the labeler's (``KAIZEN_JUDGE__*``,
``KAIZEN_EVALUATOR__REWARD_CONFIG`` pointing at the same YAML as ``KAIZEN_LABELER__REWARD_CONFIG``), so a
candidate is scored exactly the way production traces are labeled.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, model_validator

from shared.models import Precision
from shared.rewards.judge import JudgeEndpoint
from shared.settings import DEV_PLACEHOLDER_SECRET, KaizenSettings, SettingsError


class EvaluationSettings(BaseModel):
    """What is evaluated, how the answers are generated, and the gate's thresholds."""

    # What is evaluated
    heldout_limit: int = Field(
        64, ge=0, description="Most prompts of the producing dataset's held-out (eval) split evaluated."
    )
    golden_limit: int | None = Field(
        None, ge=0, description="Most golden-set items evaluated (None: all of them)."
    )
    regression_limit: int | None = Field(
        None, ge=0, description="Most regression and safety items evaluated (None: all of them)."
    )
    golden_path: Path | None = Field(None, description="Golden set JSONL; the packaged set when unset.")
    regression_path: Path | None = Field(
        None, description="Regression and safety set JSONL; the packaged set when unset."
    )
    include_contexts: bool = Field(
        True,
        description=(
            "Put an item's retrieved contexts into the user message (as a RAG application does); off, the "
            "model sees the prompt alone."
        ),
    )
    # Models and decoding
    champion_fallback: str | None = Field(
        None,
        description=(
            "Model spec that stands in for the champion while no version holds the alias `champion` (the "
            "first turn of the loop). None: the candidate's own base model, i.e. the trainer's configured "
            "base model, so the first adapter must beat the model it was trained from."
        ),
    )
    device: str | None = Field(None, description="torch device for generation; None: cuda when available.")
    precision: Precision = Field(
        "float32",
        description=(
            "Weights of both models while they answer: float32, bfloat16, or auto (bfloat16 on a CPU with "
            "native bfloat16, float32 elsewhere). Set it as the gateway's, so the gate sees the numbers "
            "the users will get."
        ),
    )
    batch_size: int = Field(8, ge=1, description="Prompts generated together.")
    max_new_tokens: int = Field(256, ge=1, description="Longest generated answer, in tokens.")
    do_sample: bool = Field(
        False, description="Sample instead of greedy decoding (the same for both models)."
    )
    temperature: float = Field(0.7, gt=0, description="Sampling temperature when do_sample is on.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling when do_sample is on.")
    seed: int = Field(0, description="Seed of sampling and of the bootstrap.")
    # Scoring
    reward_config: Path | None = Field(
        None, description="Reward configuration YAML (the labeler's); the packaged default when unset."
    )
    judge_enabled: bool = Field(
        True,
        description=(
            "Use the LLM judge (faithfulness, relevancy, rubric, pairwise preference). Off: those are "
            "missing, the absolute gates on them are skipped and the win rate comes from composite rewards."
        ),
    )
    # The gate
    absolute: dict[str, float] = Field(
        default_factory=lambda: {"faithfulness": 0.85},
        description="Least mean of a candidate metric (a reward component or composite_reward).",
    )
    min_win_margin: float = Field(
        0.05,
        ge=-0.5,
        le=0.5,
        description="The candidate's win rate must be at least 0.5 plus this margin. A negative margin makes "
        "the gate a non-inferiority test (for metrics that cannot show what users prefer, e.g. without a "
        "judge; the canary then compares live feedback).",
    )
    tolerance: float = Field(
        0.05,
        ge=0,
        description=(
            "Default tolerance of the no-worse gates: a metric fails when the lower bound of the bootstrap "
            "interval of (candidate - champion) is below minus this."
        ),
    )
    tolerances: dict[str, float] = Field(
        default_factory=dict, description="Per-metric tolerances overriding `tolerance`."
    )
    compared_metrics: list[str] | None = Field(
        None,
        description="Metrics the no-worse gates compare; None: composite_reward and every reward component.",
    )
    rule_tolerance: float = Field(
        0.0, ge=0, le=1, description="How far the rule-check pass rate may fall below the champion's."
    )
    bootstrap_samples: int = Field(2000, ge=100, description="Bootstrap resamples of the paired differences.")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Confidence of the bootstrap interval.")
    # Approval and bookkeeping
    manual_approval: bool = Field(
        False,
        description=(
            "Hold a passed candidate until `python -m services.evaluator.approve <version>` (or `kaizen "
            "approve`); eval.passed and the alias challenger wait for it."
        ),
    )
    lease_s: float = Field(300.0, gt=0, description="A running evaluation holds its lease this long.")
    heartbeat_s: float = Field(30.0, gt=0, description="How often a running evaluation renews its lease.")
    poll_s: float = Field(1.0, gt=0, description="How long an idle worker waits for a job.")
    max_attempts: int = Field(3, ge=1, description="Attempts of an evaluation that fails with an error.")
    job_ttl_s: int = Field(30 * 24 * 3600, gt=0, description="How long an evaluation's record is kept.")

    @model_validator(mode="after")
    def _check(self) -> EvaluationSettings:
        bad = {name: value for name, value in self.tolerances.items() if value < 0}
        if bad:
            raise ValueError(f"tolerances must be >= 0: {bad}")
        return self

    def tolerance_of(self, metric: str) -> float:
        return self.tolerances.get(metric, self.tolerance)


class EvaluatorSettings(KaizenSettings):
    """Settings of ``python -m services.evaluator``."""

    evaluator: EvaluationSettings = Field(default_factory=EvaluationSettings)  # type: ignore[arg-type]
    judge: JudgeEndpoint = Field(default_factory=JudgeEndpoint)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _refuse_placeholder_judge_key(self) -> EvaluatorSettings:
        if (
            self.environment != "development"
            and self.evaluator.judge_enabled
            and self.judge.api_key.get_secret_value() == DEV_PLACEHOLDER_SECRET
        ):
            raise SettingsError(
                "KAIZEN_JUDGE__API_KEY is the development placeholder; set the judge endpoint's key "
                "outside development"
            )
        return self
