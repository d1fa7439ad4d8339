"""How the labeler finds a trace's row as the traces table grows: ``python -m bench.labeler.reads``.

    python -m bench.labeler.reads [--appends 400] [--rows 4] [--every 100] [--repeats 5]

A traces table in a temporary local warehouse (SQLite catalog, as ``make demo`` runs it) gets
``--appends`` commits of ``--rows`` traces each, as the ingest worker writes them. Every ``--every``
commits, the two traces of the latest commit are read back, as the labeler reads the rows a
``trace.ingested`` event points at, in two ways:

- as of the snapshot (``IcebergStore.read_snapshot``): every data file of the table at that snapshot
  whose statistics do not rule the ids out;
- from the files that snapshot added (``IcebergStore.read_added``, pyiceberg's incremental append scan).

The table prints the process CPU seconds per read (the median of ``--repeats``) and the data files
each way planned. A benchmark, never a timed test.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from pyiceberg.expressions import In
from rich.console import Console
from rich.table import Table

from shared.settings import KaizenSettings
from shared.store import TRACES, IcebergStore


def rows(count: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [
        {
            "trace_id": uuid.uuid4().hex,
            "project_id": "bench",
            "ts": now,
            "model": "SmolLM2-135M-Instruct",
            "model_version": "base",
            "consent": True,
            "prompt": "How long can I return unworn boots?",
            "response": "Unworn items may be returned within 45 days of delivery for a full refund.",
            "contexts": ["Returns: unworn items within 45 days of delivery, full refund."],
            "status": "ok",
            "ingested_at": now,
        }
        for _ in range(count)
    ]


def cpu_seconds(read: Callable[..., pa.Table], *args: Any, repeats: int) -> tuple[float, int]:
    times, found = [], 0
    for _ in range(repeats):
        started = time.process_time()
        found = read(*args).num_rows
        times.append(time.process_time() - started)
    return statistics.median(times), found


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.labeler.reads", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--appends", type=int, default=400, help="Commits to the traces table.")
    parser.add_argument("--rows", type=int, default=4, help="Traces per commit.")
    parser.add_argument("--every", type=int, default=100, help="Measure after every this many commits.")
    parser.add_argument("--repeats", type=int, default=5, help="Reads per measurement (the median counts).")
    options = parser.parse_args()

    table = Table(
        title=f"Reading the 2 traces of the latest commit ({options.rows} traces a commit), CPU s per read"
    )
    for column in ("commits", "as of the snapshot", "files", "added by the snapshot", "files", "speed-up"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory(prefix="kaizen-bench-reads-") as home:
        settings = KaizenSettings(home=Path(home), catalog={"namespace": "bench"})  # type: ignore[arg-type]
        store = IcebergStore(settings)
        for commit in range(1, options.appends + 1):
            batch = rows(options.rows)
            snapshot_id = store.append(TRACES, batch)
            if commit % options.every and commit != options.appends:
                continue
            assert snapshot_id is not None
            ids = In("trace_id", [batch[0]["trace_id"], batch[-1]["trace_id"]])  # type: ignore[call-arg,misc]
            repeats = options.repeats
            full, full_rows = cpu_seconds(store.read_snapshot, TRACES, snapshot_id, ids, repeats=repeats)
            added, added_rows = cpu_seconds(store.read_added, TRACES, snapshot_id, ids, repeats=repeats)
            assert full_rows == added_rows == 2, (full_rows, added_rows)
            current = store.table(TRACES)
            full_files = len(list(current.scan(row_filter=ids, snapshot_id=snapshot_id).plan_files()))
            added_scan = store.added_scan(TRACES, snapshot_id, ids)
            assert added_scan is not None
            table.add_row(
                str(commit),
                f"{full:.3f}",
                str(full_files),
                f"{added:.3f}",
                str(len(list(added_scan.plan_files()))),
                f"{full / added:.1f}x" if added else "-",
            )
    Console().print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
