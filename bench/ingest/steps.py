"""Ingest, step by step: CPU microseconds a span of each step of the HTTP intake and of the worker.

    python -m bench.ingest.steps [--batches 50] [--repeat 5]

One process, no Kafka, no Redis: every step runs on the same payloads as ``python -m bench.ingest``
(OTLP protobuf batches of 100 one-span traces), so the table says where the CPU of a span goes, and
what a change to one step saves. The Iceberg append writes to a throwaway local warehouse. Each figure
is the fastest of ``--repeat`` runs (the least disturbed by other work on the machine), with the
garbage collector tuned as the services tune it.

What the table leaves out is what needs the servers: the Kafka clients, the Redis ledger, the HTTP
server and FastStream. ``python -m bench.ingest`` gives each process's whole CPU time a span; the
difference is theirs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.ingest.__main__ import SPANS_PER_BATCH, Batches
from services.ingest.intake import raw_event
from services.ingest.landing import ingested_event, trace_columns, trace_event_id
from services.ingest.mapping import map_spans
from services.ingest.otlp import decode_protobuf
from services.ingest.redaction import Redactor, redact_fields, redact_trace
from services.ingest.runtime import tune_gc
from services.ingest.settings import IngestSettings
from services.ingest.validation import decode_events
from shared.events import TraceRaw
from shared.store import TRACES, IcebergStore

PROJECT = "bench"


def fastest(step: Callable[[], Any], repeat: int) -> float:
    """The least CPU seconds of ``repeat`` runs of ``step``."""
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        step()
        best = min(best, time.process_time() - started)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=50, help="OTLP batches of 100 spans per run")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each step; the fastest counts")
    args = parser.parse_args()
    tune_gc()  # as both entry points do
    batches = Batches()
    bodies = [batches.next() for _ in range(args.batches)]
    spans = args.batches * SPANS_PER_BATCH
    redactor = Redactor()
    occurred_at = datetime.now(UTC).isoformat()

    # The HTTP intake's steps (services.ingest.intake.Intake.accept_traces), one at a time, with
    # the services' own functions.
    decoded = [decode_protobuf(body) for body in bodies]
    mapped = [map_spans(d.spans, PROJECT) for d in decoded]
    records = [fields for m in mapped for fields in m.records]

    def redact_all() -> None:
        for fields in records:
            redact_fields(dict(fields), redactor)

    def envelope_all() -> list[bytes]:
        return [raw_event(fields, PROJECT, occurred_at) for fields in records]

    for fields in records:
        redact_fields(fields, redactor)
    values = envelope_all()
    http_steps: list[tuple[str, Callable[[], Any]]] = [
        ("decode the protobuf body", lambda: [decode_protobuf(body) for body in bodies]),
        ("map spans to trace records", lambda: [map_spans(d.spans, PROJECT) for d in decoded]),
        ("redact the records", redact_all),
        ("write the trace.raw events (JSON)", envelope_all),
    ]

    # The worker's steps (services.ingest.app.Worker.land_traces and landing.TraceLanding.land).
    events: list[TraceRaw] = [event for _, event in decode_events(values, TraceRaw).events]
    now = datetime.now(UTC)

    def announce_all() -> list[bytes]:
        return [
            ingested_event(
                e.record, trace_event_id(e.record.project_id, e.record.trace_id), "kaizen.traces", 1, now
            )
            for e in events
        ]

    with tempfile.TemporaryDirectory() as home:
        settings = IngestSettings(project_id=PROJECT, home=Path(home))
        store = IcebergStore(settings)
        store.table(TRACES)
        trace_records = [e.record for e in events]
        chunk = 5000  # the worker's largest batch (ingest.batch_max_records)
        chunks = [
            trace_columns(trace_records[start : start + chunk], now)
            for start in range(0, len(trace_records), chunk)
        ]

        def append_all() -> None:
            for columns in chunks:
                store.append_columns(TRACES, columns)

        worker_steps: list[tuple[str, Callable[[], Any]]] = [
            ("validate the trace.raw events (pydantic)", lambda: decode_events(values, TraceRaw)),
            ("check the records for PII again", lambda: [redact_trace(e.record, redactor) for e in events]),
            ("build the table columns", lambda: trace_columns(trace_records, now)),
            ("append to Iceberg (Arrow + Parquet + commit)", append_all),
            ("write the trace.ingested events (JSON)", announce_all),
        ]
        timings = [
            (side, name, fastest(step, args.repeat))
            for side, steps in (("HTTP intake", http_steps), ("worker", worker_steps))
            for name, step in steps
        ]

    print(f"Ingest steps: {spans} spans ({args.batches} OTLP batches of {SPANS_PER_BATCH} one-span traces), ")
    print(f"CPU microseconds a span, the fastest of {args.repeat} runs, one process")
    print()
    header = f"| {'process':<11} | {'step':<46} | {'us/span':>7} |"
    print(header)
    print("|" + "|".join("-" * len(cell) for cell in header.split("|")[1:-1]) + "|")
    for side in ("HTTP intake", "worker"):
        total = 0.0
        for where, name, seconds in timings:
            if where == side:
                total += seconds
                print(f"| {side:<11} | {name:<46} | {seconds / spans * 1e6:>7.1f} |")
        print(f"| {side:<11} | {'all of the above':<46} | {total / spans * 1e6:>7.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
