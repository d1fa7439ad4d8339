"""``python -m demo [--config demo/config/demo.yaml]`` (what ``make demo`` runs): the closed loop, by itself.

The local stack, the kernel service, every service as its own process, simulated users in rounds,
until a new champion serves 100% of the traffic or the configuration's time limit; then the
before/after table on held-out prompts, the stage times, and a report under ``.kaizen/reports/``.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from demo.config import DEMO_CONFIG, LoopConfig, load_config
from demo.loop import STAGES, LoopResult, Timeline, run_loop
from demo.report import comparison, write_answers, write_html, write_timeline
from demo.workload.compare import format_table
from shared.settings import KaizenSettings

console = Console()


def run_settings(tag: str | None = None, home: Path | None = None) -> KaizenSettings:
    """Settings of one run: its own project, topics, namespace, Redis keys and registered model."""
    tag = tag or uuid.uuid4().hex[:8]
    settings = KaizenSettings(project_id=f"demo-{tag}")
    if home is not None:  # before anything is derived from it: the catalog and warehouse live under it
        settings = KaizenSettings(project_id=f"demo-{tag}", home=home)
    settings.kafka.topic_prefix = f"demo-{tag}."
    settings.catalog.namespace = f"demo_{tag}"
    settings.redis.key_prefix = f"demo-{tag}:"
    settings.mlflow.registered_model = f"kaizen-demo-{tag}"
    return settings


def stage_table(timeline: Timeline) -> Table:
    table = Table("stage", "reached at (s)", "took (s)", "detail", title="The loop, stage by stage")
    for row in timeline.stage_durations():
        reached = row["at_s"] is not None
        table.add_row(
            row["meaning"],
            f"{row['at_s']:.1f}" if reached else "-",
            f"{row['took_s']:.1f}" if reached else "-",
            row["detail"][:80],
            style=None if reached else "dim",
        )
    return table


def progress_line(timeline: Timeline, number: int) -> str:
    counts = timeline.counts
    last = timeline.last_stage()
    meaning = dict(STAGES).get(last or "", "nothing yet")
    return (
        f"round {number}: traces {counts['trace.ingested']}, labels {counts['trace.labeled']}, "
        f"datasets {counts['dataset.ready']}, checkpoints {counts['checkpoint.trained']}, "
        f"passed {counts['eval.passed']}, rollout events {counts['rollout.stage']} | furthest: {meaning}"
    )


def run_demo(config: LoopConfig, settings: KaizenSettings, *, stack: bool = True) -> tuple[LoopResult, Path]:
    """The whole demo: stack, loop, reports. Returns the result and the report directory."""
    if stack:
        from shared.stack import Stack

        console.rule("[bold]The local stack")
        Stack(settings).up(log=lambda line: console.print(f"  {line}"))
    console.rule(f"[bold]The loop: {config.name}")
    console.print(
        f"project {settings.project_id}, topics {settings.kafka.topic_prefix}*, "
        f"registered model {settings.mlflow.registered_model}, time limit {config.time_limit_s:.0f} s"
    )
    with console.status("starting the kernel service and the services") as status:

        def log(line: str) -> None:
            console.print(f"  {line}")

        def on_progress(timeline: Timeline, number: int) -> None:
            line = progress_line(timeline, number)
            status.update(line)
            console.print(f"  {line}")

        result = run_loop(config, settings, log=log, on_progress=on_progress)
    rows = comparison(result, users=config.comparison.users, seed=config.seed)
    reports = settings.home / "reports" / f"{time.strftime('%Y%m%d-%H%M%S')}-{settings.project_id}"
    write_timeline(reports / "timeline.json", result, rows, config.name)
    write_answers(reports / "answers.json", result)
    write_html(reports / "report.html", result, rows, config.name)
    console.print(stage_table(result.timeline))
    if rows:
        console.rule("[bold]Held-out prompts: base vs new champion")
        console.print(format_table(rows, before="base", after=f"v{result.timeline.candidate_version}"))
    outcome = result.timeline.stopped_because
    if result.timeline.promoted:
        console.rule(f"[bold green]{outcome}")
    else:
        console.rule("[bold red]the loop did not close")
        last = result.timeline.last_stage()
        console.print(f"furthest stage: {dict(STAGES).get(last or '', 'none')}; stopped because: {outcome}")
        for failure in result.timeline.failures[-5:]:
            console.print(f"  [red]{failure}")
    console.print(f"report: {reports / 'report.html'}; stage times: {reports / 'timeline.json'}")
    console.print(f"service logs: {settings.home / 'logs'}")
    return result, reports


def main(
    config: Annotated[Path, typer.Option(help="Loop configuration (YAML).")] = DEMO_CONFIG,
    stack: Annotated[bool, typer.Option(help="Start the local stack first.")] = True,
) -> None:
    """Run the closed loop until a new champion serves 100% (or the time limit) and report."""
    from shared.services import ServiceError, interrupt_on_sigterm

    interrupt_on_sigterm()  # `kill` or a CI timeout stops the loop's services too, as Ctrl-C does
    try:
        result, _ = run_demo(load_config(config), run_settings(), stack=stack)
    except ServiceError as error:
        console.rule("[bold red]the loop did not start")
        console.print(str(error))
        raise typer.Exit(1) from error
    raise typer.Exit(0 if result.timeline.promoted else 1)


if __name__ == "__main__":
    typer.run(main)
