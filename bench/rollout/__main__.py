"""Gateway overhead, throughput and rollback latency, with the tiny random Llama.

    python -m bench.rollout [--requests 200] [--concurrency 8] [--seconds 10]

On the local stack (``make stack-up``), in a topic prefix, Redis prefix and registered model of its own:

1. direct: ``ChatEngine.complete`` in process, the model with its adapter and nothing else;
2. gateway: the same request over HTTP to the gateway replica (routing table, adapter multiplexing,
   OpenAI JSON, trace span); direct and gateway calls alternate, one at a time, so the machine's load
   weighs on both alike; overhead = gateway minus direct (p50, p95). Two HTTP clients: aiohttp (the
   headline: a lean client, so the figure is the gateway's) and httpx's AsyncClient (what the ``openai``
   SDK uses; it spends about 1.5 ms more of its own per request, which the bench also measures against a
   bare FastAPI endpoint, so the client's share is visible);
3. throughput: requests/s with ``--concurrency`` aiohttp clients for ``--seconds``;
4. rollback: a canary whose error rate regresses; from the analysis decision (inside ``tick``) to the
   routing table at weight 0 (the controller's ``rollback_latency_ms``), and to the first answer from
   the champion for a user pinned to the canary (what a user sees; bounded by
   ``gateway.routing_refresh_s``).

Traces are not exported (``gateway.ingest_url`` unset): the span is still built and ended, the export
runs in the OpenTelemetry SDK's background thread. A benchmark, never a timed test.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

import aiohttp
import httpx

from services.rollout.controller import Controller
from services.rollout.engine import ChatEngine, Sampling
from services.rollout.gateway import VERSION_HEADER, serve
from services.rollout.routing import RedisRouter, assign_arm, read_routing
from services.rollout.settings import RolloutOptions, RolloutSettings
from shared.bus import create_broker, declare_publisher, delete_topics, ensure_topics, publish_event
from shared.events import EvalPassed, RolloutStage, TableRef, TraceIngested
from shared.models import TINY_RANDOM_LLAMA
from shared.registry import ModelRegistry
from shared.state import RedisState
from tests.services.ingest.support import free_port
from tests.services.rollout.support import register_version

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
MAX_TOKENS = 4


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


BARE_APP = """
import sys
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class Body(BaseModel):
    model: str
    messages: list[dict[str, str]]
    max_tokens: int


@app.post("/v1/chat/completions")
async def chat(body: Body) -> dict:
    message = {"role": "assistant", "content": "Paris is the capital."}
    return {"object": "chat.completion", "choices": [{"index": 0, "message": message}]}


uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def bare_round_trips(body: dict[str, Any], requests: int) -> dict[str, list[float]]:
    """Each client's own round trip to a FastAPI app that answers at once (uvicorn, as the replica): the
    part of a request's time that no gateway can remove."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", BARE_APP, str(port)])
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.post(url, json=body).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

        async def measure() -> dict[str, list[float]]:
            times: dict[str, list[float]] = {"aiohttp": [], "httpx": []}
            async with aiohttp.ClientSession() as session, httpx.AsyncClient() as http:
                for index in range(requests + 5):
                    started = time.perf_counter()
                    async with session.post(url, json=body) as reply:
                        await reply.read()
                    middle = time.perf_counter()
                    (await http.post(url, json=body)).json()
                    if index >= 5:
                        times["aiohttp"].append((middle - started) * 1000)
                        times["httpx"].append((time.perf_counter() - middle) * 1000)
            return times

        return asyncio.run(measure())
    finally:
        server.terminate()
        server.wait(timeout=10)


def settings_for_bench() -> RolloutSettings:
    tag = uuid.uuid4().hex[:10]
    settings = RolloutSettings(project_id=f"bench{tag}")
    settings.kafka.topic_prefix = f"bench{tag}."
    settings.redis.key_prefix = f"bench{tag}:"
    settings.mlflow.registered_model = f"bench-rollout-{tag}"
    settings.gateway.base_model = TINY_RANDOM_LLAMA
    settings.gateway.port = free_port()
    settings.gateway.ingest_url = None
    settings.gateway.max_new_tokens = MAX_TOKENS
    settings.rollout = RolloutOptions(min_traces=50, tick_s=0.1, min_stage_duration_s=3600)
    return settings


async def rollout_to(
    settings: RolloutSettings, state: RedisState, champion: str, canary: str
) -> tuple[Controller, Any]:
    await ensure_topics(settings, [RolloutStage.topic])
    broker = create_broker(settings, "bench-rollout")
    publisher = declare_publisher(broker, settings, RolloutStage)
    await broker.connect()

    async def publish(event: RolloutStage) -> None:
        await publish_event(publisher, event)

    controller = Controller(settings, state, ModelRegistry(settings), RedisRouter(state), publish)
    ModelRegistry(settings).set_alias("champion", champion)
    await controller.on_eval_passed(
        EvalPassed(
            producer="bench",
            project_id=settings.project_id,
            correlation_id=canary,
            model_version=canary,
            registered_model=settings.mlflow.registered_model,
        )
    )
    return controller, broker


async def main(args: argparse.Namespace) -> None:
    settings = settings_for_bench()
    print("registering two adapter versions ...", flush=True)
    champion = await asyncio.to_thread(register_version, settings, 31)
    canary = await asyncio.to_thread(register_version, settings, 32)
    state = RedisState(settings)
    controller, broker = await rollout_to(settings, state, champion, canary)
    routing = await read_routing(state)
    canary_user = next(f"user-{i}" for i in range(1000) if assign_arm(routing, f"user:user-{i}") == "canary")
    champion_user = next(
        f"user-{i}" for i in range(1000) if assign_arm(routing, f"user:user-{i}") == "champion"
    )

    # 1. direct
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
    import torch

    torch_threads = torch.get_num_threads()
    torch.set_num_threads(int(settings.gateway.num_cpus))  # what Ray gives the replica (OMP_NUM_THREADS)
    engine = ChatEngine(TINY_RANDOM_LLAMA)
    engine.load_adapter(champion, f"models:/{settings.mlflow.registered_model}/{champion}")
    sampling = Sampling(MAX_TOKENS, temperature=0.0)
    for _ in range(5):
        engine.complete(MESSAGES, champion, sampling)

    # 2. gateway; the direct and gateway calls alternate, so drift in the machine's load weighs on both
    print("starting Ray Serve ...", flush=True)
    url = await asyncio.to_thread(serve, settings)
    body: dict[str, Any] = {
        "model": "kaizen",
        "messages": MESSAGES,
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
    }
    direct: list[float] = []
    gateway: list[float] = []
    gateway_httpx: list[float] = []
    chat_url = f"{url}/v1/chat/completions"
    async with httpx.AsyncClient(base_url=url, timeout=60) as http, aiohttp.ClientSession() as session:

        async def post(json_body: dict[str, Any]) -> tuple[int, str | None]:
            async with session.post(chat_url, json=json_body) as reply:
                await reply.read()
                return reply.status, reply.headers.get(VERSION_HEADER)

        for _ in range(5):
            await post(body | {"user": champion_user})
            await post(body | {"user": canary_user})
            await http.post("/v1/chat/completions", json=body | {"user": champion_user})
        for _ in range(args.requests):
            started = time.perf_counter()
            engine.complete(MESSAGES, champion, sampling)
            direct.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            status, version = await post(body | {"user": champion_user})
            gateway.append((time.perf_counter() - started) * 1000)
            assert status == 200 and version == champion, (status, version)
            started = time.perf_counter()
            response = await http.post("/v1/chat/completions", json=body | {"user": champion_user})
            response.json()
            gateway_httpx.append((time.perf_counter() - started) * 1000)
            assert response.headers[VERSION_HEADER] == champion, response.text
        del engine
        torch.set_num_threads(torch_threads)

        # 3. throughput
        done = 0
        stop_at = time.perf_counter() + args.seconds

        async def client(i: int) -> None:
            nonlocal done
            while time.perf_counter() < stop_at:
                status, _ = await post(body | {"user": f"load-{i}-{done}"})
                assert status == 200, status
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(args.concurrency)))
        throughput = done / (time.perf_counter() - started)

        # 4. rollback: the canary's error rate regresses; tick decides; the gateway follows.
        events = []
        for version, errors in ((canary, 0.5), (champion, 0.0)):
            for i in range(100):
                trace_id = uuid.uuid4().hex
                events.append(
                    TraceIngested(
                        producer="bench",
                        project_id=settings.project_id,
                        correlation_id=trace_id,
                        trace_id=trace_id,
                        model="tiny",
                        model_version=version,
                        consent=True,
                        stored=TableRef(table="kaizen.traces"),
                        latency_ms=100.0,
                        status="error" if i < errors * 100 else "ok",
                    )
                )
        await controller.record_traces(events)
        assert (await http.post("/v1/chat/completions", json=body | {"user": canary_user})).headers[
            VERSION_HEADER
        ] == canary
        decided = time.perf_counter()
        [rolled_back] = await controller.tick()
        while True:
            response = await http.post("/v1/chat/completions", json=body | {"user": canary_user})
            if response.headers[VERSION_HEADER] == champion:
                break
        seen_at_gateway_ms = (time.perf_counter() - decided) * 1000

    await state.drop_all()  # the run's keys and topic: nothing of a benchmark outlives it
    await state.close()
    await broker.stop()
    await delete_topics(settings)
    from ray import serve as ray_serve

    ray_serve.shutdown()

    client_floor = await asyncio.to_thread(bare_round_trips, body, args.requests)
    overhead_p50 = statistics.median(gateway) - statistics.median(direct)
    overhead_p95 = percentile(gateway, 0.95) - percentile(direct, 0.95)
    print()
    print(f"{'measure':<58}{'p50 ms':>10}{'p95 ms':>10}")
    for label, values in (
        ("direct (ChatEngine, adapter, 4 tokens)", direct),
        ("through the gateway, aiohttp client", gateway),
        ("through the gateway, httpx client (as the openai SDK)", gateway_httpx),
    ):
        print(f"{label:<58}{statistics.median(values):>10.2f}{percentile(values, 0.95):>10.2f}")
    print(f"{'gateway overhead, aiohttp client':<58}{overhead_p50:>10.2f}{overhead_p95:>10.2f}")
    print(
        f"{'gateway overhead, httpx client':<58}"
        f"{statistics.median(gateway_httpx) - statistics.median(direct):>10.2f}"
        f"{percentile(gateway_httpx, 0.95) - percentile(direct, 0.95):>10.2f}"
    )
    for name, values in client_floor.items():
        label = f"bare FastAPI round trip, {name} client (the floor)"
        print(f"{label:<58}{statistics.median(values):>10.2f}{percentile(values, 0.95):>10.2f}")
    print()
    print(
        f"throughput with {args.concurrency} clients: {throughput:.1f} requests/s ({done} in {args.seconds}s)"
    )
    print(f"rollback decision: {rolled_back.decision}: {rolled_back.reason[:100]}...")
    to_weight_zero = rolled_back.metrics["rollback_latency_ms"]
    print(f"rollback, decision to weight 0 in the routing table: {to_weight_zero:.1f} ms")
    print(f"rollback, decision to the canary user answered by the champion: {seen_at_gateway_ms:.1f} ms")
    print()
    print(
        f"closing note: overhead (aiohttp client) p50 {overhead_p50:.2f} ms (target <= 5), "
        f"p95 {overhead_p95:.2f} ms; "
        f"{throughput:.1f} req/s; rollback {rolled_back.metrics['rollback_latency_ms']:.1f} ms to weight 0, "
        f"{seen_at_gateway_ms:.0f} ms to users (target <= 2000)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    asyncio.run(main(parser.parse_args()))
