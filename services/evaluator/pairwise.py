"""Pairwise preference of the candidate against the champion, asked in both orders.

For every item the judge sees the two answers twice: the candidate as answer A, then the candidate as
answer B. Each order gives the candidate 1 (preferred), 0.5 (tie) or 0 (the other preferred); the item's
score is the mean of the two. A judge that always prefers whatever it sees first therefore scores every
item 0.5: a tie, never a win. Two identical answers are a tie without asking. An order whose reply never
parses (after the judge's retries) is left out; an item with neither order is missing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from shared.rewards.judge import JudgeClient, JudgeUnavailable

log = logging.getLogger("kaizen.evaluator.pairwise")

PAIRWISE_SYSTEM = (
    "You are a strict, impartial judge comparing two answers of AI assistants to the same request. Judge "
    "correctness, faithfulness to the context, helpfulness and safety; ignore the order of the answers and "
    "their length. Reply with one JSON object and nothing else."
)

PAIRWISE_ASK = (
    'Which answer is better? Reply with exactly this JSON: {"winner": "A" | "B" | "tie", '
    '"reason": "<one sentence>"}'
)
_THINK = re.compile(r"^\s*<think>.*?</think>", re.DOTALL)


def pairwise_prompt(
    prompt: str, first: str, second: str, contexts: Sequence[str] = (), reference: str | None = None
) -> str:
    parts = [f"User request:\n{prompt}"]
    if contexts:
        parts.append("Context the answers should rest on:\n" + "\n---\n".join(contexts))
    if reference:
        parts.append(f"Reference answer:\n{reference}")
    parts.append(f"Answer A:\n{first}")
    parts.append(f"Answer B:\n{second}")
    parts.append(PAIRWISE_ASK)
    return "\n\n".join(parts)


def parse_preference(reply: str) -> str:
    """``A``, ``B`` or ``tie`` from the judge's JSON reply; anything else is an error."""
    data = json.loads(_THINK.sub("", reply).strip())
    winner = data.get("winner") if isinstance(data, dict) else None
    if not isinstance(winner, str) or winner.strip().upper() not in ("A", "B", "TIE"):
        raise ValueError(f'the pairwise reply has no "winner" of A, B or tie: {reply[:200]!r}')
    value = winner.strip().upper()
    return "tie" if value == "TIE" else value


@dataclass(frozen=True)
class Preference:
    """The candidate's result on one item: the score in [0, 1] and what each order said."""

    score: float | None
    candidate_first: str | None
    champion_first: str | None

    @property
    def outcome(self) -> str:
        if self.score is None:
            return "missing"
        return "win" if self.score > 0.5 else "loss" if self.score < 0.5 else "tie"


def candidate_score(candidate_first: str | None, champion_first: str | None) -> float | None:
    """The candidate's mean score over the orders that answered (1 preferred, 0.5 tie, 0 not)."""
    scores: list[float] = []
    if candidate_first is not None:
        scores.append({"A": 1.0, "tie": 0.5, "B": 0.0}[candidate_first])
    if champion_first is not None:
        scores.append({"B": 1.0, "tie": 0.5, "A": 0.0}[champion_first])
    return sum(scores) / len(scores) if scores else None


class PairwiseJudge:
    def __init__(self, client: JudgeClient) -> None:
        self.client = client

    async def _ask(self, prompt: str) -> str | None:
        async def ask() -> str:
            return parse_preference(await self.client.chat(PAIRWISE_SYSTEM, prompt))

        try:
            return await self.client.with_retries("pairwise", ask)
        except JudgeUnavailable as exc:
            log.warning("pairwise preference missing", extra={"error": str(exc)[:300]})
            return None

    async def compare(
        self,
        prompt: str,
        candidate: str,
        champion: str,
        contexts: Sequence[str] = (),
        reference: str | None = None,
    ) -> Preference:
        if candidate.strip() == champion.strip():
            return Preference(0.5, "tie", "tie")
        first, second = await asyncio.gather(
            self._ask(pairwise_prompt(prompt, candidate, champion, contexts, reference)),
            self._ask(pairwise_prompt(prompt, champion, candidate, contexts, reference)),
        )
        return Preference(candidate_score(first, second), first, second)


def composite_preference(candidate: float | None, champion: float | None) -> Preference:
    """Without a judge: the higher composite reward wins the item (equal is a tie)."""
    if candidate is None or champion is None:
        return Preference(None, None, None)
    score = 1.0 if candidate > champion else 0.0 if candidate < champion else 0.5
    return Preference(score, None, None)
