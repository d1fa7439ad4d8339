"""The gateway live on Ray Serve with the tiny random Llama: the official ``openai`` client talks to it
unmodified (streaming and not), every answer names its version, callers stay on one version, adapters
of registered versions really change the answers, and every completion's trace reaches ingest."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import pytest_asyncio
from pydantic import SecretStr

from services.rollout.gateway import TRACE_HEADER, VERSION_HEADER
from services.rollout.routing import RedisRouter, Routing
from shared.events import TRACE_RAW, TraceRaw
from shared.models import TINY_RANDOM_LLAMA
from shared.registry import CHAMPION, ModelRegistry
from shared.state import RedisState
from tests.services.ingest.support import Intake, free_port, ingest_settings_for, new_key, read_topic

from .support import register_version, rollout_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONSENT = {"X-Kaizen-Consent": "true"}
REPLICA_NICENESS = 3


class Served:
    def __init__(self, url: str, champion: str, canary: str, settings: Any) -> None:
        self.url = url
        self.champion = champion
        self.canary = canary
        self.settings = settings
        self.client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def served(stack: Any) -> AsyncIterator[Served]:
    from ray import serve

    from services.rollout import gateway
    from tests.conftest import isolated_settings

    base = isolated_settings()
    settings = rollout_settings(base)
    champion = await asyncio.to_thread(register_version, settings, 21)
    canary = await asyncio.to_thread(register_version, settings, 22)
    ModelRegistry(settings).set_alias(CHAMPION, champion)
    key = new_key(settings.project_id)
    ingest = ingest_settings_for(base, key)
    settings.gateway.base_model = TINY_RANDOM_LLAMA
    settings.gateway.port = free_port()
    settings.gateway.max_new_tokens = 16
    settings.gateway.ingest_url = f"http://127.0.0.1:{ingest.ingest.port}"
    settings.gateway.ingest_public_key = key.public_key
    settings.gateway.ingest_secret_key = SecretStr(key.secret_key)
    settings.gateway.trace_export_interval_ms = 100
    settings.gateway.niceness = REPLICA_NICENESS
    state = RedisState(settings)
    # What the controller writes at stage 2 of a rollout: half the users on the canary.
    await RedisRouter(state).apply(
        Routing(
            champion_version=champion,
            canary_version=canary,
            canary_weight=0.5,
            rollout_id="r-test",
            stage=2,
            registered_model=settings.mlflow.registered_model,
        )
    )
    async with Intake(ingest):
        url = await asyncio.to_thread(gateway.serve, settings)
        try:
            yield Served(url, champion, canary, settings)
        finally:
            await asyncio.to_thread(serve.shutdown)
            import ray

            await asyncio.to_thread(ray.shutdown)
            await state.close()


def ask(served: Served, user: str, **options: Any) -> Any:
    return served.client.chat.completions.with_raw_response.create(
        model="kaizen-chat",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        user=user,
        max_tokens=8,
        temperature=0,
        extra_headers=CONSENT,
        **options,
    )


async def test_the_openai_client_gets_answers_naming_their_version(served: Served) -> None:
    raw = await asyncio.to_thread(ask, served, "alice")
    completion = raw.parse()
    version = raw.headers[VERSION_HEADER]
    assert version in (served.champion, served.canary)
    assert completion.model.endswith(f":{version}")
    assert completion.system_fingerprint == f"kaizen-{version}"
    assert completion.choices[0].message.role == "assistant"
    assert completion.usage is not None and 1 <= completion.usage.completion_tokens <= 8
    assert completion.id == f"chatcmpl-{raw.headers[TRACE_HEADER]}"

    models = await asyncio.to_thread(served.client.models.list)
    ids = {model.id for model in models.data}
    assert {f"kaizen-chat:{served.champion}", f"kaizen-chat:{served.canary}"} <= {
        i.replace(served.settings.mlflow.registered_model, "kaizen-chat") for i in ids
    }

    async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
        metrics = (await http.get("/metrics")).text
    assert (
        'kaizen_http_requests_total{route="/v1/chat/completions",service="gateway",status="200"}' in metrics
    )
    assert f'kaizen_gateway_completions_total{{outcome="ok",version="{version}"}}' in metrics
    assert "kaizen_gateway_batch_rows_count" in metrics


def replica_niceness() -> dict[int, int]:
    """Niceness of every Ray Serve replica process of the gateway on this host, by pid."""
    niceness: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        try:
            title = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if proc.name.isdigit() and "ServeReplica:kaizen-gateway" in title:
                niceness[int(proc.name)] = os.getpriority(os.PRIO_PROCESS, int(proc.name))
        except OSError:  # a process that ended while the table was read
            continue
    return niceness


async def test_the_replicas_run_at_the_configured_niceness(served: Served) -> None:
    """Once loaded, a replica lowers its priority to gateway.niceness (a trainer beside it goes first)."""
    niceness = await asyncio.to_thread(replica_niceness)
    assert niceness, "no Ray Serve replica process of the gateway found"
    assert set(niceness.values()) == {max(os.getpriority(os.PRIO_PROCESS, 0), REPLICA_NICENESS)}, niceness


async def test_the_openai_client_streams(served: Served) -> None:
    def stream() -> tuple[list[Any], str]:
        with served.client.chat.completions.with_streaming_response.create(
            model="kaizen-chat",
            messages=[{"role": "user", "content": "Say hello"}],
            user="bob",
            max_tokens=8,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=CONSENT,
        ) as response:
            return list(response.parse()), response.headers[VERSION_HEADER]

    chunks, version = await asyncio.to_thread(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish and finish[-1] in ("stop", "length")
    assert all(c.model.endswith(f":{version}") for c in chunks)
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens >= 1
    # The streamed text is what the same version answers in one piece.
    raw = await asyncio.to_thread(
        lambda: served.client.chat.completions.with_raw_response.create(
            model="kaizen-chat",
            messages=[{"role": "user", "content": "Say hello"}],
            user="bob",
            max_tokens=8,
            temperature=0,
        )
    )
    assert raw.headers[VERSION_HEADER] == version
    assert raw.parse().choices[0].message.content == text


async def test_callers_are_sticky_and_split_by_weight_and_adapters_change_answers(served: Served) -> None:
    seen: dict[str, set[str]] = {}
    answers: dict[str, set[str]] = {}
    for user in [f"user-{i}" for i in range(12)]:
        for _ in range(2):
            raw = await asyncio.to_thread(ask, served, user)
            version = raw.headers[VERSION_HEADER]
            seen.setdefault(user, set()).add(version)
            answers.setdefault(version, set()).add(raw.parse().choices[0].message.content)
    assert all(len(versions) == 1 for versions in seen.values()), seen
    assert {v for versions in seen.values() for v in versions} == {served.champion, served.canary}
    # Greedy answers to one prompt: each version always says the same thing, and the two differ.
    assert all(len(texts) == 1 for texts in answers.values()), answers
    assert answers[served.champion] != answers[served.canary]


async def test_bad_requests_get_clear_errors(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.url, timeout=60) as http:
        empty = await http.post("/v1/chat/completions", json={"model": "kaizen-chat", "messages": []})
        too_long = await http.post(
            "/v1/chat/completions",
            json={
                "model": "kaizen-chat",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 10_000,
            },
        )
        image = await http.post(
            "/v1/chat/completions",
            json={
                "model": "kaizen-chat",
                "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
            },
        )
        contexts = await http.post(
            "/v1/chat/completions",
            json={
                "model": "kaizen-chat",
                "messages": [{"role": "user", "content": "hi"}],
                "metadata": {"kaizen_contexts": "[1, 2"},
            },
        )
    assert contexts.status_code == 400 and "kaizen_contexts" in contexts.json()["error"]["message"]
    assert empty.status_code == 400 and "messages" in empty.json()["error"]["message"]
    assert too_long.status_code == 400 and "max_tokens 10000" in too_long.json()["error"]["message"]
    assert image.status_code == 400 and "image_url" in image.json()["error"]["message"]


async def test_every_completion_reaches_ingest_with_version_tokens_and_logprobs(served: Served) -> None:
    raw = await asyncio.to_thread(ask, served, "carol")
    trace_id = raw.headers[TRACE_HEADER]
    completion = raw.parse()
    no_consent = await asyncio.to_thread(
        lambda: served.client.chat.completions.with_raw_response.create(
            model="kaizen-chat", messages=[{"role": "user", "content": "hi"}], user="dave", max_tokens=4
        )
    )
    grounded = await asyncio.to_thread(
        lambda: served.client.chat.completions.with_raw_response.create(
            model="kaizen-chat",
            messages=[{"role": "user", "content": "When do returns close?"}],
            user="erin",
            max_tokens=4,
            metadata={
                "kaizen_contexts": json.dumps(["Returns close after 30 days.", "Shipping is free."]),
                "kaizen_reference": "After 30 days.",
            },
            extra_headers={"X-Kaizen-Consent": "true"},
        )
    )
    records = await read_topic(served.settings, TRACE_RAW, at_least=1, settle_s=2.0)
    traces = {
        event.record.trace_id: event.record
        for event in (TraceRaw.model_validate_json(r.value or b"") for r in records)
    }
    record = traces[trace_id]
    assert record.model_version == raw.headers[VERSION_HEADER]
    assert record.consent is True
    assert record.user_id == "carol"
    assert record.response == completion.choices[0].message.content
    assert record.usage.completion_tokens == completion.usage.completion_tokens  # type: ignore[union-attr]
    assert record.usage.prompt_tokens == completion.usage.prompt_tokens  # type: ignore[union-attr]
    assert record.completion_token_ids is not None and record.completion_logprobs is not None
    assert (
        len(record.completion_token_ids) == len(record.completion_logprobs) == record.usage.completion_tokens
    )
    assert all(lp <= 0.0 for lp in record.completion_logprobs)
    assert record.latency_ms is not None and record.latency_ms > 0
    assert json.loads(json.dumps(record.input_messages[0].model_dump()))["content"].startswith("What is")
    assert traces[no_consent.headers[TRACE_HEADER]].consent is False
    # the contexts and reference the app passed in metadata go on the trace, for the labeler
    with_contexts = traces[grounded.headers[TRACE_HEADER]]
    assert with_contexts.contexts == ["Returns close after 30 days.", "Shipping is free."]
    assert with_contexts.reference == "After 30 days."


async def test_shadow_mode_answers_with_the_champion_and_mirrors_to_the_canary(served: Served) -> None:
    state = RedisState(served.settings)
    try:
        await RedisRouter(state).apply(
            Routing(
                champion_version=served.champion,
                canary_version=served.canary,
                canary_weight=1.0,
                shadow=True,
                rollout_id="r-shadow",
                stage=0,
                registered_model=served.settings.mlflow.registered_model,
            )
        )
        await asyncio.sleep(2 * served.settings.gateway.routing_refresh_s)
        versions = [
            (await asyncio.to_thread(ask, served, f"shadow-user-{i}")).headers[VERSION_HEADER]
            for i in range(4)
        ]
    finally:
        await state.close()
    assert versions == [served.champion] * 4

    def mirrored_traces(records: list[Any]) -> list[Any]:
        found = [TraceRaw.model_validate_json(r.value or b"").record for r in records]
        return [
            r
            for r in found
            if r.user_id and r.user_id.startswith("shadow-user-") and r.model_version == served.canary
        ]

    deadline = asyncio.get_running_loop().time() + 60
    while True:
        shadows = mirrored_traces(await read_topic(served.settings, TRACE_RAW, at_least=1, settle_s=0.5))
        if len(shadows) >= 4 or asyncio.get_running_loop().time() > deadline:
            break
    assert len(shadows) == 4
    assert all("shadow" in record.tags for record in shadows)


async def test_a_newly_routed_canary_is_loaded_before_any_user_is_sent_to_it(served: Served) -> None:
    """The controller names a new canary; the gateway loads its adapter on the next routing read, so its
    first users do not wait for the download and load (their latency is the canary's, in the analysis)."""
    later = await asyncio.to_thread(register_version, served.settings, 23)
    state = RedisState(served.settings)
    router = RedisRouter(state)
    registered = served.settings.mlflow.registered_model
    loaded = f'kaizen_gateway_adapter_loaded{{version="{later}"}} 1.0'
    try:
        async with httpx.AsyncClient(base_url=served.url, timeout=30) as client:
            assert loaded not in (await client.get("/metrics")).text
            await router.apply(
                Routing(
                    champion_version=served.champion,
                    canary_version=later,
                    canary_weight=0.0,  # named, but no user goes to it yet
                    rollout_id="r-warm",
                    stage=0,
                    registered_model=registered,
                )
            )
            await asyncio.sleep(2 * served.settings.gateway.routing_refresh_s)
            raw = await asyncio.to_thread(ask, served, "warm-user")
            assert raw.headers[VERSION_HEADER] == served.champion
            deadline = asyncio.get_running_loop().time() + 60
            while loaded not in (text := (await client.get("/metrics")).text):
                assert asyncio.get_running_loop().time() < deadline, "the canary was not loaded ahead"
                await asyncio.sleep(0.5)
        served_by_it = [
            line
            for line in text.splitlines()
            if line.startswith("kaizen_gateway_completions_total{") and f'version="{later}"' in line
        ]
        assert served_by_it == [], "loaded ahead, not by a user's request"
    finally:
        await router.apply(
            Routing(
                champion_version=served.champion,
                canary_version=served.canary,
                canary_weight=0.5,
                rollout_id="r-test",
                stage=2,
                registered_model=registered,
            )
        )
        await state.close()
