"""The reward configuration: component weights, gates, the judge rubric and the feedback weights.

It lives in a versioned YAML file (``shared/rewards/default.yaml`` unless a deployment points
``KAIZEN_LABELER__REWARD_CONFIG`` elsewhere). Its hash is recorded with every label, so a reward can
always be traced back to the configuration that produced it. The hash is taken over the parsed,
canonical configuration, so comments and formatting do not change it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.errors import KaizenError

DEFAULT_REWARD_CONFIG = Path(__file__).with_name("default.yaml")

FEEDBACK = "feedback"
FAITHFULNESS = "faithfulness"
ANSWER_RELEVANCY = "answer_relevancy"
CONTEXT_SIMILARITY = "context_similarity"
REFERENCE_SIMILARITY = "reference_similarity"
STRING_SIMILARITY = "string_similarity"
ROUGE_L = "rouge_l"

RAGAS_COMPONENTS: tuple[str, ...] = (FAITHFULNESS, ANSWER_RELEVANCY)
"""Components computed by ragas through the LLM judge."""
EMBEDDING_COMPONENTS: tuple[str, ...] = (CONTEXT_SIMILARITY, REFERENCE_SIMILARITY)
"""Components computed from MiniLM sentence embeddings."""
STRING_COMPONENTS: tuple[str, ...] = (STRING_SIMILARITY, ROUGE_L)
"""Components computed from the strings alone (they need a reference answer)."""
IN_PROCESS_COMPONENTS: tuple[str, ...] = EMBEDDING_COMPONENTS + STRING_COMPONENTS
"""Components computed without the judge or a user: what GRPO can score its completions with."""


class RewardError(KaizenError):
    """A reward could not be configured or computed."""


class Gate(BaseModel):
    """A floor on one component: below it, the composite reward is zero."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    component: str = Field(description="Component the gate watches, e.g. safety or faithfulness.")
    min: float = Field(ge=0.0, le=1.0, description="Floor; a present score below it zeroes the reward.")

    @property
    def name(self) -> str:
        return f"{self.component}<{self.min:g}"


class Rubric(BaseModel):
    """The pointwise LLM-judge rubric: each criterion becomes a component."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scale: int = Field(5, ge=2, le=10, description="Scores are integers 1..scale.")
    criteria: dict[str, str] = Field(
        default_factory=dict, description="Criterion name (the component name) to what the judge checks."
    )


class FeedbackWeights(BaseModel):
    """How user feedback becomes the ``feedback`` component."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    copy_: float = Field(0.8, alias="copy", description="Weight of a copy of the answer.")
    share: float = Field(0.9, description="Weight of a share of the answer.")
    engage: float = Field(0.6, description="Weight of engagement (dwell, follow-up).")
    retry: float = Field(-0.3, description="Weight of a retry (the user asked again).")
    dismiss: float = Field(-0.5, description="Weight of a dismissal.")
    explicit_rating_weight: float = Field(0.5, description="Weight of the mean explicit rating in [0, 1].")

    def implicit(self, kind: str) -> float | None:
        """The weight of an implicit signal kind, or None when the kind is not an implicit signal."""
        weights = {
            "copy": self.copy_,
            "share": self.share,
            "engage": self.engage,
            "retry": self.retry,
            "dismiss": self.dismiss,
        }
        return weights.get(kind)


class RagasOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    answer_relevancy_strictness: int = Field(
        3, ge=1, le=10, description="Questions generated per answer for ragas answer relevancy."
    )


class RewardConfig(BaseModel):
    """Everything that decides a reward. Frozen: one configuration, one hash."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    version: int = Field(ge=1, description="Bumped on every change of the file.")
    weights: dict[str, float] = Field(description="Component name to its weight in the composite.")
    gates: tuple[Gate, ...] = Field(default=(), description="Floors that zero the composite.")
    rubric: Rubric = Field(default_factory=Rubric)  # type: ignore[arg-type]
    feedback: FeedbackWeights = Field(default_factory=FeedbackWeights)  # type: ignore[arg-type]
    ragas: RagasOptions = Field(default_factory=RagasOptions)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _check(self) -> RewardConfig:
        negative = [name for name, weight in self.weights.items() if weight < 0]
        if negative:
            raise ValueError(f"component weights must be >= 0: {negative}")
        if not any(weight > 0 for weight in self.weights.values()):
            raise ValueError("at least one component needs a positive weight")
        known = set(self.component_names)
        unknown_gates = [gate.component for gate in self.gates if gate.component not in known]
        if unknown_gates:
            raise ValueError(f"gates on components that are not computed: {unknown_gates}")
        return self

    @property
    def component_names(self) -> tuple[str, ...]:
        """Every component a label records, in a fixed order (weighted ones, then rubric criteria)."""
        names = list(self.weights)
        names += [name for name in self.rubric.criteria if name not in self.weights]
        return tuple(names)

    @property
    def rubric_components(self) -> tuple[str, ...]:
        return tuple(self.rubric.criteria)

    def wants(self, component: str) -> bool:
        """Whether a component is computed at all (weighted, gated or a rubric criterion)."""
        return component in self.component_names

    @property
    def needs_judge(self) -> bool:
        """Whether any component needs the LLM judge."""
        return bool(self.rubric.criteria) or any(self.wants(name) for name in RAGAS_COMPONENTS)

    def canonical(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    @property
    def config_hash(self) -> str:
        """sha256 (16 hex chars) of the canonical configuration: recorded with every label."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_reward_config(path: Path | str | None = None) -> RewardConfig:
    """Read and validate a reward configuration file (the packaged default when ``path`` is None)."""
    source = Path(path) if path is not None else DEFAULT_REWARD_CONFIG
    try:
        raw = yaml.safe_load(source.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise RewardError(f"cannot read the reward configuration {source}: {exc}") from exc
    try:
        return RewardConfig.model_validate(raw)
    except ValidationError as exc:
        raise RewardError(f"invalid reward configuration {source}: {exc}") from exc
