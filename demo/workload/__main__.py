"""``python -m demo.workload``: play the simulated users against an OpenAI-compatible endpoint.

Feedback goes to the ingest service over HTTP (``--ingest-url`` with the project's API key), straight
to Kafka (``--kafka``, with the deployment's ``KAIZEN_*`` settings), or nowhere (the default: the
answers are only scored). Prints what the users saw, per model version.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from demo.workload.preference import load_preference
from demo.workload.prompts import Split, WorkloadError, load_prompts
from demo.workload.users import WorkloadConfig, WorkloadReport, run_workload
from shared.client import KaizenClient
from shared.settings import KaizenSettings

console = Console()


def version_table(report: WorkloadReport) -> Table:
    table = Table(title=f"{len(report.turns)} requests in {report.elapsed_s:.1f} s")
    for column in ("model version", "answered", "preference", "grounding", "words", "feedback", "rated"):
        table.add_column(column, justify="left" if column == "model version" else "right")
    for stats in report.by_version().values():
        table.add_row(
            stats.model_version,
            str(stats.answered),
            f"{stats.mean_preference:.3f}",
            f"{stats.mean_grounding:.3f}",
            f"{stats.mean_words:.1f}",
            "-" if stats.mean_feedback is None else f"{stats.mean_feedback:.3f}",
            str(stats.rated),
        )
    return table


def main(
    base_url: Annotated[str, typer.Option(help="OpenAI-compatible endpoint, with /v1.")],
    model: Annotated[str, typer.Option(help="Model name sent in requests.")] = "kaizen",
    users: Annotated[int, typer.Option(help="Simulated users.")] = 20,
    requests: Annotated[int, typer.Option(help="Chat requests in total.")] = 200,
    concurrency: Annotated[int, typer.Option(help="Requests in flight at most.")] = 4,
    seed: Annotated[int, typer.Option(help="Seeds the plan, the users and their reactions.")] = 0,
    consent_share: Annotated[float, typer.Option(help="Share of users who consent.")] = 0.8,
    split: Annotated[str, typer.Option(help="train, held_out or all.")] = "train",
    max_tokens: Annotated[int, typer.Option(help="Completion token limit.")] = 256,
    project_id: Annotated[str, typer.Option(help="Project of the feedback.")] = "demo",
    prompts: Annotated[Path | None, typer.Option(help="Prompts file (default: the bundled one).")] = None,
    preference: Annotated[Path | None, typer.Option(help="Preference file (default: bundled).")] = None,
    ingest_url: Annotated[str | None, typer.Option(help="Send feedback to this ingest service.")] = None,
    public_key: Annotated[str | None, typer.Option(envvar="KAIZEN_DEMO_PUBLIC_KEY")] = None,
    secret_key: Annotated[str | None, typer.Option(envvar="KAIZEN_DEMO_SECRET_KEY")] = None,
    kafka: Annotated[bool, typer.Option(help="Send feedback straight to Kafka.")] = False,
) -> None:
    """Play the simulated users and print what they saw per model version."""
    if split not in ("train", "held_out", "all"):
        raise typer.BadParameter(f"split must be train, held_out or all, not {split!r}")
    if ingest_url and kafka:
        raise typer.BadParameter("give --ingest-url or --kafka, not both")
    feedback: KaizenClient | None = None
    if ingest_url:
        if not public_key or not secret_key:
            raise typer.BadParameter("--ingest-url needs --public-key and --secret-key")
        feedback = KaizenClient.over_http(ingest_url, public_key=public_key, secret_key=secret_key)
    elif kafka:
        feedback = KaizenClient.over_kafka(KaizenSettings())
    split_name: Split = "train" if split == "train" else "held_out" if split == "held_out" else "all"
    try:
        config = WorkloadConfig(
            base_url=base_url,
            model=model,
            project_id=project_id,
            users=users,
            requests=requests,
            concurrency=concurrency,
            seed=seed,
            consent_share=consent_share,
            split=split_name,
            max_tokens=max_tokens,
        )
        report = asyncio.run(_run(config, prompts, preference, feedback))
    except WorkloadError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    console.print(version_table(report))
    console.print(
        f"feedback sent: {report.feedback_sent}, refused: {len(report.feedback_errors)}, "
        f"failed requests: {len(report.errors)}"
    )
    for error in (report.errors + report.feedback_errors)[:3]:
        console.print(f"[yellow]{error}[/yellow]")


async def _run(
    config: WorkloadConfig, prompts: Path | None, preference: Path | None, feedback: KaizenClient | None
) -> WorkloadReport:
    if feedback is None:
        return await run_workload(config, load_prompts(prompts), load_preference(preference), None)
    async with feedback:
        return await run_workload(config, load_prompts(prompts), load_preference(preference), feedback)


if __name__ == "__main__":
    typer.run(main)
