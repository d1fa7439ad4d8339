"""The ingest worker's work, without Kafka: validate, redact, gate on consent, deduplicate, store.

``TraceLanding.land`` takes a batch of ``trace.raw`` events and returns the ``trace.ingested`` events
to publish; ``FeedbackLanding.land`` does the same for ``feedback.received``. Both are idempotent
through the ``Ledger``: a batch handed over again after a crash finishes the work the dead worker
left, and repeats none of it (see ``ledger`` for the states). The caller publishes what they return,
then calls ``mark_announced``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic_core import to_json
from pyiceberg.expressions import In

from services.ingest.ids import name_id
from services.ingest.ledger import Entry, Ledger, Stage, now_ms
from services.ingest.metrics import IngestMetrics
from services.ingest.redaction import Redactor, redact_feedback, redact_trace
from shared.events import (
    FEEDBACK_RECEIVED,
    TRACE_INGESTED,
    FeedbackRaw,
    FeedbackRecord,
    TraceRaw,
    TraceRecord,
)
from shared.store import TRACES, TRACES_NOTRAIN, IcebergStore

WORKER = "ingest-worker"
"""The ``producer`` of the events the worker publishes."""
EVENT_NAMESPACE = uuid.UUID("6f1d3a4e-9c55-4d0c-9a43-6d2b3f0e8a10")
SNAPSHOT_TOKEN = "kaizen.ingest.token"
"""Snapshot property naming the landing attempt that committed it (how a retry knows it was committed)."""


def trace_event_id(project_id: str, trace_id: str) -> str:
    """The ``trace.ingested`` event id of a trace: the same on every attempt, so copies are recognizable."""
    return name_id(EVENT_NAMESPACE, f"trace.ingested/{project_id}/{trace_id}")


def feedback_event_id(project_id: str, feedback_id: str) -> str:
    return name_id(EVENT_NAMESPACE, f"feedback.received/{project_id}/{feedback_id}")


def _shared_entries(
    stage: Stage, facts: Sequence[tuple[int | None, str | None]], **fields: Any
) -> list[Entry]:
    """A ledger entry for each (snapshot id, model version), one object per distinct pair: a batch has
    one or a few, and an entry per trace cost about 1 us each."""
    made: dict[tuple[int | None, str | None], Entry] = {}
    return [
        made.get(fact)
        or made.setdefault(fact, Entry(stage, snapshot_id=fact[0], model_version=fact[1], **fields))
        for fact in facts
    ]


def ingested_event(
    record: TraceRecord, event_id: str, table: str, snapshot: int | None, now: datetime
) -> bytes:
    """The ``trace.ingested`` event of a stored trace (its id from ``trace_event_id``), as JSON.

    Written straight from a dict (a model per event costs more than the rest of its work); the tests
    validate what lands on the topic against ``TraceIngested``.
    """
    return to_json(
        {
            "event_id": event_id,
            "type": TRACE_INGESTED,
            "schema_version": 1,
            "occurred_at": now,
            "producer": WORKER,
            "project_id": record.project_id,
            "correlation_id": record.trace_id,
            "trace_id": record.trace_id,
            "model": record.model,
            "model_version": record.model_version,
            "consent": True,
            "stored": {"table": table, "snapshot_id": snapshot},
            "user_id": record.user_id,
            "session_id": record.session_id,
            "latency_ms": record.latency_ms,
            "status": record.status,
        }
    )


# ---------------------------------------------------------------------------------------------
# Traces


def trace_columns(records: Sequence[TraceRecord], ingested_at: datetime) -> dict[str, list[Any]]:
    """The ``traces`` table columns of records (``IcebergStore.append_columns``), built a column at a
    time: 2.6 us a span where rows cost 4.6, and the append then skips turning rows into columns
    (7.2 us a span against 8.5; ``python -m bench.ingest.steps``). One comprehension per column is
    kept on purpose: table-driven forms (``attrgetter``) measured 3.2-3.9 us a span."""
    usage = [record.usage for record in records]
    return {
        "trace_id": [r.trace_id for r in records],
        "project_id": [r.project_id for r in records],
        "ts": [r.started_at for r in records],
        "model": [r.model for r in records],
        "consent": [r.consent for r in records],
        "model_version": [r.model_version for r in records],
        "span_id": [r.span_id for r in records],
        "name": [r.name for r in records],
        "prompt": [r.prompt for r in records],
        "response": [r.response for r in records],
        "input_messages": [to_json(r.input_messages).decode() for r in records],
        "contexts": [r.contexts for r in records],
        "reference": [r.reference for r in records],
        "user_id": [r.user_id for r in records],
        "session_id": [r.session_id for r in records],
        "tags": [r.tags for r in records],
        "metadata": [to_json(r.metadata, fallback=str).decode() for r in records],
        "prompt_tokens": [u.prompt_tokens for u in usage],
        "completion_tokens": [u.completion_tokens for u in usage],
        "latency_ms": [r.latency_ms for r in records],
        "status": [r.status for r in records],
        "error": [r.error for r in records],
        "completion_token_ids": [r.completion_token_ids for r in records],
        "completion_logprobs": [r.completion_logprobs for r in records],
        "redactions": [r.redactions for r in records],
        "ingested_at": [ingested_at] * len(records),
    }


@dataclass(slots=True)
class Announcement:
    """A ``trace.ingested`` or ``feedback.received`` event to publish (as its Kafka key and JSON value),
    and its ledger key."""

    key: bytes
    value: bytes
    event_id: str
    ledger_key: str
    model_version: str | None
    received_at: datetime
    started_ms: int = 0
    snapshot_id: int | None = None


@dataclass(slots=True)
class LandingResult:
    """What a batch came to: announcements to publish, and the counts behind them."""

    fresh: list[Announcement] = field(default_factory=list)
    """Never published: publish them."""
    uncertain: list[Announcement] = field(default_factory=list)
    """A previous attempt began publishing them: publish only those not found on the topic."""
    stored: int = 0
    unconsented: int = 0
    duplicates: int = 0
    contexts_only: int = 0
    snapshot_ids: dict[str, int] = field(default_factory=dict)


class TraceLanding:
    """Lands ``trace.raw`` batches in Iceberg and says what to announce on ``trace.ingested``."""

    def __init__(
        self,
        store: IcebergStore,
        ledger: Ledger,
        redactor: Redactor,
        metrics: IngestMetrics,
        *,
        keep_unconsented: bool,
        contexts_ttl_s: int,
        logger: logging.Logger,
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.redactor = redactor
        self.metrics = metrics
        self.keep_unconsented = keep_unconsented
        self.contexts_ttl_s = contexts_ttl_s
        self.log = logger
        self._table = store.identifier(TRACES)

    async def land(self, events: Sequence[TraceRaw]) -> LandingResult:
        result = LandingResult()
        received_at = {}
        batch: dict[tuple[str, str], TraceRecord] = {}
        for event in events:
            # The intake redacted what came over HTTP; what apps put on Kafka is redacted here. Asking
            # again costs one fast pass over the texts, and keeps the worker the guarantee.
            record = redact_trace(event.record, self.redactor)
            if record is not event.record:
                self.metrics.redactions.inc(record.redactions - event.record.redactions)
            key = (record.project_id, record.trace_id)
            if record.contexts_only:
                result.contexts_only += 1
                await self.ledger.add_contexts(
                    record.project_id, record.trace_id, record.contexts, self.contexts_ttl_s
                )
                continue
            if key in batch:
                result.duplicates += 1
                continue
            batch[key] = record
            received_at[key] = event.occurred_at
        if not batch:
            return result

        waiting = await self.ledger.waiting_contexts(list(batch))
        for key, contexts in waiting.items():
            record = batch[key]
            merged = list(dict.fromkeys([*record.contexts, *contexts]))
            batch[key] = record.model_copy(update={"contexts": merged})

        token = uuid.uuid4().hex
        keys = [self.ledger.key("trace", project_id, trace_id) for project_id, trace_id in batch]
        claims = await self.ledger.claim(keys, Entry(Stage.PENDING, token=token))
        new: list[tuple[str, TraceRecord]] = []
        now = datetime.now(UTC)
        resolved: list[tuple[str, TraceRecord, Entry]] = []
        pending_tokens: dict[str, set[str]] = {}
        for ledger_key, record, claim in zip(keys, batch.values(), claims, strict=True):
            if claim is None:
                new.append((ledger_key, record))
            elif claim.stage is Stage.PENDING:
                table = TRACES if record.consent else TRACES_NOTRAIN
                pending_tokens.setdefault(table, set()).add(claim.token)
                resolved.append((ledger_key, record, claim))
            elif claim.stage is Stage.ANNOUNCING:
                result.uncertain.append(
                    self._announcement(
                        ledger_key,
                        record,
                        claim.snapshot_id,
                        received_at,
                        claim.announce_started_ms,
                        now,
                    )
                )
            else:
                result.duplicates += 1

        if resolved:
            # A previous attempt claimed these and died: did its commit happen?
            committed = await asyncio.to_thread(self._committed_tokens, pending_tokens)
            unknown: dict[str, set[str]] = {}
            for _, record, claim in resolved:
                table = TRACES if record.consent else TRACES_NOTRAIN
                if (table, claim.token) not in committed:
                    unknown.setdefault(table, set()).add(record.trace_id)
            stored = await asyncio.to_thread(self._stored_traces, unknown) if unknown else {}
            reclaim: list[str] = []
            for ledger_key, record, claim in resolved:
                table = TRACES if record.consent else TRACES_NOTRAIN
                snapshot = committed.get((table, claim.token))
                if snapshot is None:
                    snapshot = stored.get((table, record.project_id, record.trace_id))
                if snapshot is not None:
                    await self._after_commit(
                        result, [(ledger_key, record)], snapshot, received_at, record.consent
                    )
                else:
                    reclaim.append(ledger_key)
                    new.append((ledger_key, record))
            if reclaim:
                await self.ledger.put(reclaim, [Entry(Stage.PENDING, token=token)] * len(reclaim))
            self.log.info(
                "traces a previous attempt claimed: finishing its work",
                extra={"committed_before": len(resolved) - len(reclaim), "landed_again": len(reclaim)},
            )

        consented = [(k, r) for k, r in new if r.consent]
        unconsented = [(k, r) for k, r in new if not r.consent]
        ingested_at = datetime.now(UTC)
        if consented:
            snapshot = await self._append(TRACES, [r for _, r in consented], ingested_at, token)
            result.snapshot_ids[TRACES] = snapshot
            await self._after_commit(result, consented, snapshot, received_at, True)
        if unconsented:
            snapshot_or_none: int | None = None
            if self.keep_unconsented:
                snapshot_or_none = await self._append(
                    TRACES_NOTRAIN, [r for _, r in unconsented], ingested_at, token
                )
                result.snapshot_ids[TRACES_NOTRAIN] = snapshot_or_none
            await self._after_commit(result, unconsented, snapshot_or_none, received_at, False)
        return result

    async def _append(self, table: str, records: list[TraceRecord], ingested_at: datetime, token: str) -> int:
        columns = trace_columns(records, ingested_at)
        with self.metrics.commit_seconds.labels(table).time():
            snapshot = await asyncio.to_thread(
                self.store.append_columns, table, columns, snapshot_properties={SNAPSHOT_TOKEN: token}
            )
        if snapshot is None:
            raise RuntimeError(f"append to {table} returned no snapshot")
        self.metrics.rows.labels(table).inc(len(records))
        return snapshot

    async def _after_commit(
        self,
        result: LandingResult,
        landed: list[tuple[str, TraceRecord]],
        snapshot: int | None,
        received_at: dict[tuple[str, str], datetime],
        consent: bool,
    ) -> None:
        facts = [(snapshot, r.model_version) for _, r in landed]
        if consent:
            started = now_ms()
            entries = _shared_entries(Stage.ANNOUNCING, facts, announce_started_ms=started)
            await self.ledger.put([k for k, _ in landed], entries)
            result.stored += len(landed)
            now = datetime.now(UTC)
            result.fresh += [self._announcement(k, r, snapshot, received_at, started, now) for k, r in landed]
        else:
            entries = _shared_entries(Stage.UNCONSENTED, facts)
            await self.ledger.put([k for k, _ in landed], entries)
            result.unconsented += len(landed)

    def _announcement(
        self,
        ledger_key: str,
        record: TraceRecord,
        snapshot: int | None,
        received_at: dict[tuple[str, str], datetime],
        started_ms: int,
        now: datetime,
    ) -> Announcement:
        event_id = trace_event_id(record.project_id, record.trace_id)
        value = ingested_event(record, event_id, self._table, snapshot, now)
        return Announcement(
            key=record.trace_id.encode(),
            value=value,
            event_id=event_id,
            ledger_key=ledger_key,
            model_version=record.model_version,
            received_at=received_at.get((record.project_id, record.trace_id)) or now,
            started_ms=started_ms,
            snapshot_id=snapshot,
        )

    def _committed_tokens(self, tokens: dict[str, set[str]]) -> dict[tuple[str, str], int]:
        """(table, token) -> snapshot id, for the tokens some snapshot of the table carries."""
        found: dict[tuple[str, str], int] = {}
        for table, wanted in tokens.items():
            try:
                metadata = self.store.catalog.load_table(self.store.identifier(table)).metadata
            except Exception:  # the table does not exist yet: nothing was committed to it
                continue
            for snapshot in metadata.snapshots:
                token = snapshot.summary.get(SNAPSHOT_TOKEN) if snapshot.summary else None
                if token in wanted:
                    found[(table, token)] = snapshot.snapshot_id
        return found

    def _stored_traces(self, trace_ids: dict[str, set[str]]) -> dict[tuple[str, str, str], int]:
        """(table, project id, trace id) -> the table's current snapshot, for the traces it holds.

        For claims whose token no snapshot carries any more: the snapshot may have been expired since
        (``IcebergStore.expire_snapshots``), and its rows are then the proof of the commit. The current
        snapshot holds them; a reader that looks for them among that snapshot's own files falls back to
        reading the table as of it.
        """
        found: dict[tuple[str, str, str], int] = {}
        for table, wanted in trace_ids.items():
            try:
                current = self.store.catalog.load_table(self.store.identifier(table)).current_snapshot()
            except Exception:  # the table does not exist yet: nothing was committed to it
                continue
            if current is None:
                continue
            row_filter = In("trace_id", sorted(wanted))  # type: ignore[call-arg,misc]
            rows = self.store.read(table, row_filter, selected_fields=("project_id", "trace_id")).to_pylist()
            for row in rows:
                found[(table, row["project_id"], row["trace_id"])] = current.snapshot_id
        return found

    async def mark_announced(self, announced: Sequence[Announcement]) -> None:
        entries = _shared_entries(Stage.DONE, [(a.snapshot_id, a.model_version) for a in announced])
        await self.ledger.put([a.ledger_key for a in announced], entries)


# ---------------------------------------------------------------------------------------------
# Feedback


class FeedbackLanding:
    """What to announce on ``feedback.received`` for a batch of ``feedback.raw``, once per feedback id."""

    def __init__(self, ledger: Ledger, redactor: Redactor) -> None:
        self.ledger = ledger
        self.redactor = redactor

    async def land(self, events: Sequence[FeedbackRaw]) -> LandingResult:
        result = LandingResult()
        batch: dict[tuple[str, str], tuple[FeedbackRecord, datetime]] = {}
        for event in events:
            record = redact_feedback(event.record, self.redactor)
            key = (record.project_id, record.feedback_id)
            if key in batch:
                result.duplicates += 1
                continue
            batch[key] = (record, event.occurred_at)
        if not batch:
            return result
        started = now_ms()
        keys = [self.ledger.key("feedback", project_id, feedback_id) for project_id, feedback_id in batch]
        claims = await self.ledger.claim(keys, Entry(Stage.ANNOUNCING, announce_started_ms=started))
        traces = await self.ledger.get(
            [self.ledger.key("trace", record.project_id, record.trace_id) for record, _ in batch.values()]
        )
        now = datetime.now(UTC)
        for ledger_key, (record, received), claim, trace in zip(
            keys, batch.values(), claims, traces, strict=True
        ):
            if claim is not None and claim.stage is Stage.DONE:
                result.duplicates += 1
                continue
            model_version = trace.model_version if trace else None
            event_id = feedback_event_id(record.project_id, record.feedback_id)
            value = to_json(
                {
                    "event_id": event_id,
                    "type": FEEDBACK_RECEIVED,
                    "schema_version": 1,
                    "occurred_at": now,
                    "producer": WORKER,
                    "project_id": record.project_id,
                    "correlation_id": record.trace_id,
                    "trace_id": record.trace_id,
                    "feedback_id": record.feedback_id,
                    "kind": record.kind,
                    "value": record.value,
                    "name": record.name,
                    "dwell_ms": record.dwell_ms,
                    "model_version": model_version,
                }
            )
            announcement = Announcement(
                key=record.trace_id.encode(),
                value=value,
                event_id=event_id,
                ledger_key=ledger_key,
                model_version=model_version,
                received_at=received,
                started_ms=claim.announce_started_ms if claim else started,
            )
            (result.fresh if claim is None else result.uncertain).append(announcement)
        return result

    async def mark_announced(self, announced: Sequence[Announcement]) -> None:
        await self.ledger.put(
            [a.ledger_key for a in announced],
            [Entry(Stage.DONE, model_version=a.model_version) for a in announced],
        )
