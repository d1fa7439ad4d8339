"""The rollout commands of the ``kaizen`` CLI: ``kaizen rollout status|pause|resume|abort|promote`` and
``kaizen rollback``. ``shared/cli.py`` mounts them::

    from services.rollout.cli import rollback_command, rollout_app
    app.add_typer(rollout_app, name="rollout")
    app.command("rollback")(rollback_command)

Settings come from the environment (``KAIZEN_*``), as for the services.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import Any, TypeVar

import typer
from rich.console import Console

from services.rollout import controls
from services.rollout.errors import RolloutError
from services.rollout.settings import RolloutSettings
from shared.events import RolloutStage
from shared.registry import RegistryError

T = TypeVar("T")

rollout_app = typer.Typer(help="The canary rollout: status and manual controls.", no_args_is_help=True)
console = Console()

ReasonOption = typer.Option(None, "--reason", "-r", help="Why, recorded in rollout.stage and MLflow.")


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coroutine)
    except (RolloutError, RegistryError) as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error


def _decided(event: RolloutStage) -> None:
    console.print(
        f"[bold]{event.decision}[/bold] version {event.model_version} "
        f"(stage {event.stage}, canary weight {event.canary_weight:.0%}): {event.reason}"
    )


@rollout_app.command("status")
def status_command(as_json: bool = typer.Option(False, "--json", help="Print the status as JSON.")) -> None:
    """The running rollout, its live analysis, the queue and the routing table."""
    document = _run(controls.status(RolloutSettings()))
    if as_json:
        console.print_json(json.dumps(document))
        return
    rollout = document["rollout"]
    routing = document["routing"]
    console.print(
        f"champion {routing['champion_version']}, canary {routing['canary_version'] or '-'} "
        f"at {routing['canary_weight']:.0%}{' (shadow)' if routing['shadow'] else ''}"
    )
    if rollout is None:
        console.print("no rollout running")
    else:
        state = "paused" if rollout["paused"] else "running"
        console.print(
            f"rollout of version {rollout['model_version']}: {state}, stage {rollout['stage']} "
            f"of {document['plan']}, {rollout['extensions']} extensions"
        )
        for verdict in document.get("analysis", []):
            console.print(f"  {verdict['metric']}: {verdict['status']} ({verdict['detail']})")
    if document["queue"]:
        console.print(f"queued: {', '.join(document['queue'])}")


@rollout_app.command("pause")
def pause_command(reason: str | None = ReasonOption) -> None:
    """Stop the stage clock and the analysis; weights stay as they are."""
    _decided(_run(controls.pause(RolloutSettings(), reason or "paused by an operator")))


@rollout_app.command("resume")
def resume_command(reason: str | None = ReasonOption) -> None:
    """Restart the stage clock where it stopped."""
    _decided(_run(controls.resume(RolloutSettings(), reason or "resumed by an operator")))


@rollout_app.command("abort")
def abort_command(reason: str | None = ReasonOption) -> None:
    """Canary weight to 0 now; the champion stays."""
    _decided(_run(controls.abort(RolloutSettings(), reason or "aborted by an operator")))


@rollout_app.command("promote")
def promote_command(reason: str | None = ReasonOption) -> None:
    """Make the canary the champion now (the old champion keeps alias `previous`)."""
    _decided(_run(controls.promote(RolloutSettings(), reason or "promoted by an operator")))


def rollback_command(reason: str | None = ReasonOption) -> None:
    """Return the champion alias to the version holding `previous`, at once."""
    _decided(_run(controls.rollback(RolloutSettings(), reason or "rolled back by an operator")))


rollout_app.command("rollback")(rollback_command)
