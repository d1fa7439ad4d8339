"""The LLM judge: an OpenAI-compatible endpoint (vLLM/KServe in production, any local server here).

``JudgeClient`` owns one ``AsyncOpenAI`` client whose HTTP transport admits at most ``concurrency``
requests at once, so every judge call of a process (rubric and ragas alike) shares one bound and a
batch of traces is judged concurrently up to it. ``RubricJudge`` asks for a pointwise rubric score as
strict JSON; a reply that does not parse (or times out) is retried ``retries`` times, then every
criterion is recorded missing, never 0.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import httpx2 as httpx  # openai 3 speaks httpx2, the successor of httpx
from pydantic import BaseModel, Field, SecretStr

from shared.rewards.config import RewardError, Rubric
from shared.settings import DEV_PLACEHOLDER_SECRET

if TYPE_CHECKING:
    from openai import AsyncOpenAI

log = logging.getLogger("kaizen.rewards.judge")

T = TypeVar("T")


class JudgeEndpoint(BaseModel):
    """Where the judge model answers and how hard to push it."""

    base_url: str = Field(
        "http://127.0.0.1:8000/v1",
        description="OpenAI-compatible base URL (…/v1): a vLLM/KServe judge fleet, or Kaizen's gateway.",
    )
    model: str = Field("Qwen/Qwen3-4B", description="Judge model name as the endpoint knows it.")
    api_key: SecretStr = Field(
        SecretStr(DEV_PLACEHOLDER_SECRET),
        description="API key of the endpoint; the placeholder is refused outside development.",
    )
    timeout_s: float = Field(30.0, gt=0, description="Timeout of one judge request.")
    retries: int = Field(
        1, ge=0, description="Retries of a judge call whose reply did not parse or timed out."
    )
    concurrency: int = Field(8, ge=1, description="Judge requests in flight at once, per process.")
    max_tokens: int = Field(1024, ge=16, description="Largest judge reply.")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature of the judge.")
    json_mode: bool = Field(
        True, description="Ask for response_format json_object (turn off for servers that lack it)."
    )


class JudgeUnavailable(RewardError):
    """A judge call failed on every attempt (the component it served is recorded missing)."""


class _BoundedTransport(httpx.AsyncHTTPTransport):
    """An HTTP transport that admits at most ``limit`` requests at once (waiting is not timed out)."""

    def __init__(self, limit: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._slots = asyncio.Semaphore(limit)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        async with self._slots:
            response = await super().handle_async_request(request)
            await response.aread()
            return response


class JudgeClient:
    """One OpenAI-compatible client per process, bounded to ``endpoint.concurrency`` requests."""

    def __init__(self, endpoint: JudgeEndpoint) -> None:
        from openai import AsyncOpenAI  # only processes that call a judge need the openai package

        self.endpoint = endpoint
        self.http = httpx.AsyncClient(
            transport=_BoundedTransport(endpoint.concurrency),
            limits=httpx.Limits(max_connections=endpoint.concurrency * 2, max_keepalive_connections=64),
        )
        self.openai: AsyncOpenAI = AsyncOpenAI(
            base_url=endpoint.base_url,
            api_key=endpoint.api_key.get_secret_value(),
            timeout=endpoint.timeout_s,
            max_retries=0,  # the judge's own retry policy below decides
            http_client=self.http,
        )

    async def close(self) -> None:
        await self.openai.close()

    async def with_retries(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call``; retry a failure ``endpoint.retries`` times; raise JudgeUnavailable after that."""
        attempts = self.endpoint.retries + 1
        last: BaseException | None = None
        for attempt in range(1, attempts + 1):
            try:
                return await call()
            except Exception as exc:  # a timeout, a refused connection, a reply that does not parse
                last = exc
                log.info(
                    "judge call failed",
                    extra={
                        "judge_call": what,
                        "attempt": attempt,
                        "error": f"{type(exc).__name__}: {exc}"[:300],
                    },
                )
        raise JudgeUnavailable(f"{what}: {attempts} attempts failed, last: {type(last).__name__}: {last}")

    async def chat(self, system: str, user: str) -> str:
        """One chat completion; the reply's text."""
        extra: dict[str, Any] = {}
        if self.endpoint.json_mode:
            extra["response_format"] = {"type": "json_object"}
        completion = await self.openai.chat.completions.create(
            model=self.endpoint.model,
            messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
            temperature=self.endpoint.temperature,
            max_tokens=self.endpoint.max_tokens,
            **extra,
        )
        if not completion.choices:
            raise ValueError("the judge returned no choices")
        return completion.choices[0].message.content or ""


RUBRIC_SYSTEM = (
    "You are a strict, impartial grader of an AI assistant's answers. Grade with the rubric you are "
    "given. Reply with one JSON object and nothing else."
)

_THINK = re.compile(r"^\s*<think>.*?</think>", re.DOTALL)


def rubric_prompt(
    rubric: Rubric, prompt: str, response: str, contexts: Sequence[str], reference: str | None
) -> str:
    criteria = "\n".join(f"- {name}: {text}" for name, text in rubric.criteria.items())
    parts = [
        "Grading rubric (score every criterion with an integer from 1 to "
        f"{rubric.scale}, higher is better):\n{criteria}",
        f"User request:\n{prompt}",
    ]
    if contexts:
        parts.append("Context the answer should rest on:\n" + "\n---\n".join(contexts))
    if reference:
        parts.append(f"Reference answer:\n{reference}")
    parts.append(f"Answer to grade:\n{response}")
    example = ", ".join(f'"{name}": <1-{rubric.scale}>' for name in rubric.criteria)
    parts.append(f'Reply with exactly this JSON: {{"scores": {{{example}}}, "reason": "<one sentence>"}}')
    return "\n\n".join(parts)


def parse_rubric_reply(reply: str, rubric: Rubric) -> dict[str, float]:
    """Strict JSON with an integer score in 1..scale for every criterion, scaled to [0, 1]."""
    text = _THINK.sub("", reply).strip()  # reasoning models may think aloud first
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("scores"), dict):
        raise ValueError('the rubric reply is not an object with a "scores" object')
    scores: dict[str, float] = {}
    for name in rubric.criteria:
        raw = data["scores"].get(name)
        if isinstance(raw, bool) or not isinstance(raw, int | float) or raw != int(raw):
            raise ValueError(f"criterion {name!r}: {raw!r} is not an integer score")
        if not 1 <= raw <= rubric.scale:
            raise ValueError(f"criterion {name!r}: {raw} is outside 1..{rubric.scale}")
        scores[name] = (float(raw) - 1.0) / (rubric.scale - 1)
    return scores


class RubricJudge:
    """Pointwise rubric scores from the judge; a criterion that cannot be had is None, never 0."""

    def __init__(self, client: JudgeClient, rubric: Rubric) -> None:
        self.client = client
        self.rubric = rubric

    async def score(
        self, prompt: str, response: str, contexts: Sequence[str] = (), reference: str | None = None
    ) -> dict[str, float | None]:
        if not self.rubric.criteria:
            return {}
        user = rubric_prompt(self.rubric, prompt, response, contexts, reference)

        async def ask() -> dict[str, float]:
            return parse_rubric_reply(await self.client.chat(RUBRIC_SYSTEM, user), self.rubric)

        try:
            found: dict[str, float | None] = dict(await self.client.with_retries("rubric", ask))
            return found
        except JudgeUnavailable as exc:
            log.warning("rubric score missing", extra={"error": str(exc)[:300]})
            return dict.fromkeys(self.rubric.criteria)
