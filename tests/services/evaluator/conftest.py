"""Fixtures of the evaluator tests: the scripted judge (with pairwise preferences), the trained adapter,
evaluator settings of the test's own, and the evaluator app running in the test's event loop."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.evaluator.sets import golden_items, heldout_items, regression_items
from services.evaluator.settings import EvaluatorSettings
from shared.settings import KaizenSettings
from tests.services.evaluator.support import (
    PairwiseJudgeServer,
    cached_adapter,
    evaluator_settings,
    heldout_rows,
)


@pytest.fixture(scope="session")
def judge() -> Iterator[PairwiseJudgeServer]:
    server = PairwiseJudgeServer(mode="faithful")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def first_judge() -> Iterator[PairwiseJudgeServer]:
    """A judge that always prefers the answer it sees first."""
    server = PairwiseJudgeServer(mode="first")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def evaluator(settings: KaizenSettings, judge: PairwiseJudgeServer) -> EvaluatorSettings:
    configured = evaluator_settings(settings)
    configured.judge.base_url = judge.base_url
    return configured


@pytest.fixture(scope="session")
def good_adapter() -> Path:
    """The better candidate: answers every evaluation prompt of the tests faithfully (or refuses)."""
    options = evaluator_settings(KaizenSettings()).evaluator
    items = [
        *heldout_items(heldout_rows("any", "any"), options.heldout_limit),
        *golden_items(options),
        *regression_items(options),
    ]
    return cached_adapter(
        items, include_contexts=options.include_contexts, answer_tokens=options.max_new_tokens
    )
