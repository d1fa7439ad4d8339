"""ragas 0.4 faithfulness and answer relevancy through the OpenAI-compatible judge.

ragas 0.4's metric collections take an instructor-based LLM (``llm_factory`` over our bounded
``AsyncOpenAI`` client, JSON mode) and a "modern" embeddings object; ours wraps the offline MiniLM
embedder so ragas embeds with the same cached model as the rest of the reward. Importing ragas is slow
(many seconds): this module is imported only when a configuration needs the judge.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import typing as t
from collections.abc import Sequence

os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")  # ragas's usage analytics would call out: never

from ragas.embeddings.base import BaseRagasEmbedding
from ragas.llms.base import llm_factory
from ragas.metrics.collections import AnswerRelevancy, Faithfulness

from shared.rewards.config import ANSWER_RELEVANCY, FAITHFULNESS, RewardConfig
from shared.rewards.embeddings import SentenceEmbedder
from shared.rewards.judge import JudgeClient, JudgeUnavailable

log = logging.getLogger("kaizen.rewards.ragas")


class MiniLMRagasEmbeddings(BaseRagasEmbedding):  # type: ignore[misc]
    """ragas's embeddings interface over the shared, cached MiniLM embedder."""

    def __init__(self, embedder: SentenceEmbedder) -> None:
        super().__init__()
        self.embedder = embedder

    def embed_text(self, text: str, **kwargs: t.Any) -> list[float]:
        return [float(x) for x in self.embedder.embed_one(text)]

    async def aembed_text(self, text: str, **kwargs: t.Any) -> list[float]:
        return await asyncio.to_thread(self.embed_text, text)

    def embed_texts(self, texts: list[str], **kwargs: t.Any) -> list[list[float]]:
        return [[float(x) for x in row] for row in self.embedder.embed(texts)]

    async def aembed_texts(self, texts: list[str], **kwargs: t.Any) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_texts, texts)


class RagasJudge:
    """Faithfulness (needs contexts) and answer relevancy for one trace at a time; None when missing."""

    def __init__(self, client: JudgeClient, embedder: SentenceEmbedder, config: RewardConfig) -> None:
        self.client = client
        endpoint = client.endpoint
        # instructor does one attempt (max_retries=0): JudgeClient.with_retries owns the retry policy.
        self.llm = llm_factory(
            endpoint.model,
            provider="openai",
            client=client.openai,
            max_retries=0,
            temperature=endpoint.temperature,
            max_tokens=endpoint.max_tokens,
        )
        self.faithfulness = Faithfulness(llm=self.llm) if config.wants(FAITHFULNESS) else None
        self.answer_relevancy = (
            AnswerRelevancy(
                llm=self.llm,
                embeddings=MiniLMRagasEmbeddings(embedder),
                strictness=config.ragas.answer_relevancy_strictness,
            )
            if config.wants(ANSWER_RELEVANCY)
            else None
        )

    async def score(self, prompt: str, response: str, contexts: Sequence[str]) -> dict[str, float | None]:
        jobs: dict[str, t.Awaitable[float | None]] = {}
        if self.faithfulness is not None:
            jobs[FAITHFULNESS] = self._faithfulness(prompt, response, list(contexts))
        if self.answer_relevancy is not None:
            jobs[ANSWER_RELEVANCY] = self._answer_relevancy(prompt, response)
        values = await asyncio.gather(*jobs.values())
        return dict(zip(jobs, values, strict=True))

    async def _faithfulness(self, prompt: str, response: str, contexts: list[str]) -> float | None:
        metric = self.faithfulness
        if metric is None or not contexts or not prompt or not response:
            return None

        async def run() -> float:
            return float(
                (await metric.ascore(user_input=prompt, response=response, retrieved_contexts=contexts)).value
            )

        return await self._guarded(FAITHFULNESS, run)

    async def _answer_relevancy(self, prompt: str, response: str) -> float | None:
        metric = self.answer_relevancy
        if metric is None or not prompt or not response:
            return None

        async def run() -> float:
            return float((await metric.ascore(user_input=prompt, response=response)).value)

        return await self._guarded(ANSWER_RELEVANCY, run)

    async def _guarded(self, name: str, run: t.Callable[[], t.Awaitable[float]]) -> float | None:
        try:
            value = await self.client.with_retries(name, run)
        except JudgeUnavailable as exc:
            log.warning("ragas component missing", extra={"component": name, "error": str(exc)[:300]})
            return None
        return None if math.isnan(value) else value
