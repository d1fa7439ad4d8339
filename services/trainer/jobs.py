"""Training jobs in Redis: one record per dataset id, a queue, and a lease per running job.

The consumer of ``dataset.ready`` only *submits* a job (``JobQueue.submit``) and acknowledges; workers
run it. A job is never trained twice:

- ``submit`` creates the record and queues the dataset id in one atomic step, only if no record exists
  for that dataset id: a redelivered or duplicate ``dataset.ready`` finds the record and does nothing.
- A worker claims a queued id by moving it to the ``active`` list, then takes the job's lease (a Redis
  lock with a TTL that the worker's heartbeat renews). Only the lease holder trains.
- A worker that dies (SIGKILL, a lost node) stops renewing; once the lease expires, any worker finds the
  job in ``active`` without a lease, takes it and resumes it from its last checkpoint.
- A finished job (``succeeded`` or ``failed``) is never claimed again.

Keys (under the settings' Redis prefix): ``state:trainer:job:<dataset_id>`` (the record, JSON),
``trainer:queue`` and ``trainer:active`` (lists of dataset ids), ``lock:trainer:job:<dataset_id>``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from redis.asyncio.lock import Lock

from shared.events import DatasetReady
from shared.state import RedisState

JobStatus = Literal["queued", "running", "succeeded", "failed"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed"})

_SUBMIT = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  redis.call('LPUSH', KEYS[2], ARGV[3])
  return 1
end
return 0
"""


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class JobRecord:
    """What Kaizen knows about one training job; the worker updates it as the job goes."""

    dataset_id: str
    event: dict[str, Any]
    status: JobStatus = "queued"
    attempts: int = 0
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)
    worker: str | None = None
    run_id: str | None = None
    step: int = 0
    max_steps: int | None = None
    resumed_from_step: int | None = None
    model_version: str | None = None
    model_uri: str | None = None
    published: bool = False
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    detail: str | None = None
    history: list[str] = field(default_factory=list)

    @property
    def dataset_ready(self) -> DatasetReady:
        return DatasetReady.model_validate(self.event)

    def note(self, line: str) -> None:
        """Keep a short trail of what happened to the job (claims, resumes, failures)."""
        self.history = [*self.history[-19:], f"{_now()} {line}"]


class JobQueue:
    """The job records, the queue and the leases, on one ``RedisState``."""

    def __init__(self, state: RedisState, *, lease_s: float = 60.0, ttl_s: int = 30 * 24 * 3600) -> None:
        self.state = state
        self.lease_s = lease_s
        self.ttl_s = ttl_s
        self.queue_key = state.key("trainer", "queue")
        self.active_key = state.key("trainer", "active")

    def record_key(self, dataset_id: str) -> str:
        return self.state.key("state", "trainer", "job", dataset_id)

    def lock_name(self, dataset_id: str) -> str:
        return f"trainer:job:{dataset_id}"

    async def submit(self, event: DatasetReady) -> bool:
        """Record and queue a job for this dataset; False when the dataset already has one (a duplicate)."""
        record = JobRecord(dataset_id=event.dataset_id, event=event.model_dump(mode="json"))
        record.note(f"submitted by event {event.event_id}")
        created = await self.state.client.eval(  # type: ignore[misc]
            _SUBMIT,
            2,
            self.record_key(event.dataset_id),
            self.queue_key,
            json.dumps(asdict(record)),
            str(self.ttl_s),
            event.dataset_id,
        )
        return bool(created)

    async def get(self, dataset_id: str) -> JobRecord | None:
        raw = await self.state.client.get(self.record_key(dataset_id))
        return JobRecord(**json.loads(raw)) if raw is not None else None

    async def save(self, record: JobRecord) -> None:
        record.updated_at = _now()
        await self.state.client.set(
            self.record_key(record.dataset_id), json.dumps(asdict(record)).encode(), ex=self.ttl_s
        )

    def lease(self, dataset_id: str) -> Lock:
        return self.state.lock(self.lock_name(dataset_id), timeout_s=self.lease_s, blocking_timeout_s=0.0)

    async def leased(self, dataset_id: str) -> bool:
        """Whether some worker holds the job's lease now."""
        return bool(await self.state.client.exists(self.state.key("lock", self.lock_name(dataset_id))))

    async def claim(self, timeout_s: float) -> tuple[JobRecord, Lock] | None:
        """The next job to run with its lease held: an orphaned active job first, else a queued one.

        Waits up to ``timeout_s`` for a queued job. None when there is nothing to run.
        """
        orphan = await self._claim_orphan()
        if orphan is not None:
            return orphan
        raw = await self.state.client.blmove(
            self.queue_key, self.active_key, max(1, round(timeout_s)), src="RIGHT", dest="LEFT"
        )
        if raw is None:
            return None
        return await self._take(_text(raw))

    async def _claim_orphan(self) -> tuple[JobRecord, Lock] | None:
        for raw in await self.state.client.lrange(self.active_key, 0, -1):
            dataset_id = _text(raw)
            if await self.leased(dataset_id):
                continue
            taken = await self._take(dataset_id)
            if taken is not None:
                return taken
        return None

    async def _take(self, dataset_id: str) -> tuple[JobRecord, Lock] | None:
        record = await self.get(dataset_id)
        if record is None or record.status in TERMINAL:
            await self.release(dataset_id)
            return None
        lease = self.lease(dataset_id)
        if not await lease.acquire():
            return None  # another worker holds it: it stays in active and is that worker's
        # Read again under the lease: the previous holder may have finished it meanwhile.
        record = await self.get(dataset_id)
        if record is None or record.status in TERMINAL:
            await lease.release()
            await self.release(dataset_id)
            return None
        return record, lease

    async def release(self, dataset_id: str) -> None:
        """Take a finished job off the active list."""
        await self.state.client.lrem(self.active_key, 0, dataset_id)

    async def requeue(self, dataset_id: str) -> None:
        """Put an unfinished job back on the queue (its worker is stopping, or the attempt failed)."""
        async with self.state.client.pipeline(transaction=True) as pipe:
            pipe.lrem(self.active_key, 0, dataset_id)
            pipe.rpush(self.queue_key, dataset_id)
            await pipe.execute()

    async def pending(self) -> list[str]:
        """Dataset ids queued or running (oldest first)."""
        queued = [_text(raw) for raw in await self.state.client.lrange(self.queue_key, 0, -1)]
        active = [_text(raw) for raw in await self.state.client.lrange(self.active_key, 0, -1)]
        return list(reversed(queued)) + active
