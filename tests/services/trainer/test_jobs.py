"""Jobs in Redis: one per dataset id, one lease holder at a time, orphans reclaimed, finished ones left."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from services.trainer.jobs import JobQueue
from shared.settings import KaizenSettings
from shared.state import RedisState
from tests.services.trainer.support import dataset_ready

pytestmark = pytest.mark.integration


@pytest.fixture
async def state(settings: KaizenSettings) -> AsyncIterator[RedisState]:
    redis = RedisState(settings)
    yield redis
    await redis.close()


async def test_a_dataset_gets_one_job_whatever_the_events(
    settings: KaizenSettings, state: RedisState
) -> None:
    queue = JobQueue(state)
    first = dataset_ready(settings, "ds-1", 1)
    assert await queue.submit(first) is True
    assert await queue.submit(first) is False, "a redelivery"
    assert await queue.submit(dataset_ready(settings, "ds-1", 1)) is False, "another event, same dataset"
    assert await queue.pending() == ["ds-1"]
    record = await queue.get("ds-1")
    assert record is not None and record.status == "queued" and record.dataset_ready == first


async def test_one_lease_holder_and_orphans_are_reclaimed(
    settings: KaizenSettings, state: RedisState
) -> None:
    queue = JobQueue(state, lease_s=1.0)
    await queue.submit(dataset_ready(settings, "ds-1", 1))
    claimed = await queue.claim(timeout_s=1)
    assert claimed is not None
    record, lease = claimed
    assert record.dataset_id == "ds-1"
    assert await queue.claim(timeout_s=1) is None, "the job is leased: nobody else takes it"

    await asyncio.sleep(1.5)  # the holder died: no heartbeat, the lease expires
    again = await queue.claim(timeout_s=1)
    assert again is not None and again[0].dataset_id == "ds-1", "an orphan is reclaimed"

    record, lease = again
    record.status = "succeeded"
    await queue.save(record)
    await lease.release()
    assert await queue.claim(timeout_s=1) is None, "a finished job is never claimed again"
    assert await queue.pending() == []
