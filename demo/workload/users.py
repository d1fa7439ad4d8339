"""Simulated production users: they ask the bundled prompts through an OpenAI-compatible endpoint and react.

``run_workload`` plays ``requests`` turns by ``users`` users (at most ``concurrency`` requests in flight),
all of it decided up front from ``seed``: which user asks which prompt in which session, each user's
consent (a ``consent_share`` of them), leniency and rating style. Each turn:

1. asks with the official ``openai`` client: the system message carries the retrieved passages
   (``prompts.chat_messages``); the user id goes in the ``user`` field and ``X-Kaizen-User``, the
   session in ``X-Kaizen-Session``, the consent in ``X-Kaizen-Consent`` (``true``/``false``), and
   ``metadata`` repeats them with the prompt id, the contexts (``kaizen_contexts``, a JSON list) and
   the reference answer (``kaizen_reference``) so the gateway can put them on the trace;
2. reads what the gateway says about the answer: the trace id from the ``X-Kaizen-Trace-Id`` header,
   else the response ``id`` (without a ``chatcmpl-`` prefix); the model version from the
   ``X-Kaizen-Model-Version`` header, else the ``system_fingerprint`` (``kaizen-<version>``), else the
   part of the ``model`` field after ``:`` (``<name>:<version>``), else the whole ``model`` field;
3. scores the answer under the preference and reacts (``preference.react``): explicit ratings and
   implicit signals, each sent as a ``FeedbackRecord`` for that trace id with ``KaizenClient`` (over
   HTTP to ingest, or straight to Kafka). A retry makes the user ask the same prompt again as their
   next turn, in the same session.

The total number of chat requests is exactly ``requests``. The result (``WorkloadReport``) keeps every
turn and summarizes them per model version: mean preference, grounding, length and feedback score.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import fmean

import openai
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionMessageParam,
    ChatCompletionSystemMessageParam,
    ChatCompletionUserMessageParam,
)
from pydantic import BaseModel, ConfigDict, Field

from demo.workload.preference import (
    PreferenceConfig,
    PreferenceScore,
    Reaction,
    UserProfile,
    feedback_value,
    react,
    score_answer,
)
from demo.workload.prompts import Prompt, Split, WorkloadError, chat_messages, select
from shared.client import ClientError, KaizenClient
from shared.events import FeedbackRecord

TRACE_HEADER = "x-kaizen-trace-id"
VERSION_HEADER = "x-kaizen-model-version"
SESSION_HEADER = "x-kaizen-session"
USER_HEADER = "x-kaizen-user"
CONSENT_HEADER = "x-kaizen-consent"
UNKNOWN_VERSION = "unknown"


class WorkloadConfig(BaseModel):
    """How much traffic, from whom, to where. The demo's configuration sets these."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field("http://127.0.0.1:8000/v1", description="OpenAI-compatible endpoint (with /v1).")
    api_key: str = Field("kaizen-demo", description="Bearer token for the endpoint.")
    model: str = Field("kaizen", description="Model name sent in requests.")
    project_id: str = Field("demo", min_length=1, description="Project the feedback belongs to.")
    users: int = Field(20, ge=1, description="Number of simulated users.")
    requests: int = Field(200, ge=1, description="Chat requests in total, retries included.")
    concurrency: int = Field(4, ge=1, description="Requests in flight at most.")
    seed: int = Field(0, description="Seeds every choice: plan, users, reactions.")
    consent_share: float = Field(0.8, ge=0, le=1, description="Share of users who consent to training.")
    split: Split = Field("train", description="Which prompts users ask; held-out ones are for evaluation.")
    max_tokens: int | None = Field(256, ge=1, description="Completion token limit per request.")
    temperature: float = Field(0.7, ge=0, le=2, description="Sampling temperature.")
    timeout_s: float = Field(120.0, gt=0, description="Timeout of one chat request.")
    max_session_turns: int = Field(3, ge=1, description="A session lasts 1..this many planned turns.")
    think_time_s: float = Field(0.0, ge=0, description="Pause before each turn: uniform in 0..this.")
    run_tag: str = Field(
        default_factory=lambda: uuid.uuid4().hex[:8], description="Makes session ids unique per run."
    )


@dataclass(frozen=True)
class PlannedTurn:
    index: int
    user_id: str
    session_number: int
    prompt: Prompt


@dataclass
class SimulatedUser:
    user_id: str
    consent: bool
    profile: UserProfile
    turns: list[PlannedTurn] = field(default_factory=list)


@dataclass
class Turn:
    """One chat request and what came of it."""

    index: int
    user_id: str
    session_id: str
    prompt_id: str
    consent: bool
    retry: bool
    """The user asked this prompt again after retrying the previous answer."""
    trace_id: str | None = None
    model_version: str | None = None
    answer: str | None = None
    latency_ms: float | None = None
    score: PreferenceScore | None = None
    reactions: list[Reaction] = field(default_factory=list)
    feedback_score: float | None = None
    """The labeler's feedback score of this turn's reactions (None: no usable feedback)."""
    feedback_sent: int = 0
    feedback_errors: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class VersionStats:
    """What the users saw of one model version."""

    model_version: str
    answered: int
    mean_preference: float
    mean_grounding: float
    mean_words: float
    mean_feedback: float | None
    """Mean feedback score over answers that got usable feedback."""
    rated: int
    """Answers with usable feedback."""


@dataclass
class WorkloadReport:
    turns: list[Turn]
    elapsed_s: float

    @property
    def answered(self) -> list[Turn]:
        return [turn for turn in self.turns if turn.answer is not None and turn.score is not None]

    @property
    def errors(self) -> list[str]:
        return [turn.error for turn in self.turns if turn.error is not None]

    @property
    def feedback_sent(self) -> int:
        return sum(turn.feedback_sent for turn in self.turns)

    @property
    def feedback_errors(self) -> list[str]:
        return [error for turn in self.turns for error in turn.feedback_errors]

    def by_version(self) -> dict[str, VersionStats]:
        """Per model version (as the gateway named it): preference, grounding, length, feedback."""
        groups: dict[str, list[Turn]] = {}
        for turn in self.answered:
            groups.setdefault(turn.model_version or UNKNOWN_VERSION, []).append(turn)
        stats: dict[str, VersionStats] = {}
        for version, turns in sorted(groups.items()):
            scores = [turn.score for turn in turns if turn.score is not None]
            feedback = [turn.feedback_score for turn in turns if turn.feedback_score is not None]
            stats[version] = VersionStats(
                model_version=version,
                answered=len(turns),
                mean_preference=fmean(score.preference for score in scores),
                mean_grounding=fmean(score.grounding for score in scores),
                mean_words=fmean(score.words for score in scores),
                mean_feedback=fmean(feedback) if feedback else None,
                rated=len(feedback),
            )
        return stats


# ---------------------------------------------------------------------------------------------
# The plan: everything random is decided here, from the seed.


def plan_users(
    config: WorkloadConfig, prompts: Sequence[Prompt], preference: PreferenceConfig
) -> list[SimulatedUser]:
    """The users, their consent and profile, and the turns each will play, from ``config.seed``."""
    pool = select(prompts, config.split)
    users: list[SimulatedUser] = []
    for number in range(config.users):
        rng = random.Random(f"{config.seed}:user:{number}")
        consent = rng.random() < config.consent_share
        profile = UserProfile.draw(rng, preference.reactions)
        users.append(SimulatedUser(f"user-{number:04d}", consent, profile))
    rng = random.Random(f"{config.seed}:plan")
    session_left = [0] * len(users)
    session_number = [0] * len(users)
    for index in range(config.requests):
        number = rng.randrange(len(users))
        if session_left[number] == 0:
            session_number[number] += 1
            session_left[number] = rng.randint(1, config.max_session_turns)
        session_left[number] -= 1
        users[number].turns.append(
            PlannedTurn(index, users[number].user_id, session_number[number], rng.choice(pool))
        )
    return users


# ---------------------------------------------------------------------------------------------
# Reading the gateway's answer


def trace_id_of(headers: Mapping[str, str], completion: ChatCompletion) -> str | None:
    """The trace id to send feedback for: the ``X-Kaizen-Trace-Id`` header, else the response id."""
    header = headers.get(TRACE_HEADER)
    if header:
        return header
    identifier = completion.id or ""
    identifier = identifier.removeprefix("chatcmpl-")
    return identifier or None


def model_version_of(headers: Mapping[str, str], completion: ChatCompletion) -> str:
    """The version that answered: header, else ``system_fingerprint``, else the ``model`` field."""
    header = headers.get(VERSION_HEADER)
    if header:
        return header
    fingerprint = completion.system_fingerprint or ""
    if fingerprint.startswith("kaizen-") and len(fingerprint) > len("kaizen-"):
        return fingerprint.removeprefix("kaizen-")
    model = completion.model or ""
    if ":" in model:
        return model.rsplit(":", 1)[1]
    return model or UNKNOWN_VERSION


def openai_messages(prompt: Prompt) -> list[ChatCompletionMessageParam]:
    messages: list[ChatCompletionMessageParam] = []
    for message in chat_messages(prompt):
        if message["role"] == "system":
            messages.append(ChatCompletionSystemMessageParam(role="system", content=message["content"]))
        else:
            messages.append(ChatCompletionUserMessageParam(role="user", content=message["content"]))
    return messages


# ---------------------------------------------------------------------------------------------
# Running it


class _Run:
    def __init__(
        self,
        config: WorkloadConfig,
        preference: PreferenceConfig,
        client: openai.AsyncOpenAI,
        feedback: KaizenClient | None,
        on_turn: Callable[[Turn], None] | None,
    ) -> None:
        self.config = config
        self.preference = preference
        self.client = client
        self.feedback = feedback
        self.on_turn = on_turn
        self.slots = asyncio.Semaphore(config.concurrency)
        self.turns: list[Turn] = []

    async def play(self, user: SimulatedUser) -> None:
        # The previous turn and its prompt when the user retried it: the next turn asks it again.
        retried: tuple[Turn, Prompt] | None = None
        for planned in user.turns:
            if retried is not None:
                previous, prompt = retried
                session_id = previous.session_id
            else:
                prompt = planned.prompt
                session_id = f"{self.config.run_tag}-{user.user_id}-s{planned.session_number}"
            turn = Turn(
                index=planned.index,
                user_id=user.user_id,
                session_id=session_id,
                prompt_id=prompt.id,
                consent=user.consent,
                retry=retried is not None,
            )
            rng = random.Random(f"{self.config.seed}:turn:{planned.index}")
            if self.config.think_time_s:
                await asyncio.sleep(rng.uniform(0.0, self.config.think_time_s))
            await self.ask(turn, prompt)
            retried = None
            if turn.answer is not None and turn.score is not None:
                turn.reactions = react(turn.score, user.profile, rng, self.preference.reactions)
                turn.feedback_score = feedback_value(turn.reactions)
                await self.send_feedback(turn)
                if not turn.retry and any(reaction.kind == "retry" for reaction in turn.reactions):
                    retried = (turn, prompt)
            self.turns.append(turn)
            if self.on_turn is not None:
                self.on_turn(turn)

    async def ask(self, turn: Turn, prompt: Prompt) -> None:
        consent = "true" if turn.consent else "false"
        metadata = {
            "user_id": turn.user_id,
            "session_id": turn.session_id,
            "consent": consent,
            "prompt_id": prompt.id,
            "kaizen_contexts": json.dumps(list(prompt.contexts)),
        }
        if prompt.reference is not None:
            metadata["kaizen_reference"] = prompt.reference
        async with self.slots:
            started = time.perf_counter()
            try:
                raw = await self.client.chat.completions.with_raw_response.create(
                    model=self.config.model,
                    messages=openai_messages(prompt),
                    user=turn.user_id,
                    max_tokens=self.config.max_tokens if self.config.max_tokens is not None else openai.omit,
                    temperature=self.config.temperature,
                    metadata=metadata,
                    extra_headers={
                        SESSION_HEADER: turn.session_id,
                        USER_HEADER: turn.user_id,
                        CONSENT_HEADER: consent,
                    },
                )
                completion = raw.parse()
            except openai.OpenAIError as exc:
                turn.error = f"{type(exc).__name__}: {exc}"
                return
            turn.latency_ms = (time.perf_counter() - started) * 1000
        if not completion.choices:
            turn.error = "the endpoint answered without a choice"
            return
        turn.answer = completion.choices[0].message.content or ""
        turn.trace_id = trace_id_of(raw.headers, completion)
        turn.model_version = model_version_of(raw.headers, completion)
        turn.score = score_answer(turn.answer, prompt.contexts, self.preference)

    async def send_feedback(self, turn: Turn) -> None:
        if self.feedback is None or not turn.reactions:
            return
        if turn.trace_id is None:
            turn.feedback_errors.append("no trace id in the response: feedback not sent")
            return
        for reaction in turn.reactions:
            record = FeedbackRecord(
                trace_id=turn.trace_id,
                project_id=self.config.project_id,
                kind=reaction.kind,
                value=reaction.value,
                raw_value=reaction.raw_value,
                dwell_ms=reaction.dwell_ms,
                user_id=turn.user_id,
            )
            try:
                await self.feedback.send_feedback(record)
            except ClientError as exc:
                turn.feedback_errors.append(str(exc))
            else:
                turn.feedback_sent += 1


async def run_workload(
    config: WorkloadConfig,
    prompts: Sequence[Prompt],
    preference: PreferenceConfig,
    feedback: KaizenClient | None,
    *,
    on_turn: Callable[[Turn], None] | None = None,
) -> WorkloadReport:
    """Play the planned turns against ``config.base_url``; send the users' feedback with ``feedback``.

    ``feedback=None`` plays the turns and scores them without sending anything. Failed requests and
    refused feedback are recorded on their turns; if no request at all is answered, ``WorkloadError``
    says why.
    """
    users = plan_users(config, prompts, preference)
    started = time.perf_counter()
    async with openai.AsyncOpenAI(
        base_url=config.base_url, api_key=config.api_key, timeout=config.timeout_s, max_retries=1
    ) as client:
        run = _Run(config, preference, client, feedback, on_turn)
        await asyncio.gather(*(run.play(user) for user in users if user.turns))
    report = WorkloadReport(sorted(run.turns, key=lambda turn: turn.index), time.perf_counter() - started)
    if not report.answered:
        first = report.errors[0] if report.errors else "no request was made"
        raise WorkloadError(
            f"no request to {config.base_url} was answered ({len(report.errors)} failed): {first}"
        )
    return report
