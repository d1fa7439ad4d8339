"""Helpers of the rollout tests: fast settings, real registered versions (LoRA adapters on the tiny
random Llama in MLflow), synthetic traffic on the live event stream, and reading rollout.stage back."""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faststream import FastStream
from mlflow import MlflowClient
from prometheus_client import CollectorRegistry

from services.rollout.app import create_app
from services.rollout.routing import Routing, read_routing
from services.rollout.settings import RolloutOptions, RolloutSettings
from shared.events import (
    EvalPassed,
    FeedbackReceived,
    RolloutStage,
    TableRef,
    TraceIngested,
    TraceLabeled,
)
from shared.models import TINY_RANDOM_LLAMA, load_causal_lm
from shared.registry import ModelRegistry
from shared.settings import KaizenSettings
from shared.state import RedisState

TIMEOUT_S = 60.0

FAST = {
    "stages": [0.05, 0.25, 1.0],
    "min_stage_duration_s": 1.0,
    "tick_s": 0.2,
    "min_traces": 30,
    "min_feedback": 20,
    "min_labels": 20,
    "max_extensions": 2,
    "confidence": 0.99,
    "feedback_tolerance": 0.1,
}


def rollout_settings(settings: KaizenSettings, **options: Any) -> RolloutSettings:
    """Rollout settings on the test's isolated ones: its own registered model, a plan of seconds."""
    rollout = RolloutSettings(**settings.model_dump())
    rollout.mlflow.registered_model = f"t-rollout-{uuid.uuid4().hex[:10]}"
    rollout.rollout = RolloutOptions(**(FAST | options))
    return rollout


def settings_env(settings: RolloutSettings) -> dict[str, str]:
    """The environment that gives a subprocess (or the CLI) the same settings."""
    return {
        "KAIZEN_PROJECT_ID": settings.project_id,
        "KAIZEN_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
        "KAIZEN_KAFKA__RETRY_BACKOFF_S": str(settings.kafka.retry_backoff_s),
        "KAIZEN_REDIS__KEY_PREFIX": settings.redis.key_prefix,
        "KAIZEN_MLFLOW__REGISTERED_MODEL": settings.mlflow.registered_model,
        "KAIZEN_CATALOG__NAMESPACE": settings.catalog.namespace,
        "KAIZEN_ROLLOUT": settings.rollout.model_dump_json(),
        "KAIZEN_GATEWAY": settings.gateway.model_dump_json(),
    }


# ---------------------------------------------------------------------------------------------
# Registered versions: real LoRA adapters in MLflow


@functools.cache
def adapter_dir(seed: int) -> Path:
    """A LoRA adapter on the tiny random Llama (random B, so each seed answers differently), saved once."""
    import torch
    from peft import LoraConfig, get_peft_model

    model, _ = load_causal_lm(TINY_RANDOM_LLAMA)
    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    target = Path(tempfile.mkdtemp(prefix=f"kaizen-adapter-{seed}-"))
    peft_model.save_pretrained(target)
    adapter_config = target / "adapter_config.json"
    document = json.loads(adapter_config.read_text())
    document["base_model_name_or_path"] = TINY_RANDOM_LLAMA
    adapter_config.write_text(json.dumps(document))
    return target


def register_version(settings: KaizenSettings, seed: int = 1) -> str:
    """Register a version the way the trainer does: the adapter as run artifact ``model``."""
    registry = ModelRegistry(settings)
    client: MlflowClient = registry.client
    name = registry.ensure_model()
    run = client.create_run(registry.experiment_id())
    client.log_artifacts(run.info.run_id, str(adapter_dir(seed)), "model")
    client.set_terminated(run.info.run_id, "FINISHED")
    created = client.create_model_version(
        name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    )
    return str(created.version)


def eval_passed(settings: KaizenSettings, version: str, champion: str | None = None) -> EvalPassed:
    return EvalPassed(
        producer="evaluator",
        project_id=settings.project_id,
        correlation_id=version,
        model_version=version,
        registered_model=settings.mlflow.registered_model,
        champion_version=champion,
        metrics={"win_rate": 0.6},
        reason="every gate held",
    )


# ---------------------------------------------------------------------------------------------
# Kafka


class Producer:
    def __init__(self, settings: KaizenSettings) -> None:
        self.settings = settings
        self.producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, linger_ms=5)

    async def __aenter__(self) -> Producer:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def send(self, *events: Any, wait: bool = True) -> None:
        futures = [
            await self.producer.send(
                self.settings.kafka.topic(event.topic),
                event.model_dump_json().encode(),
                key=event.key(),
            )
            for event in events
        ]
        if wait:
            await asyncio.gather(*futures)


class StageEvents:
    """Every rollout.stage event of the test's deployment, read in the background."""

    def __init__(self, settings: KaizenSettings) -> None:
        self.settings = settings
        self.events: list[RolloutStage] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> StageEvents:
        consumer = AIOKafkaConsumer(
            self.settings.kafka.topic(RolloutStage.topic),
            bootstrap_servers=self.settings.kafka.bootstrap_servers,
            group_id=None,
            auto_offset_reset="earliest",
            metadata_max_age_ms=500,
        )
        await consumer.start()

        async def read() -> None:
            try:
                while True:
                    batch = await consumer.getmany(timeout_ms=100)
                    for records in batch.values():
                        for record in records:
                            self.events.append(RolloutStage.model_validate_json(record.value or b""))
            finally:
                await consumer.stop()

        self._task = asyncio.create_task(read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with_suppressed = asyncio.gather(self._task, return_exceptions=True)
            await with_suppressed

    def decisions(self, version: str | None = None) -> list[tuple[str, int]]:
        return [(e.decision, e.stage) for e in self.events if version is None or e.model_version == version]

    async def until(
        self, condition: Callable[[list[RolloutStage]], bool], what: str, timeout: float = TIMEOUT_S
    ) -> list[RolloutStage]:
        deadline = time.monotonic() + timeout
        while not condition(self.events):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; rollout.stage had {self.decisions()}")
            await asyncio.sleep(0.05)
        return self.events

    async def decision(self, version: str, decision: str, timeout: float = TIMEOUT_S) -> RolloutStage:
        def found(events: list[RolloutStage]) -> bool:
            return any(e.model_version == version and e.decision == decision for e in events)

        await self.until(found, f"{decision} of version {version}", timeout)
        return next(e for e in self.events if e.model_version == version and e.decision == decision)


@asynccontextmanager
async def running(app: FastStream) -> AsyncIterator[FastStream]:
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


def controller_app(settings: RolloutSettings) -> FastStream:
    return create_app(settings, registry=CollectorRegistry())


# ---------------------------------------------------------------------------------------------
# Synthetic traffic on the live event stream


@dataclass(frozen=True)
class Profile:
    """How an arm behaves, as value cycles (deterministic: equal profiles give equal samples)."""

    errors: Sequence[int] = (0,) * 19 + (1,)
    latencies_ms: Sequence[float] = tuple(80.0 + 7 * (i % 9) for i in range(18))
    feedback: Sequence[float] = (1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0)
    rewards: Sequence[float] = tuple(0.5 + 0.04 * (i % 10) for i in range(10))


HEALTHY = Profile()


@dataclass
class Traffic:
    """Stands in for users on both arms: each round, ``per_round`` traces per arm that gets traffic
    under the live routing table, each with its label and (one round later, as users react later) its
    feedback, published as the ingest worker and the labeler publish them."""

    settings: KaizenSettings
    producer: Producer
    profile: Callable[[str, Routing], Profile | None]
    """The profile of a version under the current routing; None sends that arm nothing."""
    per_round: int = 8
    interval_s: float = 0.1
    feedback_version: bool = False
    """Whether feedback.received carries the model version (otherwise the controller joins it)."""
    sent: dict[str, int] = field(default_factory=dict)
    _pending_feedback: list[FeedbackReceived] = field(default_factory=list)
    _counters: dict[str, itertools.count[int]] = field(default_factory=dict)

    def _events(self, version: str, profile: Profile) -> tuple[list[Any], list[FeedbackReceived]]:
        now, feedback = [], []
        counter = self._counters.setdefault(version, itertools.count())
        for _ in range(self.per_round):
            i = next(counter)
            trace_id = uuid.uuid4().hex
            error = profile.errors[i % len(profile.errors)]
            common = {"producer": "tests", "project_id": self.settings.project_id, "correlation_id": trace_id}
            now.append(
                TraceIngested(
                    **common,
                    trace_id=trace_id,
                    model="tiny-random-llama",
                    model_version=version,
                    consent=True,
                    stored=TableRef(table="kaizen.traces", snapshot_id=1),
                    user_id=f"user-{i}",
                    latency_ms=profile.latencies_ms[i % len(profile.latencies_ms)],
                    status="error" if error else "ok",
                )
            )
            now.append(
                TraceLabeled(
                    **common,
                    trace_id=trace_id,
                    model_version=version,
                    components={"faithfulness": 0.8},
                    composite_reward=profile.rewards[i % len(profile.rewards)],
                    label_version=1,
                    config_hash="tests",
                )
            )
            if not profile.feedback:
                continue
            feedback.append(
                FeedbackReceived(
                    **common,
                    trace_id=trace_id,
                    feedback_id=uuid.uuid4().hex,
                    kind="thumbs",
                    value=profile.feedback[i % len(profile.feedback)],
                    model_version=version if self.feedback_version else None,
                )
            )
            self.sent[version] = self.sent.get(version, 0) + 1
        return now, feedback

    async def run(self, state: RedisState, stop: asyncio.Event) -> None:
        while not stop.is_set():
            routing = await read_routing(state)
            arms: list[str] = []
            if routing.canary_version is not None and routing.canary_weight > 0:
                arms.append(routing.canary_version)
            if routing.canary_version is None or routing.canary_weight < 1.0 or routing.shadow:
                arms.append(routing.champion_version)
            batch: list[Any] = list(self._pending_feedback)
            self._pending_feedback = []
            for version in arms:
                profile = self.profile(version, routing)
                if profile is None:
                    continue
                now, later = self._events(version, profile)
                batch += now
                self._pending_feedback += later
            if batch:
                await self.producer.send(*batch)
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.interval_s)
            except TimeoutError:
                pass


@asynccontextmanager
async def traffic(
    settings: KaizenSettings, profile: Callable[[str, Routing], Profile | None], **options: Any
) -> AsyncIterator[Traffic]:
    state = RedisState(settings)
    stop = asyncio.Event()
    async with Producer(settings) as producer:
        generator = Traffic(settings, producer, profile, **options)
        task = asyncio.create_task(generator.run(state, stop))
        try:
            yield generator
        finally:
            stop.set()
            await task
            await state.close()


def healthy(version: str, routing: Routing) -> Profile:
    return HEALTHY
