"""Redis helpers against the real Redis: dedup, locks, counters, JSON state, windows."""

import asyncio

import pytest

from shared.settings import KaizenSettings
from shared.state import RedisState

pytestmark = pytest.mark.integration


async def test_dedup_counts_lock_and_state(settings: KaizenSettings) -> None:
    state = RedisState(settings)
    try:
        assert await state.first_time("trace", "t-1") is True
        assert await state.first_time("trace", "t-1") is False
        await state.forget("trace", "t-1")
        assert await state.first_time("trace", "t-1") is True

        assert await asyncio.gather(*(state.incr("labeled") for _ in range(20))) is not None
        assert await state.counter("labeled") == 20
        await state.reset("labeled")
        assert await state.counter("labeled") == 0

        lock = state.lock("train:ds-1", timeout_s=5)
        assert await lock.acquire() is True
        assert await state.lock("train:ds-1").acquire() is False, "a second holder is refused"
        await lock.release()
        assert await state.lock("train:ds-1").acquire() is True

        await state.put_json("rollout", {"stage": 1, "weight": 0.25})
        assert await state.get_json("rollout") == {"stage": 1, "weight": 0.25}
        assert await state.get_json("missing") is None

        for value in range(5):
            await state.push_window("latency:v2", value, max_len=3)
        assert await state.window("latency:v2") == [2, 3, 4]
    finally:
        await state.close()


async def test_prefixes_keep_deployments_apart(settings: KaizenSettings) -> None:
    other = settings.model_copy(deep=True)
    other.redis.key_prefix = settings.redis.key_prefix + "other:"
    a, b = RedisState(settings), RedisState(other)
    try:
        assert await a.first_time("trace", "same-id") is True
        assert await b.first_time("trace", "same-id") is True
    finally:
        await a.close()
        await b.close()
