"""Redis helpers against the real Redis: dedup, locks, counters, JSON state, windows."""

import asyncio

import pytest

from shared.errors import KaizenError
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


async def test_drop_all_deletes_its_own_prefix_only(settings: KaizenSettings) -> None:
    """A benchmark drops the keys it made, however many; keys of a neighbouring prefix stay, and a
    prefix with glob characters matches only itself."""
    glob = settings.model_copy(deep=True)
    glob.redis.key_prefix = settings.redis.key_prefix.rstrip(":") + "[x]:"
    lookalike = settings.model_copy(deep=True)
    lookalike.redis.key_prefix = settings.redis.key_prefix.rstrip(":") + "x:"
    state, globbed, neighbour = RedisState(settings), RedisState(glob), RedisState(lookalike)
    try:
        async with state.client.pipeline(transaction=False) as pipe:
            for index in range(2_500):  # more than one SCAN / UNLINK batch
                pipe.set(state.key("seen", "trace", str(index)), b"1")
            await pipe.execute()
        await state.put_json("rollout", {"stage": 1})
        await globbed.put_json("rollout", {"stage": 2})
        await neighbour.put_json("rollout", {"stage": 3})

        assert await globbed.drop_all() == 1
        assert await neighbour.get_json("rollout") == {"stage": 3}, "[x] is not a character class"
        assert await state.drop_all() == 2_501
        assert await state.get_json("rollout") is None
        assert await state.first_time("trace", "7") is True, "the dedup keys are gone"
        assert await neighbour.get_json("rollout") == {"stage": 3}
        assert await neighbour.drop_all() == 1

        bare = settings.model_copy(deep=True)
        bare.redis.key_prefix = ""
        with pytest.raises(KaizenError, match="needs a key prefix"):
            await RedisState(bare, client=state.client).drop_all()
    finally:
        await state.drop_all()
        for each in (state, globbed, neighbour):
            await each.close()
