"""Score (prompt, response, contexts, reference) items: every component, then the gated composite.

The one entry point the labeler, the evaluator and the trainer's GRPO reward functions share:

    scorer = RewardScorer.create(load_reward_config(), judge=JudgeEndpoint(...))   # or judge=None
    components = await scorer.score([RewardInput(prompt, response, contexts, reference)])
    result = scorer.composite(components[0] | {"feedback": 0.8})

Without a judge (``judge=None``) the LLM components are recorded missing and the rest is computed
in process: that is the fast, non-LLM path (embeddings batched and cached across items).
``grpo_reward_function`` adapts one component to TRL's reward-function signature.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.rewards.composite import Composite, clean, composite_reward
from shared.rewards.config import (
    CONTEXT_SIMILARITY,
    FEEDBACK,
    RAGAS_COMPONENTS,
    REFERENCE_SIMILARITY,
    ROUGE_L,
    STRING_SIMILARITY,
    RewardConfig,
    RewardError,
)
from shared.rewards.embeddings import SentenceEmbedder
from shared.rewards.feedback import FeedbackSignal, feedback_score
from shared.rewards.judge import JudgeClient, JudgeEndpoint, RubricJudge
from shared.rewards.similarity import cosine_to_closest, rouge_l, string_similarity, unique_texts

if TYPE_CHECKING:
    from shared.rewards.ragas_judge import RagasJudge

Components = dict[str, float | None]


@dataclass(frozen=True)
class RewardInput:
    """What a reward is computed from."""

    prompt: str
    response: str
    contexts: tuple[str, ...] = ()
    reference: str | None = None


def scoring_hash(config: RewardConfig, precision: str | None) -> str:
    """The configuration hash of labels scored with ``config`` and embeddings of ``precision``."""
    if precision in (None, "float32"):
        return config.config_hash
    return hashlib.sha256(f"{config.config_hash}:minilm-{precision}".encode()).hexdigest()[:16]


class RewardScorer:
    """Every component of a reward configuration, for batches of items."""

    def __init__(
        self,
        config: RewardConfig,
        embedder: SentenceEmbedder | None,
        judge: JudgeClient | None = None,
        ragas: RagasJudge | None = None,
    ) -> None:
        self.config = config
        self.embedder = embedder
        self.judge = judge
        self.rubric = RubricJudge(judge, config.rubric) if judge is not None else None
        self.ragas = ragas
        needs_embeddings = any(config.wants(name) for name in (CONTEXT_SIMILARITY, REFERENCE_SIMILARITY))
        if needs_embeddings and embedder is None:
            raise RewardError("this reward configuration needs sentence embeddings")

    @classmethod
    def create(
        cls,
        config: RewardConfig,
        *,
        judge: JudgeEndpoint | None,
        embedder: SentenceEmbedder | None = None,
    ) -> RewardScorer:
        """Load what the configuration needs: MiniLM (once per process) and, with a judge, ragas."""
        embedder = embedder or SentenceEmbedder.shared()
        client = JudgeClient(judge) if judge is not None and config.needs_judge else None
        ragas = None
        if client is not None and any(config.wants(name) for name in RAGAS_COMPONENTS):
            from shared.rewards.ragas_judge import RagasJudge  # slow import: only when needed

            ragas = RagasJudge(client, embedder, config)
        return cls(config, embedder, client, ragas)

    async def close(self) -> None:
        if self.judge is not None:
            await self.judge.close()

    @property
    def config_hash(self) -> str:
        """The hash recorded with every label: the reward configuration's, and the embedding precision
        when it is not float32 (bfloat16 similarities differ from float32's in the third decimal)."""
        return scoring_hash(self.config, self.embedder.precision if self.embedder is not None else None)

    async def score(self, items: Sequence[RewardInput], *, use_judge: bool = True) -> list[Components]:
        """Every component but feedback for each item (None where one cannot be computed).

        The non-LLM components run in a worker thread (one batched embedding pass); the judge calls of
        all items run concurrently, bounded by the judge's concurrency.
        """
        offline = asyncio.to_thread(self.score_offline, items)
        if use_judge and (self.rubric is not None or self.ragas is not None):
            local, judged = await asyncio.gather(offline, asyncio.gather(*(self._judge(i) for i in items)))
        else:
            local, judged = await offline, [{} for _ in items]
        results: list[Components] = []
        for item_local, item_judged in zip(local, judged, strict=True):
            merged = dict.fromkeys(self.config.component_names) | item_local | item_judged
            merged.pop(FEEDBACK, None)
            results.append({name: clean(value) for name, value in merged.items()})
        return results

    async def _judge(self, item: RewardInput) -> Components:
        jobs: list[Any] = []
        if self.rubric is not None:
            jobs.append(self.rubric.score(item.prompt, item.response, item.contexts, item.reference))
        if self.ragas is not None:
            jobs.append(self.ragas.score(item.prompt, item.response, item.contexts))
        found: Components = {}
        for part in await asyncio.gather(*jobs):
            found.update(part)
        return found

    def score_offline(self, items: Sequence[RewardInput]) -> list[Components]:
        """The components computed in process: embedding and string similarities."""
        config = self.config
        want_context = config.wants(CONTEXT_SIMILARITY)
        want_reference = config.wants(REFERENCE_SIMILARITY)
        vectors: dict[str, Any] = {}
        if self.embedder is not None and (want_context or want_reference):
            groups: list[Sequence[str]] = []
            for item in items:
                groups.append([item.response])
                if want_context:
                    groups.append(item.contexts)
                if want_reference and item.reference:
                    groups.append([item.reference])
            texts = unique_texts(groups)
            vectors = dict(zip(texts, self.embedder.embed(texts), strict=True))
        results: list[Components] = []
        for item in items:
            found: Components = {}
            answer = vectors.get(item.response)
            if want_context and answer is not None and item.contexts:
                found[CONTEXT_SIMILARITY] = cosine_to_closest(
                    answer, np.stack([vectors[context] for context in item.contexts])
                )
            if want_reference and answer is not None and item.reference:
                found[REFERENCE_SIMILARITY] = cosine_to_closest(answer, vectors[item.reference][None, :])
            if config.wants(STRING_SIMILARITY) and item.reference:
                found[STRING_SIMILARITY] = string_similarity(item.reference, item.response)
            if config.wants(ROUGE_L) and item.reference:
                found[ROUGE_L] = rouge_l(item.reference, item.response)
            results.append(found)
        return results

    def feedback(self, signals: Sequence[FeedbackSignal]) -> float | None:
        return feedback_score(signals, self.config.feedback)

    def composite(self, components: Components) -> Composite:
        return composite_reward(components, self.config)


def grpo_reward_function(
    scorer: RewardScorer,
    component: str,
    *,
    contexts_key: str = "contexts",
    reference_key: str = "reference",
) -> Callable[..., list[float | None]]:
    """One reward component as a TRL GRPO reward function ``(prompts, completions, **columns)``.

    Extra dataset columns arrive as keyword lists (``contexts``, ``reference``); a completion for which
    the component cannot be computed gets None, which TRL skips rather than counting as 0.
    """

    def reward(prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float | None]:
        contexts = columns.get(contexts_key) or [()] * len(prompts)
        references = columns.get(reference_key) or [None] * len(prompts)
        items = [
            RewardInput(
                prompt=_text(prompt),
                response=_text(completion),
                contexts=tuple(context or ()),
                reference=reference,
            )
            for prompt, completion, context, reference in zip(
                prompts, completions, contexts, references, strict=True
            )
        ]
        if component in RAGAS_COMPONENTS or component in scorer.config.rubric_components:
            scored = _run(scorer.score(items))
        else:
            scored = scorer.score_offline(items)
        return [clean(row.get(component)) for row in scored]

    reward.__name__ = f"kaizen_{component}"
    return reward


def _text(value: Any) -> str:
    """A prompt or completion as text: plain, or the last message of a conversation."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        return str(value[-1].get("content", ""))
    return str(value)


def _run(coro: Any) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    raise RewardError("LLM reward components in a running event loop: await RewardScorer.score instead")
