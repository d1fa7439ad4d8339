"""The labeler's settings: the shared pieces plus the judge, the reward configuration and the curator.

Environment: ``KAIZEN_JUDGE__BASE_URL``, ``KAIZEN_JUDGE__API_KEY``, ``KAIZEN_LABELER__REWARD_CONFIG``,
``KAIZEN_CURATOR__SAMPLE_COUNT_THRESHOLD``, ... (prefix ``KAIZEN_``, nested with ``__``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from shared.rewards.embeddings import Precision
from shared.rewards.judge import JudgeEndpoint
from shared.settings import DEV_PLACEHOLDER_SECRET, KaizenSettings, SettingsError

Role = Literal["labeler", "curator"]
ROLES: tuple[Role, ...] = ("labeler", "curator")


class LabelingSettings(BaseModel):
    roles: list[Role] = Field(
        default_factory=lambda: list(ROLES),
        description="What this process runs: the labeler, the curator, or both (the default).",
    )
    reward_config: Path | None = Field(
        None, description="Reward configuration YAML; the packaged shared/rewards/default.yaml when unset."
    )
    judge_enabled: bool = Field(
        True, description="Use the LLM judge; off, the LLM components are recorded missing."
    )
    batch_size: int = Field(64, ge=1, description="Most trace.ingested events labeled together.")
    batch_timeout_ms: int = Field(200, ge=1, description="Longest wait to fill a batch.")
    state_ttl_s: int = Field(
        30 * 24 * 3600,
        ge=60,
        description="How long the join state of a trace (scores, feedback) is kept in Redis; older late "
        "feedback falls back to the labels table.",
    )
    embedding_device: str = Field("cpu", description="torch device of the MiniLM embedder.")
    embedding_precision: Precision = Field(
        "auto",
        description="MiniLM precision: float32, bfloat16, or auto (bfloat16 where the CPU has it natively).",
    )


class CuratorSettings(BaseModel):
    """Triggers and dataset-building rules. Their hash is recorded with every dataset."""

    # Triggers
    sample_count_threshold: int = Field(500, ge=1, description="New labeled traces that trigger a dataset.")
    max_interval_s: float = Field(
        24 * 3600.0, gt=0, description="Longest time between datasets while new labels keep coming."
    )
    min_new_samples: int = Field(
        20, ge=1, description="Fewest new labeled traces a time, reward or error trigger builds from."
    )
    reward_window: int = Field(200, ge=2, description="Labels of the champion in each live-reward window.")
    reward_drop_threshold: float = Field(
        0.1,
        gt=0,
        description="Drop of the champion's mean reward (previous window minus latest) that triggers.",
    )
    error_window: int = Field(200, ge=2, description="Traces in the error-rate window.")
    error_rate_threshold: float = Field(
        0.2, gt=0, le=1, description="Share of error traces in the window that counts as a spike."
    )
    error_rate_factor: float = Field(
        2.0, ge=1, description="...and it must be this many times the previous window's rate."
    )
    min_interval_s: float = Field(
        0.0,
        ge=0,
        description="Cooldown: least time after a project's last dataset before any trigger fires again, so "
        "one candidate can finish training, evaluation and its canary before the next one is built "
        "(labels keep being counted meanwhile).",
    )
    tick_s: float = Field(15.0, gt=0, description="How often the curator checks time triggers and builds.")
    label_settle_s: float = Field(
        10.0,
        ge=0,
        description="A dataset takes the labels stamped up to this long before its build starts; newer ones "
        "(whose commit may still be in flight) wait for the next dataset.",
    )
    champion_cache_s: float = Field(60.0, ge=0, description="How long the champion's version is cached.")
    # Dataset
    dpo_margin: float = Field(0.2, ge=0, le=1, description="Least composite margin of a DPO pair.")
    near_duplicate_similarity: float = Field(
        0.92, gt=0, le=1, description="Prompt embedding cosine above which two prompts are the same prompt."
    )
    max_pairs_per_prompt: int = Field(4, ge=1, description="Most DPO pairs built from one prompt group.")
    sft_min_reward: float = Field(0.7, ge=0, le=1, description="Least composite of an SFT example.")
    min_reward: float = Field(
        0.0, ge=0, le=1, description="Least composite of any trace used as a chosen, SFT or GRPO item."
    )
    min_prompt_chars: int = Field(3, ge=0, description="Shortest prompt kept.")
    max_prompt_chars: int = Field(8000, ge=1, description="Longest prompt kept.")
    min_response_chars: int = Field(1, ge=0, description="Shortest response kept.")
    max_response_chars: int = Field(8000, ge=1, description="Longest response kept.")
    decontamination_ngram: int = Field(8, ge=3, description="n of the n-gram overlap with evaluation sets.")
    eval_fraction: float = Field(0.1, ge=0, lt=1, description="Share of prompts held out (by prompt hash).")
    replay_ratio: float = Field(
        0.2, ge=0, lt=1, description="Share of the training items replayed from earlier datasets."
    )
    min_dpo_pairs: int = Field(16, ge=1, description="Fewest training pairs for which DPO is suggested.")
    min_grpo_prompts: int = Field(32, ge=1, description="Fewest prompts for which GRPO is suggested.")

    @property
    def config_hash(self) -> str:
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class LabelerSettings(KaizenSettings):
    """Settings of ``python -m services.labeler`` (labeler and curator)."""

    labeler: LabelingSettings = Field(default_factory=LabelingSettings)  # type: ignore[arg-type]
    judge: JudgeEndpoint = Field(default_factory=JudgeEndpoint)  # type: ignore[arg-type]
    curator: CuratorSettings = Field(default_factory=CuratorSettings)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _refuse_placeholder_judge_key(self) -> LabelerSettings:
        if (
            self.environment != "development"
            and self.labeler.judge_enabled
            and self.judge.api_key.get_secret_value() == DEV_PLACEHOLDER_SECRET
        ):
            raise SettingsError(
                "KAIZEN_JUDGE__API_KEY is the development placeholder; set the judge endpoint's key "
                "outside development"
            )
        return self
