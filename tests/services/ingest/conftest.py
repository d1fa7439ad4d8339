"""Fixtures of the ingest tests: settings with API keys of two projects, the HTTP intake on a free loopback
port and the worker app, both running in the test's event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.ingest.app import create_app as create_worker_app
from services.ingest.settings import IngestSettings
from shared.settings import KaizenSettings
from tests.services.ingest.support import Intake, Key, ingest_settings_for, new_key


@pytest.fixture
def key(settings: KaizenSettings) -> Key:
    """The key of the test's own project."""
    return new_key(settings.project_id)


@pytest.fixture
def other_key(settings: KaizenSettings) -> Key:
    """The key of another project."""
    return new_key(f"{settings.project_id}-other")


@pytest.fixture
def ingest_settings(settings: KaizenSettings, key: Key, other_key: Key) -> IngestSettings:
    return ingest_settings_for(settings, key, other_key)


@pytest.fixture
async def intake(ingest_settings: IngestSettings) -> AsyncIterator[Intake]:
    async with Intake(ingest_settings) as running:
        yield running


@pytest.fixture
async def worker(ingest_settings: IngestSettings) -> AsyncIterator[None]:
    async with create_worker_app(ingest_settings):
        yield


@pytest.fixture
async def client(intake: Intake, key: Key) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the intake with the test project's key."""
    async with httpx.AsyncClient(base_url=intake.url, auth=key.auth, timeout=30) as http:
        yield http


@pytest.fixture(autouse=True)
def _no_langfuse_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The Langfuse SDK reads LANGFUSE_* variables; a developer's own must not leak into the tests.
    for name in ("LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", "LANGFUSE_BASE_URL", "LANGFUSE_HOST"):
        monkeypatch.delenv(name, raising=False)
