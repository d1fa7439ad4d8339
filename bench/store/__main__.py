"""What an append costs as a table's history grows: ``python -m bench.store``.

    python -m bench.store [--appends 400] [--rows 200] [--every 100] [--repeats 5]

Two traces tables in a temporary local warehouse (SQLite catalog, as ``make demo`` runs it) get
``--appends`` commits of ``--rows`` traces each (the rows of ``bench.labeler.reads``), as the ingest
worker writes them:

- ``bounded``: the table as ``IcebergStore`` makes it (``shared.store.STREAMED``: manifests merged, old
  metadata files deleted, all but the newest 100 snapshots expired);
- ``pyiceberg transaction``: the bounded table, each append in pyiceberg's own ``Transaction``
  rather than the store's ``StagedTransaction`` (which builds the staged metadata once per state
  instead of deep-copying it on every read);
- ``unbounded``: the same table with those properties switched off, as tables were before: every
  snapshot kept, one more manifest and one more metadata file per commit.

Every ``--every`` commits the table prints the wall time of one more append (the median of
``--repeats``), the snapshots and manifests the table then holds, and the size of its metadata file.
A benchmark, never a timed test.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

from pyiceberg.table import Transaction
from rich.console import Console
from rich.table import Table

from bench.labeler.reads import rows
from shared.settings import KaizenSettings
from shared.store import KEEP_SNAPSHOTS, STREAMED, TABLE_SPECS, TRACES, IcebergStore

UNBOUNDED = {
    "commit.manifest-merge.enabled": "false",
    "write.metadata.delete-after-commit.enabled": "false",
    KEEP_SNAPSHOTS: "0",
}


def measure(variant: str, args: argparse.Namespace) -> list[tuple[int, float, int, int, int]]:
    """(appends so far, median ms of one more append, snapshots, manifests, metadata bytes) per mark."""
    home = Path(tempfile.mkdtemp(prefix=f"kaizen-bench-store-{variant.replace(' ', '-')}-"))
    store = IcebergStore(KaizenSettings(home=home))
    if variant == "pyiceberg transaction":
        store.transaction_type = Transaction
    if variant == "unbounded":
        spec = TABLE_SPECS[TRACES]
        store.catalog.create_namespace_if_not_exists(store.namespace)
        store.catalog.create_table(
            store.identifier(TRACES),
            schema=spec.schema,
            partition_spec=spec.partition_spec,
            properties={"format-version": "2", **UNBOUNDED},
        )
    store.table(TRACES)  # created (or given its properties) before any timing
    batch = rows(args.rows)
    marks: list[tuple[int, float, int, int, int]] = []
    for done in range(args.appends + 1):
        if done % args.every == 0:
            times = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                store.append(TRACES, batch)
                times.append(time.perf_counter() - started)
            table = store.table(TRACES)
            snapshot = table.current_snapshot()
            manifests = len(snapshot.manifests(table.io)) if snapshot else 0
            metadata = Path(urlparse(table.metadata_location).path).stat().st_size
            marks.append(
                (done, 1000 * statistics.median(times), len(table.metadata.snapshots), manifests, metadata)
            )
            print(f"  {variant}: {done} appends, {marks[-1][1]:.1f} ms an append", flush=True)
        if done < args.appends:
            store.append(TRACES, batch)
    return marks


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--appends", type=int, default=400, help="commits made to each table")
    parser.add_argument("--rows", type=int, default=200, help="traces per commit")
    parser.add_argument("--every", type=int, default=100, help="commits between measurements")
    parser.add_argument("--repeats", type=int, default=5, help="appends timed at each measurement")
    args = parser.parse_args()

    variants = ("bounded", "pyiceberg transaction", "unbounded")
    results = {variant: measure(variant, args) for variant in variants}
    table = Table(
        "appends so far",
        "bounded: ms an append",
        "snapshots / manifests",
        "metadata file",
        "bounded, pyiceberg's transaction: ms an append",
        "vs bounded",
        "unbounded: ms an append",
        "snapshots / manifests",
        "metadata file",
        "vs bounded",
        title=f"traces table: one append of {args.rows} rows as the history grows",
        caption=f"bounded: {', '.join(f'{k}={v}' for k, v in STREAMED.items())}",
    )
    for bounded, plain, unbounded in zip(*(results[variant] for variant in variants), strict=True):
        table.add_row(
            str(bounded[0]),
            f"{bounded[1]:.1f}",
            f"{bounded[2]} / {bounded[3]}",
            f"{bounded[4] / 1024:.0f} KiB",
            f"{plain[1]:.1f}",
            f"{plain[1] / bounded[1]:.1f}x",
            f"{unbounded[1]:.1f}",
            f"{unbounded[2]} / {unbounded[3]}",
            f"{unbounded[4] / 1024:.0f} KiB",
            f"{unbounded[1] / bounded[1]:.1f}x",
        )
    Console(width=200).print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
