"""Manual controls of the canary controller, for operators: ``kaizen rollout status|pause|resume|abort|
promote`` and ``kaizen rollback``.

Each function acts on the same Redis state as the running controller (under its lock), moves MLflow
aliases where it promotes or rolls back, and publishes its decision on rollout.stage like the
controller does. ``cli`` is the typer sub-app that ``shared/cli.py`` mounts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from services.rollout.app import make_router
from services.rollout.controller import Controller
from services.rollout.settings import RolloutSettings
from shared.bus import create_broker, declare_publisher, ensure_topics, publish_event
from shared.events import ROLLOUT_STAGE, RolloutStage
from shared.registry import ModelRegistry
from shared.state import RedisState

T = TypeVar("T")


@asynccontextmanager
async def controller(settings: RolloutSettings) -> AsyncIterator[Controller]:
    """A controller bound to the deployment's state, publishing with a short-lived producer."""
    from prometheus_client import CollectorRegistry

    await ensure_topics(settings, [ROLLOUT_STAGE])
    broker = create_broker(settings, "rollout-cli", registry=CollectorRegistry())
    publisher = declare_publisher(broker, settings, RolloutStage)
    await broker.connect()
    state = RedisState(settings)
    try:

        async def publish(event: RolloutStage) -> None:
            await publish_event(publisher, event)

        registry = await asyncio.to_thread(ModelRegistry, settings)
        yield Controller(settings, state, registry, make_router(settings, state), publish)
    finally:
        await state.close()
        await broker.stop()


async def _with(settings: RolloutSettings | None, act: Callable[[Controller], Awaitable[T]]) -> T:
    async with controller(settings or RolloutSettings()) as bound:
        return await act(bound)


async def status(settings: RolloutSettings | None = None) -> dict[str, Any]:
    return await _with(settings, lambda c: c.status())


async def pause(
    settings: RolloutSettings | None = None, reason: str = "paused by an operator"
) -> RolloutStage:
    return await _with(settings, lambda c: c.pause(reason))


async def resume(
    settings: RolloutSettings | None = None, reason: str = "resumed by an operator"
) -> RolloutStage:
    return await _with(settings, lambda c: c.resume(reason))


async def abort(
    settings: RolloutSettings | None = None, reason: str = "aborted by an operator"
) -> RolloutStage:
    return await _with(settings, lambda c: c.abort(reason))


async def promote(
    settings: RolloutSettings | None = None, reason: str = "promoted by an operator"
) -> RolloutStage:
    return await _with(settings, lambda c: c.promote(reason))


async def rollback(
    settings: RolloutSettings | None = None, reason: str = "rolled back by an operator"
) -> RolloutStage:
    return await _with(settings, lambda c: c.rollback(reason))
