"""Evaluation jobs in Redis: one record per model version, a queue, and a lease per running job.

The consumer of ``checkpoint.trained`` only submits a job and acknowledges; the worker runs it (an
evaluation takes minutes and must not hold the poll loop). The rules are the trainer's:

- ``submit`` creates the record and queues the version in one atomic step, only when no record exists:
  a redelivered or duplicate ``checkpoint.trained`` does nothing;
- a worker claims a queued job by moving it to ``active`` and taking its lease (renewed by a heartbeat);
  a job in ``active`` without a lease (its worker died) is claimed again and evaluated from the start;
- a job in a final state (``passed``, ``failed``) or waiting for an approval is never claimed again.

Keys (under the settings' Redis prefix): ``state:evaluator:job:<model>:<version>``, ``evaluator:queue``,
``evaluator:active``, ``lock:evaluator:job:<model>:<version>``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from redis.asyncio.lock import Lock

from shared.events import CheckpointTrained
from shared.state import RedisState

JobStatus = Literal["queued", "running", "awaiting_approval", "passed", "failed"]
SETTLED: frozenset[str] = frozenset({"awaiting_approval", "passed", "failed"})

_SUBMIT = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  redis.call('LPUSH', KEYS[2], ARGV[3])
  return 1
end
return 0
"""


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def job_key(registered_model: str, model_version: str) -> str:
    return f"{registered_model}:{model_version}"


@dataclass
class EvalJob:
    """What Kaizen knows about one evaluation; the worker and the approval update it."""

    key: str
    event: dict[str, Any]
    status: JobStatus = "queued"
    attempts: int = 0
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)
    run_id: str | None = None
    outcome: dict[str, Any] | None = None
    """The eval.passed / eval.failed event, as JSON, once decided (published unless awaiting approval)."""
    published: bool = False
    approved_by: str | None = None
    detail: str | None = None
    history: list[str] = field(default_factory=list)

    @property
    def checkpoint(self) -> CheckpointTrained:
        return CheckpointTrained.model_validate(self.event)

    def note(self, line: str) -> None:
        self.history = [*self.history[-19:], f"{_now()} {line}"]


class EvalJobs:
    def __init__(self, state: RedisState, *, lease_s: float, ttl_s: int) -> None:
        self.state = state
        self.lease_s = lease_s
        self.ttl_s = ttl_s
        self.queue_key = state.key("evaluator", "queue")
        self.active_key = state.key("evaluator", "active")

    def record_key(self, key: str) -> str:
        return self.state.key("state", "evaluator", "job", key)

    async def submit(self, event: CheckpointTrained) -> bool:
        """Record and queue the evaluation of this version; False when it has one already."""
        key = job_key(event.registered_model, event.model_version)
        job = EvalJob(key=key, event=event.model_dump(mode="json"))
        job.note(f"submitted by event {event.event_id}")
        created = await self.state.client.eval(  # type: ignore[misc]
            _SUBMIT, 2, self.record_key(key), self.queue_key, json.dumps(asdict(job)), str(self.ttl_s), key
        )
        return bool(created)

    async def get(self, key: str) -> EvalJob | None:
        raw = await self.state.client.get(self.record_key(key))
        return EvalJob(**json.loads(raw)) if raw is not None else None

    async def save(self, job: EvalJob) -> None:
        job.updated_at = _now()
        await self.state.client.set(self.record_key(job.key), json.dumps(asdict(job)).encode(), ex=self.ttl_s)

    def lease(self, key: str) -> Lock:
        return self.state.lock(f"evaluator:job:{key}", timeout_s=self.lease_s, blocking_timeout_s=0.0)

    async def claim(self, timeout_s: float) -> tuple[EvalJob, Lock] | None:
        """The next job to run with its lease held (an orphaned one first); None when there is none."""
        for raw in await self.state.client.lrange(self.active_key, 0, -1):
            key = _text(raw)
            if await self.state.client.exists(self.state.key("lock", f"evaluator:job:{key}")):
                continue
            taken = await self._take(key)
            if taken is not None:
                return taken
        moved = await self.state.client.blmove(
            self.queue_key, self.active_key, max(1, round(timeout_s)), src="RIGHT", dest="LEFT"
        )
        return await self._take(_text(moved)) if moved is not None else None

    async def _take(self, key: str) -> tuple[EvalJob, Lock] | None:
        lease = self.lease(key)
        if not await lease.acquire():
            return None
        job = await self.get(key)
        if job is None or job.status in SETTLED:
            await lease.release()
            await self.release(key)
            return None
        return job, lease

    async def release(self, key: str) -> None:
        await self.state.client.lrem(self.active_key, 0, key)

    async def requeue(self, key: str) -> None:
        async with self.state.client.pipeline(transaction=True) as pipe:
            pipe.lrem(self.active_key, 0, key)
            pipe.rpush(self.queue_key, key)
            await pipe.execute()
