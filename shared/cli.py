"""The `kaizen` command: `scripts/kaizen --help` (the Makefile puts the same command behind make).

Today: `kaizen stack up|down|status` and `kaizen events` (the event catalogue). Loop status, sample
traffic, approvals and rollout controls join as the services land.
"""

from __future__ import annotations

import json
import sys

import typer
from rich.console import Console
from rich.table import Table

from shared.events import EVENT_TYPES
from shared.stack import Stack, StackError

app = typer.Typer(help="Kaizen: continuous training for LLM applications.", no_args_is_help=True)
stack_app = typer.Typer(
    help="The local stack: Kafka, Redis, S3 (moto) and MLflow on loopback.", no_args_is_help=True
)
app.add_typer(stack_app, name="stack")
console = Console()


@stack_app.command("up")
def stack_up() -> None:
    """Start every part that does not answer yet, and wait until all answer."""
    try:
        with console.status("starting the local stack"):
            Stack().up(log=console.print)
    except StackError as error:
        console.print(f"[red]stack up failed:[/red] {error}")
        raise typer.Exit(1) from error


@stack_app.command("down")
def stack_down() -> None:
    """Stop what `stack up` started, and only that."""
    Stack().down(log=console.print)


@stack_app.command("status")
def stack_status() -> None:
    """What answers where; exit 1 when a part does not answer."""
    rows = Stack().status()
    table = Table(*rows[0].keys())
    for row in rows:
        style = "green" if row["answering"] == "yes" else "red"
        table.add_row(*row.values(), style=style)
    console.print(table)
    if any(row["answering"] != "yes" for row in rows):
        raise typer.Exit(1)


@app.command("events")
def events(as_json: bool = typer.Option(False, "--json", help="Print the AsyncAPI document.")) -> None:
    """The event catalogue: every topic and what it carries."""
    if as_json:
        from shared.asyncapi import catalogue

        console.print_json(json.dumps(catalogue()))
        return
    table = Table("topic", "event", "what it says")
    for model in EVENT_TYPES:
        table.add_row(model.topic, model.__name__, (model.__doc__ or "").strip())
    console.print(table)


@app.command("approve")
def approve(
    version: str = typer.Argument(..., help="The registered model version to approve."),
    by: str = typer.Option("", "--by", help="Who approves (default: the current user)."),
    model: str = typer.Option("", "--model", help="Registered model name (default: from the settings)."),
) -> None:
    """Approve a candidate waiting at the evaluation gate (manual-approval mode): it goes to rollout."""
    from services.evaluator.approve import approve_command  # the evaluator's imports are heavy: load on use

    approve_command(version, by, model)


# The rollout controls import the rollout service (MLflow, scipy: seconds of imports), so they are mounted
# unless the command is one of the quick ones above.
QUICK_COMMANDS = {"stack", "events", "approve"}
if sys.argv[1:2] == [] or sys.argv[1] not in QUICK_COMMANDS:
    from services.rollout.cli import rollback_command, rollout_app

    app.add_typer(rollout_app, name="rollout")
    app.command("rollback")(rollback_command)


if __name__ == "__main__":
    app()
