"""The loop configuration: one YAML file says how big every part of a demo run is.

``demo/config/demo.yaml`` (SmolLM2, sized to close the loop in 20 minutes on 2 cores) and
``demo/config/reduced.yaml`` (the tiny random llama, tiny counts, short stages: the loop test). The
``settings`` section is the services' own settings, nested as they are in ``KAIZEN_*`` (``curator:
{sample_count_threshold: 40}`` becomes ``KAIZEN_CURATOR__SAMPLE_COUNT_THRESHOLD=40``); every process of
the loop gets the same environment, plus the run's isolation (project, topic prefix, namespace, Redis
prefix) and its ports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from demo.workload.prompts import WorkloadError

CONFIG_DIR = Path(__file__).resolve().parent / "config"
DEMO_CONFIG = CONFIG_DIR / "demo.yaml"
REDUCED_CONFIG = CONFIG_DIR / "reduced.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkloadPlan(_Strict):
    """The simulated users' traffic, played in rounds while the loop runs."""

    users: int = Field(20, ge=1, description="Simulated users per round.")
    requests_per_round: int = Field(40, ge=1, description="Chat requests per round.")
    concurrency: int = Field(2, ge=1, description="Requests in flight at most.")
    max_tokens: int = Field(96, ge=1, description="Completion token limit per request.")
    temperature: float = Field(0.7, ge=0, le=2, description="Sampling temperature of the served model.")
    consent_share: float = Field(0.9, ge=0, le=1, description="Share of users who consent to training.")
    max_session_turns: int = Field(
        3, ge=1, description="A session lasts 1..this many turns (canary users are pinned by session)."
    )
    prompt_pool: int | None = Field(
        None, ge=1, description="Ask only this many train prompts (repeats make preference pairs); None: all."
    )
    pause_s: float = Field(0.5, ge=0, description="Pause between rounds.")
    request_timeout_s: float = Field(120.0, gt=0, description="Timeout of one chat request.")


class Comparison(_Strict):
    """The before/after on held-out prompts at the end of the run."""

    held_out_prompts: int = Field(
        32, ge=2, description="Held-out prompts answered by the base and the champion."
    )
    max_new_tokens: int = Field(96, ge=1, description="Longest answer in the comparison.")
    users: int = Field(32, ge=1, description="Simulated users behind each expected feedback score.")
    concurrency: int = Field(
        8, ge=1, description="Held-out requests in flight at once (the gateway batches them together)."
    )


class LoopConfig(_Strict):
    """One demo run: how long, how much traffic, and the services' settings."""

    name: str = Field(description="What this configuration is for.")
    time_limit_s: float = Field(1200.0, gt=0, description="The run stops here whatever stage it reached.")
    base_model: str = Field("smollm2-135m-instruct", description="Base model spec (shared.models).")
    seed: int = Field(0, description="Seeds the workload.")
    stop_on_failure: bool = Field(
        True,
        description="End the run at the first candidate that fails training, evaluation or its rollout, "
        "saying why, instead of sending traffic until the time limit for a dataset the curator's "
        "min_interval_s may not allow before then.",
    )
    workload: WorkloadPlan = Field(default_factory=WorkloadPlan)  # type: ignore[arg-type]
    comparison: Comparison = Field(default_factory=Comparison)  # type: ignore[arg-type]
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="The services' settings, nested as in KAIZEN_* (groups, then fields).",
    )
    threads: dict[str, int] = Field(
        default_factory=dict,
        description="Torch/OpenMP threads (OMP_NUM_THREADS) per process of the loop by name, 'default' for "
        "the others; unset: the libraries' own default (every core). Every process shares the machine's "
        "cores, and threads that outnumber the cores spin against each other.",
    )

    def threads_of(self, process: str) -> int | None:
        """The thread count of one process of the loop (None: the libraries' default)."""
        return self.threads.get(process, self.threads.get("default"))

    def service_env(self) -> dict[str, str]:
        """``settings`` as KAIZEN_* variables, with the base model wherever a service reads it."""
        env = flatten_settings(self.settings)
        env.setdefault("KAIZEN_TRAINING__BASE_MODEL", self.base_model)
        env.setdefault("KAIZEN_GATEWAY__BASE_MODEL", self.base_model)
        return env


def flatten_settings(settings: dict[str, Any], prefix: str = "KAIZEN_") -> dict[str, str]:
    """``{group: {field: value}}`` to ``KAIZEN_GROUP__FIELD``; lists and dicts as JSON, booleans lower."""
    env: dict[str, str] = {}
    for key, value in settings.items():
        name = f"{prefix}{key.upper()}"
        if isinstance(value, dict) and prefix == "KAIZEN_":
            env.update(flatten_settings(value, f"{name}__"))
        else:
            env[name] = encode_value(value)
    return env


def encode_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def load_config(path: Path | None = None) -> LoopConfig:
    """Read and validate a loop configuration (default: ``demo/config/demo.yaml``)."""
    path = path or DEMO_CONFIG
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise WorkloadError(f"cannot read the loop configuration {path}: {error}") from error
    if not isinstance(document, dict):
        raise WorkloadError(f"{path}: a loop configuration is a mapping")
    return LoopConfig.model_validate(document)
