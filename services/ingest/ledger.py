"""What the ingest worker has done with each trace and feedback id, in Redis.

The worker's side effects are an Iceberg commit and a Kafka publish, and it can die between any two
steps; Kafka then hands the same messages to the next worker. The ledger makes the second attempt
finish the first one's work instead of repeating it. One key per trace (``ingest:trace:<project>:<id>``)
moves through:

    (absent) --claim--> PENDING <token>           an append carrying snapshot property token is under way
             --commit-> ANNOUNCING <snapshot> <t>  stored; trace.ingested being published since time t
             --acked--> DONE <snapshot>            stored and announced: every later copy is a duplicate
             (or)       UNCONSENTED <snapshot>     no consent: counted, kept in the no-train table or not
                                                   at all, never announced

A second attempt that finds PENDING asks Iceberg whether a snapshot with that token was committed;
one that finds ANNOUNCING reads trace.ingested from time t for the event id before publishing it.
Event ids are deterministic (uuid5 of project and trace id), so even a consumer that sees a copy
can tell. Feedback ids use the same scheme without PENDING (feedback is not stored in Iceberg).

Keys expire after ``dedup_ttl_s``: the deduplication window. Redis must persist (AOF) for the
exactly-once promise to hold across a Redis restart.

Each step is one Redis call for a whole batch: a Lua script that gets the keys as one newline-joined
argument and answers one string (thousands of arguments and replies cost more to encode and parse in
redis-py than the work itself). The scripts name keys in their arguments, so they need a standalone
Redis (or a single-slot one), not a cluster.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from redis.asyncio import Redis

from shared.state import RedisState

# ARGV[1]: expiry seconds; ARGV[2]: the value to claim with; ARGV[3]: keys, one a line.
# Answers one line per key: empty where the claim took, else the value found.
_CLAIM = """
local out = {}
local ttl, value = ARGV[1], ARGV[2]
for key in string.gmatch(ARGV[3], "[^\\n]+") do
  local current = redis.call('GET', key)
  if current then
    out[#out + 1] = current
  else
    redis.call('SET', key, value, 'EX', ttl)
    out[#out + 1] = ''
  end
end
return table.concat(out, '\\n')
"""

# ARGV[1]: keys, one a line. Answers one line per key: its value, or empty.
_GET = """
local out = {}
for key in string.gmatch(ARGV[1], "[^\\n]+") do
  out[#out + 1] = redis.call('GET', key) or ''
end
return table.concat(out, '\\n')
"""

# ARGV[1]: expiry seconds; ARGV[2]: "key\\tvalue" lines.
_PUT = """
local count = 0
for key, value in string.gmatch(ARGV[2], "([^\\t\\n]+)\\t([^\\n]*)") do
  redis.call('SET', key, value, 'EX', ARGV[1])
  count = count + 1
end
return count
"""

# ARGV[1]: keys, one a line. Answers "<line number>\\t<JSON list>" for each key holding a list.
_LISTS = """
local out = {}
local index = 0
for key in string.gmatch(ARGV[1], "[^\\n]+") do
  local items = redis.call('LRANGE', key, 0, -1)
  if #items > 0 then
    out[#out + 1] = index .. '\\t' .. cjson.encode(items)
  end
  index = index + 1
end
return table.concat(out, '\\n')
"""


class Stage(StrEnum):
    PENDING = "P"
    ANNOUNCING = "A"
    DONE = "D"
    UNCONSENTED = "N"


_SEPARATORS = str.maketrans({"|": "/", "\n": " ", "\t": " "})


def _clean(text: str | None) -> str:
    """The text without the characters the ledger's wire format uses as separators."""
    if not text:
        return ""
    if "|" in text or "\n" in text or "\t" in text:
        return text.translate(_SEPARATORS)
    return text


@dataclass(frozen=True, slots=True)
class Entry:
    """One id's state in the ledger."""

    stage: Stage
    token: str = ""
    snapshot_id: int | None = None
    announce_started_ms: int = 0
    model_version: str | None = None

    def encode(self) -> str:
        snapshot = "" if self.snapshot_id is None else str(self.snapshot_id)
        model_version = _clean(self.model_version)
        return f"{self.stage.value}|{self.token}|{snapshot}|{self.announce_started_ms}|{model_version}"

    @classmethod
    def decode(cls, raw: str | bytes) -> Entry:
        text = raw.decode() if isinstance(raw, bytes) else raw
        stage, token, snapshot, started, model_version = text.split("|", 4)
        return cls(
            stage=Stage(stage),
            token=token,
            snapshot_id=int(snapshot) if snapshot else None,
            announce_started_ms=int(started or 0),
            model_version=model_version or None,
        )


def now_ms() -> int:
    return int(time.time() * 1000)


class Ledger:
    """The ingest worker's per-id states (see the module docstring), in bulk: one Redis call per step."""

    def __init__(self, state: RedisState, ttl_s: int) -> None:
        self.state = state
        self.client: Redis = state.client
        self.ttl_s = ttl_s
        self._claim = self.client.register_script(_CLAIM)
        self._get = self.client.register_script(_GET)
        self._put = self.client.register_script(_PUT)
        self._lists = self.client.register_script(_LISTS)

    def key(self, kind: str, project_id: str, item_id: str) -> str:
        return self.state.key("ingest", kind, _clean(project_id), _clean(item_id))

    async def claim(self, keys: list[str], entry: Entry) -> list[Entry | None]:
        """Set each absent key to ``entry``; return None where the claim took, else the entry found."""
        if not keys:
            return []
        found: Any = await self._claim(keys=[], args=[self.ttl_s, entry.encode(), "\n".join(keys)])
        return _entries(found, len(keys))

    async def get(self, keys: list[str]) -> list[Entry | None]:
        if not keys:
            return []
        found: Any = await self._get(keys=[], args=["\n".join(keys)])
        return _entries(found, len(keys))

    async def put(self, keys: list[str], entries: list[Entry]) -> None:
        """Set every key to its entry (overwriting), with the ledger's expiry."""
        if keys:
            lines = "\n".join(f"{key}\t{entry.encode()}" for key, entry in zip(keys, entries, strict=True))
            await self._put(keys=[], args=[self.ttl_s, lines])

    # Retrieved contexts waiting for their generation (contexts-only records).

    async def add_contexts(self, project_id: str, trace_id: str, contexts: list[str], ttl_s: int) -> None:
        key = self.key("contexts", project_id, trace_id)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.rpush(key, *(context.encode() for context in contexts))
            pipe.expire(key, ttl_s)
            await pipe.execute()

    async def waiting_contexts(self, traces: list[tuple[str, str]]) -> dict[tuple[str, str], list[str]]:
        """Contexts that arrived before the generation, for each (project, trace) that has some."""
        if not traces:
            return {}
        keys = "\n".join(self.key("contexts", project_id, trace_id) for project_id, trace_id in traces)
        found: Any = await self._lists(keys=[], args=[keys])
        text = found.decode() if isinstance(found, bytes) else str(found or "")
        waiting: dict[tuple[str, str], list[str]] = {}
        for line in filter(None, text.split("\n")):
            index, _, items = line.partition("\t")
            waiting[traces[int(index)]] = json.loads(items)
        return waiting


def _entries(found: Any, count: int) -> list[Entry | None]:
    text = found.decode() if isinstance(found, bytes) else str(found or "")
    lines = text.split("\n") if count else []
    if len(lines) != count:
        raise RuntimeError(f"the ledger answered {len(lines)} entries for {count} keys")
    return [Entry.decode(line) if line else None for line in lines]
