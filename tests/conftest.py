"""Fixtures shared by every test.

``stack``: the real local stack (Kafka, Redis, S3, MLflow), started once per session or reused if it
already answers; parts this session started are stopped at the end unless KAIZEN_KEEP_STACK=1, and the
topics the session's tests made are deleted either way (the stack's data stays in the checkout).
``settings``: settings pointing at that stack with a topic prefix, table namespace and Redis prefix of
their own (a uuid), so tests never see each other's data.
"""

from __future__ import annotations

import asyncio
import os
import uuid
import warnings
from collections.abc import Iterator

import pytest

from shared.bus import delete_topics
from shared.settings import KaizenSettings
from shared.stack import Stack

TOPIC_PREFIXES: set[str] = set()
"""The topic prefixes this session handed out; its topics are deleted when it ends."""


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    local = Stack(KaizenSettings())
    started = local.up(log=lambda line: print(f"[stack] {line}"))
    yield local
    if TOPIC_PREFIXES and local.all_answer():
        # A broker keeps topics for a week: without this, each run leaves thousands behind in .kaizen.
        try:
            deleted = asyncio.run(delete_topics(KaizenSettings(), sorted(TOPIC_PREFIXES)))
            print(f"[stack] deleted this session's {len(deleted)} topics")
        except Exception as exc:  # housekeeping: a failure here says so and fails no test
            warnings.warn(f"could not delete this session's topics: {exc!r}", stacklevel=1)
    if started and not os.environ.get("KAIZEN_KEEP_STACK"):
        local.down(log=lambda line: print(f"[stack] {line}"), only=started)


def isolated_settings(**overrides: object) -> KaizenSettings:
    """Settings with a uuid of their own for topics, consumer groups, the table namespace and Redis keys."""
    tag = uuid.uuid4().hex[:10]
    settings = KaizenSettings(project_id=f"p{tag}")
    settings.kafka.topic_prefix = f"t{tag}."
    TOPIC_PREFIXES.add(settings.kafka.topic_prefix)
    settings.kafka.retry_backoff_s = 0.01
    settings.catalog.namespace = f"t_{tag}"
    settings.redis.key_prefix = f"t{tag}:"
    for name, value in overrides.items():
        setattr(settings, name, value)
    return settings


@pytest.fixture
def settings(stack: Stack) -> KaizenSettings:
    return isolated_settings()
