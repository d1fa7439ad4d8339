"""Reward labeling: traces and their feedback become versioned labels.

The join of a trace and its feedback lives in Redis, per trace:

- ``scores``: the trace's components (everything but feedback), computed once when the trace arrives,
  with what the label row needs (prompt, response, session, model version);
- ``feedback``: every feedback received for the trace, by feedback id, whether or not the trace is
  known yet;
- ``label``: the latest label version, the fingerprint of what it was computed from, and whether it
  is durable (written and published).

A label is (re)computed whenever a trace or a feedback arrives and the trace's scores are known. Its
fingerprint (scores, the set of feedback ids, the reward configuration) decides what happens: the same
fingerprint as a durable label is a redelivery and changes nothing; a new fingerprint is a new label
version. So the feedback-then-trace and trace-then-feedback orders end on the same composite, late
feedback makes version 2, and a redelivered event writes nothing twice. When the Redis state of an old
trace has expired, late feedback recovers the scores from the ``labels`` table.

Nothing here knows Kafka: the app's handlers pass events in and publish the ``TraceLabeled`` events a
``LabelBatch`` carries, then call ``Labeler.done``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pyiceberg.expressions import And, EqualTo, In

from shared.events import FeedbackReceived, TableRef, TraceIngested, TraceLabeled
from shared.rewards import FEEDBACK, Components, FeedbackSignal, RewardInput, RewardScorer
from shared.state import RedisState
from shared.store import LABELS, TRACES, IcebergStore

log = logging.getLogger("kaizen.labeler")

PRODUCER = "labeler"
SEEN_TRACE = "labeler-trace"
SEEN_FEEDBACK = "labeler-feedback"


@dataclass(frozen=True)
class TraceScores:
    """A trace's components (feedback aside) and what its label rows repeat."""

    trace_id: str
    project_id: str
    components: Components
    model_version: str | None
    prompt: str
    response: str
    session_id: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id,
            "project_id": self.project_id,
            "components": self.components,
            "model_version": self.model_version,
            "prompt": self.prompt,
            "response": self.response,
            "session_id": self.session_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TraceScores:
        return cls(
            trace_id=data["trace_id"],
            project_id=data["project_id"],
            components=dict(data["components"]),
            model_version=data.get("model_version"),
            prompt=data.get("prompt") or "",
            response=data.get("response") or "",
            session_id=data.get("session_id"),
        )


@dataclass(frozen=True)
class LabelState:
    version: int
    fingerprint: str
    committed: bool


def next_label_version(current: LabelState | None, fingerprint: str) -> int | None:
    """The version a label with this fingerprint gets, or None when it is already durable.

    A pending (not yet durable) label with the same fingerprint is redone under its own version; any
    new fingerprint is a new version.
    """
    if current is None:
        return 1
    if current.fingerprint == fingerprint:
        return None if current.committed else current.version
    return current.version + 1


def fingerprint(components: Components, feedback_ids: Sequence[str], config_hash: str) -> str:
    text = json.dumps(
        {"c": components, "f": sorted(feedback_ids), "h": config_hash}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(text.encode()).hexdigest()[:24]


@dataclass
class LabelBatch:
    """Labels written to the ``labels`` table, waiting to be published and marked done."""

    events: list[TraceLabeled] = field(default_factory=list)
    states: list[tuple[str, str, LabelState]] = field(default_factory=list)
    seen: list[tuple[str, str]] = field(default_factory=list)


class Labeler:
    def __init__(
        self,
        store: IcebergStore,
        state: RedisState,
        scorer: RewardScorer,
        *,
        state_ttl_s: int = 30 * 24 * 3600,
        use_judge: bool = True,
    ) -> None:
        self.store = store
        self.state = state
        self.scorer = scorer
        self.state_ttl_s = state_ttl_s
        self.use_judge = use_judge
        self._state_since_marked: set[str] = set()

    # -- keys ------------------------------------------------------------------------------------

    @staticmethod
    def _scores_key(project_id: str, trace_id: str) -> str:
        return f"scores:{project_id}:{trace_id}"

    @staticmethod
    def _label_key(project_id: str, trace_id: str) -> str:
        return f"label:{project_id}:{trace_id}"

    def _feedback_key(self, project_id: str, trace_id: str) -> str:
        return self.state.key("feedback", project_id, trace_id)

    def _state_since_key(self, project_id: str) -> str:
        return self.state.key("state-since", project_id)

    async def _mark_state_since(self, project_id: str) -> None:
        """Remember (once, without expiry) when this project's first scores went into Redis."""
        if project_id not in self._state_since_marked:
            await self.state.client.set(self._state_since_key(project_id), str(time.time()), nx=True)
            self._state_since_marked.add(project_id)

    async def _state_may_have_expired(self, project_id: str) -> bool:
        """Whether a trace of the project may have been scored so long ago that its Redis state expired.

        If not, a trace without scores has not been labeled yet (its feedback waits for it in Redis), and
        the labels table need not be read: in the demo, users rate most answers before their trace is
        through ingest, and each such read scanned the whole labels table. With no mark (a new project,
        or a Redis that lost its data), the table is read, as before.
        """
        raw = await self.state.client.get(self._state_since_key(project_id))
        return raw is None or time.time() - float(raw) >= self.state_ttl_s

    async def _seen(self, kind: str, event_id: str) -> bool:
        return bool(await self.state.client.exists(self.state.key("seen", kind, event_id)))

    # -- the two entry points ---------------------------------------------------------------------

    async def label_traces(self, events: Sequence[TraceIngested]) -> LabelBatch:
        """Score new traces (judge calls concurrent across the batch) and label them."""
        batch = LabelBatch()
        fresh: list[TraceIngested] = []
        for event in events:
            if await self._seen(SEEN_TRACE, str(event.event_id)):
                continue
            fresh.append(event)
            batch.seen.append((SEEN_TRACE, str(event.event_id)))
        if not fresh:
            return batch
        unscored: list[TraceIngested] = []
        known: dict[tuple[str, str], TraceScores] = {}
        for event in fresh:
            cached = await self.state.get_json(self._scores_key(event.project_id, event.trace_id))
            if cached is not None:
                known[(event.project_id, event.trace_id)] = TraceScores.from_json(cached)
            else:
                unscored.append(event)
        for scores in await self._score(unscored):
            known[(scores.project_id, scores.trace_id)] = scores
            await self._mark_state_since(scores.project_id)
            await self.state.put_json(
                self._scores_key(scores.project_id, scores.trace_id), scores.to_json(), ttl_s=self.state_ttl_s
            )
        keys = list(dict.fromkeys((event.project_id, event.trace_id) for event in fresh))
        await self._relabel([known[key] for key in keys if key in known], batch)
        return batch

    async def apply_feedback(self, events: Sequence[FeedbackReceived]) -> LabelBatch:
        """Record feedback (before or after its trace) and relabel the traces already scored."""
        batch = LabelBatch()
        touched: dict[tuple[str, str], None] = {}
        for event in events:
            if await self._seen(SEEN_FEEDBACK, str(event.event_id)):
                continue
            batch.seen.append((SEEN_FEEDBACK, str(event.event_id)))
            signal = {"kind": event.kind, "value": event.value}
            key = self._feedback_key(event.project_id, event.trace_id)
            await self.state.client.hset(key, event.feedback_id, json.dumps(signal))
            await self.state.client.expire(key, self.state_ttl_s)
            touched[(event.project_id, event.trace_id)] = None
        scored: list[TraceScores] = []
        for project_id, trace_id in touched:
            cached = await self.state.get_json(self._scores_key(project_id, trace_id))
            if cached is not None:
                scored.append(TraceScores.from_json(cached))
            elif await self._state_may_have_expired(project_id) and (
                recovered := await self._recover(project_id, trace_id)
            ):
                scored.append(recovered)
            # else: the trace has not arrived yet; its label will include this feedback
        await self._relabel(scored, batch)
        return batch

    async def done(self, batch: LabelBatch) -> None:
        """Mark a batch's labels durable (after they were written and published) and its events seen."""
        for project_id, trace_id, written in batch.states:
            key = self._label_key(project_id, trace_id)
            current = await self.state.get_json(key)
            if current is not None and current["fingerprint"] == written.fingerprint:
                await self.state.put_json(
                    key,
                    {"version": written.version, "fingerprint": written.fingerprint, "committed": True},
                    ttl_s=self.state_ttl_s,
                )
        for kind, event_id in batch.seen:
            await self.state.first_time(kind, event_id, ttl_s=self.state_ttl_s)

    # -- internals -------------------------------------------------------------------------------

    async def _score(self, events: Sequence[TraceIngested]) -> list[TraceScores]:
        if not events:
            return []
        rows = await asyncio.to_thread(self._read_traces, events)
        found = [event for event in events if (event.project_id, event.trace_id) in rows]
        for event in events:
            if (event.project_id, event.trace_id) not in rows:
                log.warning(
                    "trace not found in the traces table; not labeled",
                    extra={"trace_id": event.trace_id, "event_id": str(event.event_id)},
                )
        items = []
        for event in found:
            row = rows[(event.project_id, event.trace_id)]
            items.append(
                RewardInput(
                    prompt=row.get("prompt") or "",
                    response=row.get("response") or "",
                    contexts=tuple(row.get("contexts") or ()),
                    reference=row.get("reference"),
                )
            )
        components = await self.scorer.score(items, use_judge=self.use_judge)
        results = []
        for event, item, scored in zip(found, items, components, strict=True):
            row = rows[(event.project_id, event.trace_id)]
            results.append(
                TraceScores(
                    trace_id=event.trace_id,
                    project_id=event.project_id,
                    components=scored,
                    model_version=row.get("model_version") or event.model_version,
                    prompt=item.prompt,
                    response=item.response,
                    session_id=row.get("session_id") or event.session_id,
                )
            )
        return results

    def _read_traces(self, events: Sequence[TraceIngested]) -> dict[tuple[str, str], dict[str, Any]]:
        """The trace rows the events point at: from the data files of the append each event names (the
        ingest worker's commit), else as of that snapshot, else from the current table."""
        by_snapshot: dict[int | None, list[TraceIngested]] = defaultdict(list)
        for event in events:
            by_snapshot[event.stored.snapshot_id].append(event)
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for snapshot_id, group in by_snapshot.items():
            ids = sorted({event.trace_id for event in group})
            found = []
            if snapshot_id is not None:
                found = self.store.read_added(TRACES, snapshot_id, In("trace_id", ids)).to_pylist()  # type: ignore[call-arg,misc]
            missing = sorted(set(ids) - {row["trace_id"] for row in found})
            if missing:
                row_filter = In("trace_id", missing)  # type: ignore[call-arg,misc]
                table = self.store.table(TRACES)
                if snapshot_id is not None and table.snapshot_by_id(snapshot_id) is not None:
                    found += self.store.read_snapshot(TRACES, snapshot_id, row_filter).to_pylist()
                else:
                    found += self.store.read(TRACES, row_filter).to_pylist()
            for row in found:
                rows[(row["project_id"], row["trace_id"])] = row
        return rows

    async def _recover(self, project_id: str, trace_id: str) -> TraceScores | None:
        """A trace's scores from its latest label row, for feedback older than the Redis state."""
        # Feedback can arrive before the first label of a new namespace: the table is created empty.
        await asyncio.to_thread(self.store.table, LABELS)
        table = await asyncio.to_thread(
            self.store.read,
            LABELS,
            And(EqualTo("project_id", project_id), EqualTo("trace_id", trace_id)),  # type: ignore[call-arg,misc]
        )
        rows = table.to_pylist()
        if not rows:
            return None
        latest = max(rows, key=lambda row: row["label_version"])
        components = {name: value for name, value in (latest["components"] or []) if name != FEEDBACK}
        scores = TraceScores(
            trace_id=trace_id,
            project_id=project_id,
            components=components,
            model_version=latest.get("model_version"),
            prompt=latest.get("prompt") or "",
            response=latest.get("response") or "",
            session_id=latest.get("session_id"),
        )
        await self.state.put_json(
            self._scores_key(project_id, trace_id), scores.to_json(), ttl_s=self.state_ttl_s
        )
        label_key = self._label_key(project_id, trace_id)
        if await self.state.get_json(label_key) is None:
            await self.state.put_json(
                label_key,
                {"version": latest["label_version"], "fingerprint": "recovered", "committed": True},
                ttl_s=self.state_ttl_s,
            )
        return scores

    async def _feedback(self, project_id: str, trace_id: str) -> list[FeedbackSignal]:
        raw = await self.state.client.hgetall(self._feedback_key(project_id, trace_id))
        signals = []
        for feedback_id, payload in raw.items():
            data = json.loads(payload)
            signals.append(FeedbackSignal(_text(feedback_id), data["kind"], data.get("value")))
        return signals

    async def _relabel(self, traces: Sequence[TraceScores], batch: LabelBatch) -> None:
        """Decide each trace's label under its lock, write the new ones in one append."""
        config_hash = self.scorer.config_hash
        rows: list[dict[str, Any]] = []
        events: list[TraceLabeled] = []
        for scores in traces:
            async with self.state.lock(
                f"label:{scores.project_id}:{scores.trace_id}", timeout_s=60, blocking_timeout_s=30
            ):
                signals = await self._feedback(scores.project_id, scores.trace_id)
                components = dict(scores.components) | {FEEDBACK: self.scorer.feedback(signals)}
                components = {name: components.get(name) for name in sorted(components)}
                print_ = fingerprint(components, [s.feedback_id for s in signals], config_hash)
                key = self._label_key(scores.project_id, scores.trace_id)
                raw = await self.state.get_json(key)
                current = LabelState(raw["version"], raw["fingerprint"], raw["committed"]) if raw else None
                version = next_label_version(current, print_)
                if version is None:
                    continue
                state = LabelState(version, print_, committed=False)
                await self.state.put_json(
                    key,
                    {"version": version, "fingerprint": print_, "committed": False},
                    ttl_s=self.state_ttl_s,
                )
            result = self.scorer.composite(components)
            labeled_at = datetime.now(UTC)
            rows.append(
                {
                    "trace_id": scores.trace_id,
                    "project_id": scores.project_id,
                    "label_version": version,
                    "labeled_at": labeled_at,
                    "model_version": scores.model_version,
                    "composite_reward": result.composite_reward,
                    "components": components,
                    "gated_by": result.gated_by,
                    "config_hash": config_hash,
                    "prompt": scores.prompt,
                    "response": scores.response,
                    "session_id": scores.session_id,
                }
            )
            events.append(
                TraceLabeled(
                    producer=PRODUCER,
                    project_id=scores.project_id,
                    correlation_id=scores.trace_id,
                    trace_id=scores.trace_id,
                    model_version=scores.model_version,
                    components=components,
                    composite_reward=result.composite_reward,
                    gated_by=result.gated_by,
                    label_version=version,
                    config_hash=config_hash,
                )
            )
            batch.states.append((scores.project_id, scores.trace_id, state))
        if not rows:
            return
        snapshot_id = await asyncio.to_thread(
            self.store.append, LABELS, rows, snapshot_properties={"kaizen.producer": PRODUCER}
        )
        ref = TableRef(table=self.store.identifier(LABELS), snapshot_id=snapshot_id)
        batch.events.extend(event.model_copy(update={"stored": ref}) for event in events)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
