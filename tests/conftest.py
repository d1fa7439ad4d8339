"""Fixtures shared by every test.

``stack``: the real local stack (Kafka, Redis, S3, MLflow), started once per session or reused if it
already answers; parts this session started are stopped at the end unless KAIZEN_KEEP_STACK=1.
``settings``: settings pointing at that stack with a topic prefix, table namespace and Redis prefix of
their own (a uuid), so tests never see each other's data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from shared.settings import KaizenSettings
from shared.stack import Stack


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    local = Stack(KaizenSettings())
    started = local.up(log=lambda line: print(f"[stack] {line}"))
    yield local
    if started and not os.environ.get("KAIZEN_KEEP_STACK"):
        local.down(log=lambda line: print(f"[stack] {line}"), only=started)


def isolated_settings(**overrides: object) -> KaizenSettings:
    """Settings with a uuid of their own for topics, consumer groups, the table namespace and Redis keys."""
    tag = uuid.uuid4().hex[:10]
    settings = KaizenSettings(project_id=f"p{tag}")
    settings.kafka.topic_prefix = f"t{tag}."
    settings.kafka.retry_backoff_s = 0.01
    settings.catalog.namespace = f"t_{tag}"
    settings.redis.key_prefix = f"t{tag}:"
    for name, value in overrides.items():
        setattr(settings, name, value)
    return settings


@pytest.fixture
def settings(stack: Stack) -> KaizenSettings:
    return isolated_settings()
