"""The dashboard's FastAPI app: ``create_app(settings)``; ``python -m services.dashboard`` serves it.

Routes: ``/`` the page, ``/api/summary`` everything the page shows as JSON, ``/api/<section>`` one
section (traces, rewards, datasets, registry, rollout), ``/healthz`` and ``/readyz``. A section whose
source does not answer is reported in ``errors`` and the others still show.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse

from services.dashboard import page, sources
from services.dashboard.settings import DashboardSettings
from services.dashboard.timeline import RolloutFeed
from services.dashboard.views import (
    DatasetSummary,
    Registry,
    RewardDistribution,
    RolloutTimeline,
    Summary,
    TracesPerMinute,
)
from shared.store import IcebergStore

T = TypeVar("T")


class Dashboard:
    """Reads each section from its source, in threads, and collects what failed."""

    def __init__(self, settings: DashboardSettings, store: IcebergStore, feed: RolloutFeed) -> None:
        self.settings = settings
        self.store = store
        self.feed = feed
        self.log = logging.getLogger("kaizen.dashboard")

    def _since(self, now: datetime) -> datetime:
        return now - timedelta(minutes=self.settings.dashboard.window_minutes)

    async def traces(self) -> TracesPerMinute:
        now = datetime.now(UTC)
        return await asyncio.to_thread(sources.traces_per_minute, self.store, self._since(now), now)

    async def rewards(self) -> RewardDistribution:
        since = self._since(datetime.now(UTC))
        return await asyncio.to_thread(
            sources.reward_distribution, self.store, since, self.settings.dashboard.reward_buckets
        )

    async def datasets(self) -> list[DatasetSummary]:
        return await asyncio.to_thread(sources.datasets, self.store)

    async def registry(self) -> Registry:
        options = self.settings.dashboard
        return await asyncio.to_thread(
            sources.registry, self.settings, options.max_runs, options.max_versions
        )

    def rollout(self) -> RolloutTimeline:
        return self.feed.timeline()

    async def summary(self) -> Summary:
        errors: dict[str, str] = {}

        async def guarded(name: str, read: Callable[[], Awaitable[T]]) -> T | None:
            try:
                return await read()
            except Exception as exc:  # one source down must not blank the page: show why instead
                self.log.warning("section unreadable", extra={"section": name, "error": repr(exc)})
                errors[name] = f"{type(exc).__name__}: {exc}"
                return None

        traces, rewards, datasets, registry = await asyncio.gather(
            guarded("traces", self.traces),
            guarded("rewards", self.rewards),
            guarded("datasets", self.datasets),
            guarded("registry", self.registry),
        )
        return Summary(
            project_id=self.settings.project_id,
            generated_at=datetime.now(UTC),
            traces=traces,
            rewards=rewards,
            datasets=datasets,
            registry=registry,
            rollout=self.rollout(),
            errors=errors,
        )


def get_dashboard(request: Request) -> Dashboard:
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard


DashboardDep = Annotated[Dashboard, Depends(get_dashboard)]

api = APIRouter(prefix="/api", tags=["api"])


@api.get("/summary")
async def summary(dashboard: DashboardDep) -> Summary:
    return await dashboard.summary()


@api.get("/traces")
async def traces(dashboard: DashboardDep) -> TracesPerMinute:
    return await dashboard.traces()


@api.get("/rewards")
async def rewards(dashboard: DashboardDep) -> RewardDistribution:
    return await dashboard.rewards()


@api.get("/datasets")
async def datasets(dashboard: DashboardDep) -> list[DatasetSummary]:
    return await dashboard.datasets()


@api.get("/registry")
async def registry(dashboard: DashboardDep) -> Registry:
    return await dashboard.registry()


@api.get("/rollout")
async def rollout(dashboard: DashboardDep) -> RolloutTimeline:
    return dashboard.rollout()


pages = APIRouter(tags=["page"])


@pages.get("/", response_class=HTMLResponse)
async def index(dashboard: DashboardDep) -> HTMLResponse:
    rendered = page.render(await dashboard.summary(), dashboard.settings.dashboard.refresh_s)
    return HTMLResponse(rendered)


@pages.get("/healthz")
async def healthz(dashboard: DashboardDep) -> dict[str, Any]:
    """Alive (the page still renders with a source down; each section says what it could not read)."""
    return {"status": "ok", "rollout_feed_connected": dashboard.feed.connected}


@pages.get("/readyz")
async def readyz(dashboard: DashboardDep) -> dict[str, Any]:
    """Ready once the app has started (its store opened and the rollout feed started)."""
    return {"status": "ready", "project_id": dashboard.settings.project_id}


def create_app(settings: DashboardSettings | None = None) -> FastAPI:
    settings = settings or DashboardSettings()
    logger = logging.getLogger("kaizen.dashboard")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await asyncio.to_thread(IcebergStore, settings)
        feed = RolloutFeed(settings, settings.dashboard.max_rollout_events, logger)
        feed.start()
        # mlflow takes seconds to import: warm it up while the first requests are already answered.
        warm_up = asyncio.create_task(
            asyncio.to_thread(importlib.import_module, "mlflow"), name="import-mlflow"
        )
        app.state.dashboard = Dashboard(settings, store, feed)
        logger.info("dashboard ready", extra={"project": settings.project_id})
        try:
            yield
        finally:
            await feed.stop()
            await asyncio.gather(warm_up, return_exceptions=True)

    app = FastAPI(
        title="Kaizen dashboard",
        description="Traces, rewards, datasets, training runs, evaluations and canaries of one project.",
        lifespan=lifespan,
    )
    app.include_router(pages)
    app.include_router(api)
    return app
