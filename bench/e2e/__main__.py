"""Time from the first trace to a new champion at 100%, split by stage of the loop.

    python -m bench.e2e                       # the reduced loop (tiny random llama), then its stage times
    python -m bench.e2e --config demo/config/demo.yaml
    python -m bench.e2e --timeline .kaizen/reports/<run>/timeline.json   # print a finished run's

Runs the demo's driver (``demo.loop.run_loop`` through ``demo.__main__.run_demo``: the real services as
processes on the local stack) and prints one row per stage: when it was reached, counted from the first
request of simulated traffic, and how long it took after the stage before it (ingest to label, label to
dataset, training, evaluation, each canary stage, promotion). A benchmark, never a timed test.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()


def stage_table(document: dict[str, Any]) -> Table:
    table = Table(
        "stage",
        "reached at (s)",
        "took (s)",
        title=f"{document.get('config', 'loop')}: {document.get('stopped_because', '')}",
    )
    for row in document["stages"]:
        reached = row["at_s"] is not None
        table.add_row(
            row["meaning"],
            f"{row['at_s']:.1f}" if reached else "not reached",
            f"{row['took_s']:.1f}" if reached else "-",
        )
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=None, help="Loop configuration (default: reduced).")
    parser.add_argument("--timeline", type=Path, default=None, help="Print a finished run's timeline.json.")
    parser.add_argument("--no-stack", action="store_true", help="Do not start the local stack first.")
    args = parser.parse_args()
    if args.timeline is not None:
        document = json.loads(args.timeline.read_text())
    else:
        from demo.__main__ import run_demo, run_settings
        from demo.config import REDUCED_CONFIG, load_config

        _, reports = run_demo(
            load_config(args.config or REDUCED_CONFIG), run_settings(), stack=not args.no_stack
        )
        document = json.loads((reports / "timeline.json").read_text())
    console.print(stage_table(document))
    return (
        0 if any(row["stage"] == "promoted" and row["at_s"] is not None for row in document["stages"]) else 1
    )


if __name__ == "__main__":
    raise SystemExit(main())
