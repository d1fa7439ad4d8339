"""The simulated users' preference: how good an answer is to them, and the feedback they give for it.

The preference is configuration (``demo/workload/preference.yaml`` by default), and nothing in Kaizen's
services knows it: it turns into feedback here, and only the feedback reaches the loop.

Scoring is deterministic (the formulas are in the YAML file's header too):

- content words: lower-case ``\\w+`` tokens minus ``STOPWORDS``, as a set;
- ``support`` = share of the answer's content words that occur in the contexts;
- ``grounding`` = ``support * min(1, overlap / grounding.min_overlap)``, with ``overlap`` the number of
  the answer's content words found in the contexts (an answer must use a few facts of the contexts,
  so "Yes." or a one-word echo is not grounded);
- ``length``: 1 from ``min_words`` to ``max_words`` whitespace-separated words, rising linearly from 0
  below ``min_words``, falling linearly to 0 at ``zero_words``;
- ``preference`` = the weighted mean of grounding and length.

Reactions (``react``): a user perceives ``clamp01(preference + bias + noise)``; rates it explicitly with
probability ``rate_probability`` in the user's style (thumbs, stars or a 0..1 score) and gives each
implicit signal (copy, share, engage with a dwell time, retry, dismiss) with its probability when the
perceived quality is in the signal's range. ``feedback_value`` scores a set of reactions with the
labeler's own feedback formula (``shared.rewards.feedback_score``, default weights).
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from demo.workload.prompts import WorkloadError
from shared.events import FeedbackKind
from shared.rewards.config import FeedbackWeights
from shared.rewards.feedback import FeedbackSignal, feedback_score

DEFAULT_PREFERENCE = Path(__file__).with_name("preference.yaml")

_STOPWORDS_TEXT = """
    a about above after again all also am an and any are as at be because been before being below
    between both but by can could did do does doing don down during each few for from further had
    has have having he her here hers him his how i if in into is it its itself just me more most my
    no nor not now of off on once only or other our ours out over own s same she should so some
    such t than that the their theirs them then there these they this those through to too under
    until up very was we were what when where which while who whom why will with would you your
    yours yourself
"""
STOPWORDS: frozenset[str] = frozenset(_STOPWORDS_TEXT.split())

RatingStyle = Literal["thumbs", "stars", "score"]
Signal = Literal["copy", "share", "engage", "retry", "dismiss"]


# ---------------------------------------------------------------------------------------------
# Configuration


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GroundingConfig(_Strict):
    weight: float = Field(0.6, ge=0, description="Weight of grounding in the preference.")
    min_overlap: int = Field(3, ge=1, description="Context words an answer must use to be fully grounded.")


class LengthConfig(_Strict):
    weight: float = Field(0.4, ge=0, description="Weight of length in the preference.")
    min_words: int = Field(5, ge=0, description="Below this, the length score rises linearly from 0.")
    max_words: int = Field(60, ge=1, description="Up to this many words, length costs nothing.")
    zero_words: int = Field(120, ge=2, description="At this many words and beyond, the length score is 0.")

    @model_validator(mode="after")
    def _ordered(self) -> LengthConfig:
        if not self.min_words <= self.max_words < self.zero_words:
            raise ValueError(
                f"need min_words <= max_words < zero_words, got {self.min_words}, {self.max_words}, "
                f"{self.zero_words}"
            )
        return self


class SignalRule(_Strict):
    probability: float = Field(ge=0, le=1, description="Chance of the signal when the quality is in range.")
    min_quality: float = Field(0.0, ge=0, le=1, description="Lowest perceived quality that can give it.")
    max_quality: float = Field(1.0, ge=0, le=1, description="Highest perceived quality that can give it.")


class ReactionConfig(_Strict):
    noise_sd: float = Field(0.1, ge=0, description="Gaussian noise on each perception.")
    user_bias_sd: float = Field(0.05, ge=0, description="Spread of the users' lenient/strict biases.")
    rate_probability: float = Field(0.6, ge=0, le=1, description="Share of answers rated explicitly.")
    rating_styles: dict[RatingStyle, float] = Field(
        default_factory=lambda: {"thumbs": 0.5, "stars": 0.3, "score": 0.2},  # type: ignore[arg-type,dict-item]
        description="Weights of the users' rating styles.",
    )
    thumbs_up_at: float = Field(0.6, ge=0, le=1, description="Quality at or above which a thumb goes up.")
    signals: dict[Signal, SignalRule] = Field(default_factory=dict, description="Implicit signal rules.")
    reading_words_per_minute: float = Field(230, gt=0, description="Reading speed for engage dwell times.")

    @model_validator(mode="after")
    def _styles(self) -> ReactionConfig:
        if not self.rating_styles or any(weight < 0 for weight in self.rating_styles.values()):
            raise ValueError("rating_styles needs at least one style and no negative weight")
        if sum(self.rating_styles.values()) <= 0:
            raise ValueError("rating_styles weights must not all be 0")
        return self


class PreferenceConfig(_Strict):
    """The users' preference and reaction model, as read from ``preference.yaml``."""

    version: int = Field(ge=1)
    grounding: GroundingConfig = Field(default_factory=GroundingConfig)  # type: ignore[arg-type]
    length: LengthConfig = Field(default_factory=LengthConfig)  # type: ignore[arg-type]
    reactions: ReactionConfig = Field(default_factory=ReactionConfig)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _weights(self) -> PreferenceConfig:
        if self.grounding.weight + self.length.weight <= 0:
            raise ValueError("grounding.weight + length.weight must be > 0")
        return self


def load_preference(path: Path | None = None) -> PreferenceConfig:
    """A preference configuration file (the bundled one by default); errors name the file and field."""
    path = path or DEFAULT_PREFERENCE
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WorkloadError(f"preference file {path} cannot be read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise WorkloadError(f"preference file {path} is not valid YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise WorkloadError(f"preference file {path} must hold a mapping, not {type(document).__name__}")
    try:
        return PreferenceConfig.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'file'}: {error['msg']}"
            for error in exc.errors()
        )
        raise WorkloadError(f"preference file {path}: {problems}") from exc


# ---------------------------------------------------------------------------------------------
# Scoring


def content_words(text: str) -> set[str]:
    return {word for word in re.findall(r"\w+", text.lower()) if word not in STOPWORDS}


def word_count(text: str) -> int:
    return len(re.findall(r"\S+", text))


@dataclass(frozen=True)
class PreferenceScore:
    """How an answer fares under the preference, with the numbers behind it."""

    preference: float
    grounding: float
    length: float
    support: float
    overlap: int
    words: int


def length_score(words: int, config: LengthConfig) -> float:
    if words < config.min_words:
        return words / config.min_words if config.min_words else 1.0
    if words <= config.max_words:
        return 1.0
    if words >= config.zero_words:
        return 0.0
    return 1.0 - (words - config.max_words) / (config.zero_words - config.max_words)


def score_answer(answer: str, contexts: Sequence[str], config: PreferenceConfig) -> PreferenceScore:
    """The preference score of an answer given the contexts it was asked with."""
    answer_words = content_words(answer)
    context_words: set[str] = set().union(*(content_words(context) for context in contexts))
    overlap = len(answer_words & context_words)
    support = overlap / len(answer_words) if answer_words else 0.0
    grounding = support * min(1.0, overlap / config.grounding.min_overlap)
    words = word_count(answer)
    length = length_score(words, config.length)
    total = config.grounding.weight + config.length.weight
    preference = (config.grounding.weight * grounding + config.length.weight * length) / total
    return PreferenceScore(preference, grounding, length, support, overlap, words)


# ---------------------------------------------------------------------------------------------
# Reactions


@dataclass(frozen=True)
class UserProfile:
    """What makes one simulated user differ from another: leniency and rating style."""

    bias: float
    rating_style: RatingStyle

    @classmethod
    def draw(cls, rng: random.Random, config: ReactionConfig) -> UserProfile:
        styles = sorted(config.rating_styles)
        style = rng.choices(styles, weights=[config.rating_styles[name] for name in styles])[0]
        return cls(bias=rng.gauss(0.0, config.user_bias_sd), rating_style=style)


@dataclass(frozen=True)
class Reaction:
    """One piece of feedback a user gives: an explicit rating or an implicit signal."""

    kind: FeedbackKind
    value: float | None = None
    """Explicit ratings normalized to [0, 1]; None for implicit signals."""
    raw_value: float | str | None = None
    """The rating as the user gave it (``up``/``down``, 1..5 stars, a 0..1 score)."""
    dwell_ms: float | None = None


def react(
    score: PreferenceScore, profile: UserProfile, rng: random.Random, config: ReactionConfig
) -> list[Reaction]:
    """The feedback one user gives one answer (possibly none)."""
    quality = min(1.0, max(0.0, score.preference + profile.bias + rng.gauss(0.0, config.noise_sd)))
    reactions: list[Reaction] = []
    if rng.random() < config.rate_probability:
        reactions.append(_rating(quality, profile.rating_style, config))
    for kind in sorted(config.signals):
        rule = config.signals[kind]
        chance = rng.random()
        if rule.min_quality <= quality <= rule.max_quality and chance < rule.probability:
            dwell = None
            if kind == "engage":
                reading_ms = max(score.words, 1) / config.reading_words_per_minute * 60_000
                dwell = round(reading_ms * (0.5 + quality), 1)
            reactions.append(Reaction(kind=kind, dwell_ms=dwell))
    return reactions


def _rating(quality: float, style: RatingStyle, config: ReactionConfig) -> Reaction:
    if style == "thumbs":
        up = quality >= config.thumbs_up_at
        return Reaction(kind="thumbs", value=1.0 if up else 0.0, raw_value="up" if up else "down")
    if style == "stars":
        stars = 1 + round(4 * quality)
        return Reaction(kind="stars", value=(stars - 1) / 4, raw_value=stars)
    value = round(quality, 2)
    return Reaction(kind="score", value=value, raw_value=value)


def feedback_value(reactions: Sequence[Reaction], weights: FeedbackWeights | None = None) -> float | None:
    """The feedback score the labeler computes from these reactions (None: no usable feedback)."""
    signals = [
        FeedbackSignal(feedback_id=uuid.uuid4().hex, kind=reaction.kind, value=reaction.value)
        for reaction in reactions
    ]
    return feedback_score(signals, weights or FeedbackWeights())


def expected_feedback(
    score: PreferenceScore,
    config: ReactionConfig,
    *,
    users: int = 32,
    seed: int = 0,
    key: str = "",
    weights: FeedbackWeights | None = None,
) -> float | None:
    """The mean feedback score ``users`` simulated users would give an answer (seeded; None if none react).

    Used on held-out answers, which no real user of the demo sees: it turns a preference score into the
    feedback score the workload's users would give it on average, without the noise of one user.
    """
    values: list[float] = []
    for index in range(users):
        rng = random.Random(f"{seed}:{key}:{index}")
        profile = UserProfile.draw(rng, config)
        value = feedback_value(react(score, profile, rng, config), weights)
        if value is not None:
            values.append(value)
    return sum(values) / len(values) if values else None
