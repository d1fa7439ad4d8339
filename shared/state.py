"""Redis helpers the services share: dedup, locks, counters, small JSON state and sliding windows.

Every key carries the configured prefix (``kaizen:`` by default; tests use a uuid) so deployments and
tests never collide. The client is ``redis.asyncio``; create one ``RedisState`` per process on startup.
"""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.lock import Lock

from shared.errors import KaizenError
from shared.settings import KaizenSettings


class RedisState:
    def __init__(self, settings: KaizenSettings, client: Redis | None = None) -> None:
        self.prefix = settings.redis.key_prefix
        self.client: Redis = client or Redis.from_url(settings.redis.url, decode_responses=False)

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def close(self) -> None:
        await self.client.aclose()

    async def first_time(self, kind: str, item_id: str, ttl_s: int = 7 * 24 * 3600) -> bool:
        """True the first time ``item_id`` is seen for ``kind`` (within ``ttl_s``); False on a repeat."""
        return bool(await self.client.set(self.key("seen", kind, item_id), b"1", nx=True, ex=ttl_s))

    async def forget(self, kind: str, item_id: str) -> None:
        """Undo ``first_time`` (when the work it guarded failed and must be redone)."""
        await self.client.delete(self.key("seen", kind, item_id))

    def lock(self, name: str, timeout_s: float = 60.0, blocking_timeout_s: float | None = 0.0) -> Lock:
        """A distributed lock (``async with state.lock("train:ds-1"):``); non-blocking by default."""
        return self.client.lock(
            self.key("lock", name), timeout=timeout_s, blocking_timeout=blocking_timeout_s, thread_local=False
        )

    async def incr(self, counter: str, by: int = 1) -> int:
        return int(await self.client.incrby(self.key("count", counter), by))

    async def counter(self, counter: str) -> int:
        value = await self.client.get(self.key("count", counter))
        return int(value) if value is not None else 0

    async def reset(self, counter: str) -> None:
        await self.client.delete(self.key("count", counter))

    async def put_json(self, name: str, value: Any, ttl_s: int | None = None) -> None:
        await self.client.set(self.key("state", name), json.dumps(value, default=str).encode(), ex=ttl_s)

    async def get_json(self, name: str) -> Any:
        raw = await self.client.get(self.key("state", name))
        return json.loads(raw) if raw is not None else None

    async def push_window(self, name: str, value: Any, max_len: int = 10_000) -> None:
        """Append to a bounded window (newest last); the oldest items fall off past ``max_len``."""
        key = self.key("window", name)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.rpush(key, json.dumps(value, default=str).encode())
            pipe.ltrim(key, -max_len, -1)
            await pipe.execute()

    async def window(self, name: str) -> list[Any]:
        return [json.loads(item) for item in await self.client.lrange(self.key("window", name), 0, -1)]

    async def drop_all(self) -> int:
        """Delete every key under this state's prefix; return how many there were.

        For benchmarks that made keys of their own (an ingest benchmark leaves a deduplication key a
        trace, kept for the dedup window). An empty prefix would name every key of the database, and
        is refused.
        """
        if not self.prefix:
            raise KaizenError("drop_all needs a key prefix; this state has none (it would drop every key)")
        dropped = 0
        batch: list[bytes] = []
        async for key in self.client.scan_iter(match=_glob_escape(self.prefix) + "*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                dropped += int(await self.client.unlink(*batch))
                batch = []
        if batch:
            dropped += int(await self.client.unlink(*batch))
        return dropped


def _glob_escape(text: str) -> str:
    """``text`` matched literally in a Redis glob pattern."""
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)
