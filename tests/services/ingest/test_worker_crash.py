"""The worker, run with its real entry point, is killed (SIGKILL) in the middle of a stream and restarted,
twice: every trace answered 200 lands exactly once in the table and once on trace.ingested."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO

import httpx
import pytest

from shared.events import TRACE_INGESTED
from shared.settings import KaizenSettings
from shared.store import TRACES
from tests.services.ingest.support import (
    REPO_ROOT,
    Intake,
    Key,
    events,
    generation,
    ingest_settings_for,
    otlp_json,
    read_topic,
    settings_env,
    span_json,
    topic_size,
    wait_for_rows,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REQUESTS = 40
SPANS_PER_REQUEST = 50
KILL_WHEN_ANNOUNCED = (300, 1200)


async def _until(condition: Callable[[], Awaitable[bool]], timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


async def test_killed_worker_restarts_and_every_accepted_trace_lands_exactly_once(
    settings: KaizenSettings, key: Key, tmp_path: Path
) -> None:
    ingest = ingest_settings_for(settings, key)
    env = settings_env(ingest, batch_max_records=100, batch_timeout_ms=50, fetch_max_wait_ms=50)
    log: IO[bytes] = (tmp_path / "worker.log").open("ab")

    def start_worker() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "services.ingest.worker"], cwd=REPO_ROOT, env=env, stdout=log, stderr=log
        )

    accepted: list[str] = []

    async def stream(intake: Intake) -> None:
        async with httpx.AsyncClient(base_url=intake.url, auth=key.auth, timeout=60) as http:
            for index in range(REQUESTS):
                spans = [
                    span_json(generation(f"question {index}.{n}", f"answer {index}.{n}"))
                    for n in range(SPANS_PER_REQUEST)
                ]
                response = await http.post("/v1/traces", json=otlp_json(*spans))
                assert response.status_code == 200, response.text
                accepted.extend(span["traceId"] for span in spans)
                await asyncio.sleep(0.1)

    async def announced_at_least(count: int) -> bool:
        return await topic_size(ingest, TRACE_INGESTED) >= count

    worker = start_worker()
    try:
        async with Intake(ingest) as intake:
            sender = asyncio.create_task(stream(intake))
            for threshold in KILL_WHEN_ANNOUNCED:
                await _until(lambda threshold=threshold: announced_at_least(threshold))
                worker.send_signal(signal.SIGKILL)
                assert await asyncio.to_thread(worker.wait) == -signal.SIGKILL
                worker = start_worker()
            await sender
        total = REQUESTS * SPANS_PER_REQUEST
        assert len(accepted) == total
        rows = await wait_for_rows(ingest, TRACES, total, settle_s=3.0)
        ingested = events(await read_topic(ingest, TRACE_INGESTED, at_least=total, settle_s=3.0))
    finally:
        worker.terminate()
        await asyncio.to_thread(worker.wait, 30)
        log.close()

    stored = Counter(row["trace_id"] for row in rows)
    announced = Counter(event["trace_id"] for event in ingested)
    assert set(stored) == set(accepted), "every trace answered 200 is in the table, and nothing else"
    assert [trace for trace, count in stored.items() if count > 1] == [], "stored exactly once"
    assert set(announced) == set(accepted)
    assert [trace for trace, count in announced.items() if count > 1] == [], "announced exactly once"
    assert len({event["event_id"] for event in ingested}) == total
