"""The `kaizen` command: `scripts/kaizen --help` (the Makefile puts the same command behind make).

`kaizen stack up|down|status` (the local stack), `kaizen services up|down|status` (the loop's services
as processes), `kaizen loop status` (traces, labels, datasets, runs, versions, rollout), `kaizen send`
(sample traces and feedback to ingest), `kaizen events` (the event catalogue), `kaizen approve` and the
rollout controls. Heavy modules are imported by the command that needs them, never at startup.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

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
services_app = typer.Typer(
    help="The loop's services as local processes (the containers' entry points).", no_args_is_help=True
)
app.add_typer(services_app, name="services")
loop_app = typer.Typer(help="The closed loop: where its data stands.", no_args_is_help=True)
app.add_typer(loop_app, name="loop")
console = Console()
DEMO_CONFIG_PATH = Path("demo/config/demo.yaml")


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


@services_app.command("up")
def services_up(
    config: Annotated[
        Path, typer.Option("--config", help="Loop configuration whose settings they run with.")
    ] = DEMO_CONFIG_PATH,
) -> None:
    """Start the kernel service and every service (settings: the config, then KAIZEN_* from the
    environment), wait until each is ready, and leave them running (`kaizen services down` stops them)."""
    from demo.config import load_config
    from demo.loop import LoopPorts, loop_services
    from shared.kernels.local import build_kernels
    from shared.services import ServiceError, Supervisor
    from shared.settings import KaizenSettings

    settings = KaizenSettings()
    ports = LoopPorts.pick()
    supervisor = Supervisor(settings.home, log=console.print)
    try:
        with console.status("building the kernel service"):
            binary = build_kernels()
        with console.status("starting the services"):
            supervisor.start(loop_services(load_config(config), settings, ports, binary))
    except ServiceError as error:
        console.print(f"[red]services up failed:[/red] {error}")
        raise typer.Exit(1) from error
    console.print(
        f"gateway http://127.0.0.1:{ports.gateway}/v1, ingest http://127.0.0.1:{ports.ingest}, "
        f"kernels 127.0.0.1:{ports.kernels}"
    )


@services_app.command("down")
def services_down() -> None:
    """Stop every service `services up` (or the demo) started: SIGTERM, then SIGKILL after a grace."""
    from shared.services import Supervisor
    from shared.settings import KaizenSettings

    stopped = Supervisor(KaizenSettings().home, log=console.print).stop()
    if not stopped:
        console.print("no services recorded as running")


@services_app.command("status")
def services_status() -> None:
    """Which services run, with their pids and logs; exit 1 when one has exited."""
    from shared.services import Supervisor
    from shared.settings import KaizenSettings

    rows = Supervisor(KaizenSettings().home).status()
    if not rows:
        console.print("no services recorded (kaizen services up)")
        return
    table = Table(*rows[0].keys())
    for row in rows:
        table.add_row(*row.values(), style="green" if row["state"] == "running" else "red")
    console.print(table)
    if any(row["state"] != "running" for row in rows):
        raise typer.Exit(1)


@loop_app.command("status")
def loop_status(as_json: bool = typer.Option(False, "--json", help="Print the document as JSON.")) -> None:
    """Traces, labels and datasets (Iceberg), runs, versions and aliases (MLflow), the rollout."""
    from demo.status import loop_status as read_status
    from shared.settings import KaizenSettings

    with console.status("reading the tables, the registry and the rollout state"):
        document = read_status(KaizenSettings())
    if as_json:
        console.print_json(json.dumps(document, default=str))
        return
    table = Table("what", "count", title=f"project {document['project']}")
    for name, value in {**document["tables"], **document["registry"]}.items():
        if name != "aliases":
            table.add_row(name, str(value))
    console.print(table)
    aliases = document["registry"]["aliases"]
    console.print(
        "aliases: " + (", ".join(f"{k} -> v{v}" for k, v in aliases.items()) or "none (base serves)")
    )
    rollout = document["rollout"]
    active = rollout.get("rollout")
    if active:
        console.print(f"rollout: version {active.get('model_version')} at weight {rollout['weight']:.2f}")
    else:
        console.print("rollout: none running")
    if rollout.get("last"):
        console.print(f"last decision: {json.dumps(rollout['last'], default=str)[:300]}")


@app.command("send")
def send(
    count: int = typer.Option(10, "--count", min=1, help="Sample traces to send."),
    url: str = typer.Option("http://127.0.0.1:4318", "--url", help="Ingest service base URL."),
    public_key: str = typer.Option("pk-kaizen-dev", "--public-key", envvar="KAIZEN_PUBLIC_KEY"),
    secret_key: str = typer.Option("kaizen-dev-only", "--secret-key", envvar="KAIZEN_SECRET_KEY"),
) -> None:
    """Send sample traces (with consent) and a feedback signal for each to the ingest service."""
    import asyncio

    from rich.progress import Progress

    from shared.client import ClientError, KaizenClient
    from shared.events import FeedbackRecord
    from shared.samples import sample_trace
    from shared.settings import KaizenSettings

    project = KaizenSettings().project_id

    async def run() -> int:
        sent = 0
        async with KaizenClient.over_http(url, public_key=public_key, secret_key=secret_key) as client:
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task("sending traces and feedback", total=count)
                for _ in range(count):
                    trace = sample_trace(project, consent=True)
                    await client.send_trace(trace)
                    await client.send_feedback(
                        FeedbackRecord(trace_id=trace.trace_id, project_id=project, kind="copy")
                    )
                    sent += 1
                    progress.advance(task)
        return sent

    try:
        sent = asyncio.run(run())
    except (ClientError, OSError) as error:
        console.print(f"[red]send failed:[/red] {error}")
        raise typer.Exit(1) from error
    console.print(f"{sent} traces and {sent} feedback signals accepted by {url}")


# The rollout controls import the rollout service (MLflow, scipy: seconds of imports), so they are mounted
# unless the command is one of the quick ones above.
QUICK_COMMANDS = {"stack", "events", "approve", "services", "loop", "send"}
if sys.argv[1:2] == [] or sys.argv[1] not in QUICK_COMMANDS:
    from services.rollout.cli import rollback_command, rollout_app

    app.add_typer(rollout_app, name="rollout")
    app.command("rollback")(rollback_command)


if __name__ == "__main__":
    app()
