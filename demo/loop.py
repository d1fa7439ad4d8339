"""The closed loop, run by itself: the services as processes, simulated users in rounds, a watcher on
every topic of the loop, until a new champion serves 100% of the traffic, a candidate fails, or the
time limit.

``run_loop(config, settings)`` is what ``python -m demo``, ``bench.e2e`` and the reduced loop test run:

1. ``loop_services`` builds the processes of one loop (kernel service, ingest HTTP + worker, labeler
   with its curator, trainer consumer + worker, evaluator, rollout controller, gateway), all with the
   environment of one configuration and one isolation (project, topic prefix, namespace, Redis prefix,
   registered model), and the supervisor starts them;
2. the base model answers the held-out prompts through the gateway (the "before");
3. the users play rounds of traffic through the gateway while ``LoopWatcher`` reads trace.ingested,
   trace.labeled, dataset.ready, checkpoint.trained, training.failed, eval.passed/failed and
   rollout.stage and stamps the first time each stage of the loop was reached (``Timeline``);
4. after a promotion the champion answers the held-out prompts (the "after"); the timeline says how
   far the loop got, and why it stopped there.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from statistics import fmean
from typing import Any

import httpx

from demo.config import LoopConfig
from demo.workload.preference import PreferenceConfig, load_preference
from demo.workload.prompts import Prompt, WorkloadError, chat_messages, load_prompts, select
from demo.workload.users import WorkloadConfig, WorkloadReport, run_workload
from shared.bus import create_broker, ensure_topics, subscribe
from shared.client import KaizenClient
from shared.events import (
    CHECKPOINT_TRAINED,
    DATASET_READY,
    EVAL_FAILED,
    EVAL_PASSED,
    FEEDBACK_RECEIVED,
    ROLLOUT_STAGE,
    TRACE_INGESTED,
    TRACE_LABELED,
    TRAINING_FAILED,
    CheckpointTrained,
    DatasetReady,
    EvalFailed,
    EvalPassed,
    FeedbackReceived,
    RolloutStage,
    TraceIngested,
    TraceLabeled,
    TrainingFailed,
)
from shared.services import ServiceSpec, Supervisor
from shared.settings import KaizenSettings

REPO = Path(__file__).resolve().parents[1]
DEV_PUBLIC_KEY = "pk-kaizen-dev"
DEV_SECRET_KEY = "kaizen-dev-only"

STAGES: tuple[tuple[str, str], ...] = (
    ("first_trace", "first trace ingested"),
    ("first_label", "first trace labeled"),
    ("dataset", "dataset ready"),
    ("trained", "checkpoint trained"),
    ("evaluated", "evaluation passed"),
    ("canary_5", "canary at the first stage"),
    ("canary_25", "canary at the second stage"),
    ("canary_100", "canary at 100%"),
    ("promoted", "promoted to champion"),
)
"""The loop's stages in order: key and what reaching it means."""

Log = Callable[[str], None]
STARTED = "FastStream app started successfully"
"""What a FastStream service logs once its startup hooks ran and its consumers are subscribed."""


@dataclass
class Timeline:
    """When each stage was first reached (seconds since the run started), counts, and why it stopped."""

    started_at: float = field(default_factory=time.time)
    reached: dict[str, float] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    stopped_because: str = ""
    candidate_version: str | None = None
    rollout: list[dict[str, Any]] = field(default_factory=list)
    rewards: list[dict[str, Any]] = field(default_factory=list)

    def mark(self, stage: str, detail: str = "", at: datetime | None = None) -> None:
        """Stamp a stage when it is first reached, at ``at`` (the event's ``occurred_at``) or now.

        The watcher reads each topic with a consumer of its own, so an event can arrive before the one
        that caused it (a canary's rollout.stage before its eval.passed); the producer's own timestamp
        keeps the stages in the order they happened, and an earlier one arriving late takes its place.
        """
        moment = (at.timestamp() if at is not None else time.time()) - self.started_at
        if stage not in self.reached or moment < self.reached[stage]:
            self.reached[stage] = moment
            if detail:
                self.details[stage] = detail

    def last_stage(self) -> str | None:
        done = [key for key, _ in STAGES if key in self.reached]
        return done[-1] if done else None

    def next_stage(self) -> str | None:
        for key, _ in STAGES:
            if key not in self.reached:
                return key
        return None

    @property
    def promoted(self) -> bool:
        return "promoted" in self.reached

    def stage_durations(self) -> list[dict[str, Any]]:
        """Each reached stage: seconds since the start and since the previous stage."""
        rows: list[dict[str, Any]] = []
        previous = 0.0
        for key, meaning in STAGES:
            at = self.reached.get(key)
            rows.append(
                {
                    "stage": key,
                    "meaning": meaning,
                    "at_s": None if at is None else round(at, 2),
                    "took_s": None if at is None else round(at - previous, 2),
                    "detail": self.details.get(key, ""),
                }
            )
            if at is not None:
                previous = at
        return rows

    def as_json(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at,
            "stages": self.stage_durations(),
            "counts": dict(self.counts),
            "failures": self.failures,
            "stopped_because": self.stopped_because,
            "candidate_version": self.candidate_version,
            "rollout": self.rollout,
        }


class LoopWatcher:
    """Reads the loop's topics (a consumer group of its own) and stamps the timeline."""

    def __init__(self, settings: KaizenSettings, timeline: Timeline) -> None:
        self.settings = settings
        self.timeline = timeline
        self.broker = create_broker(settings, "demo-watch")
        group = f"demo-watch-{uuid.uuid4().hex[:6]}"
        on = self._subscribe
        t = timeline

        async def ingested(event: TraceIngested) -> None:
            t.counts[TRACE_INGESTED] += 1
            t.mark("first_trace", f"trace {event.trace_id} from {event.model_version}", event.occurred_at)

        async def feedback(event: FeedbackReceived) -> None:
            t.counts[FEEDBACK_RECEIVED] += 1

        async def labeled(event: TraceLabeled) -> None:
            t.counts[TRACE_LABELED] += 1
            t.mark("first_label", f"composite {event.composite_reward:.3f}", event.occurred_at)
            t.rewards.append(
                {
                    "at_s": time.time() - t.started_at,
                    "model_version": event.model_version or "unknown",
                    "composite_reward": event.composite_reward,
                }
            )

        async def dataset(event: DatasetReady) -> None:
            t.counts[DATASET_READY] += 1
            t.mark("dataset", f"{event.dataset_id}", event.occurred_at)

        async def trained(event: CheckpointTrained) -> None:
            t.counts[CHECKPOINT_TRAINED] += 1
            t.mark("trained", f"version {event.model_version}", event.occurred_at)

        async def training_failed(event: TrainingFailed) -> None:
            t.counts[TRAINING_FAILED] += 1
            t.failures.append(f"training failed: {event.reason}")

        async def passed(event: EvalPassed) -> None:
            t.counts[EVAL_PASSED] += 1
            t.candidate_version = event.model_version
            t.mark("evaluated", f"version {event.model_version}", event.occurred_at)

        async def failed(event: EvalFailed) -> None:
            t.counts[EVAL_FAILED] += 1
            t.failures.append(f"evaluation failed for version {event.model_version}: {event.reason}")

        async def stage(event: RolloutStage) -> None:
            t.counts[ROLLOUT_STAGE] += 1
            t.rollout.append(
                {
                    "at_s": round(time.time() - t.started_at, 2),
                    "model_version": event.model_version,
                    "stage": event.stage,
                    "canary_weight": event.canary_weight,
                    "decision": event.decision,
                    "reason": event.reason,
                }
            )
            detail = f"version {event.model_version}, weight {event.canary_weight:.2f}: {event.reason}"
            if event.decision in ("started", "advanced", "resumed"):
                key = {0: "canary_5", 1: "canary_25"}.get(event.stage, "canary_100")
                if event.canary_weight >= 1.0:
                    key = "canary_100"
                t.mark(key, detail, event.occurred_at)
            elif event.decision == "promoted":
                t.mark("canary_100", detail, event.occurred_at)
                t.mark("promoted", detail, event.occurred_at)
            elif event.decision in ("rolled_back", "aborted"):
                t.failures.append(f"rollout {event.decision}: {event.reason}")

        on(TRACE_INGESTED, group, ingested)
        on(FEEDBACK_RECEIVED, group, feedback)
        on(TRACE_LABELED, group, labeled)
        on(DATASET_READY, group, dataset)
        on(CHECKPOINT_TRAINED, group, trained)
        on(TRAINING_FAILED, group, training_failed)
        on(EVAL_PASSED, group, passed)
        on(EVAL_FAILED, group, failed)
        on(ROLLOUT_STAGE, group, stage)

    def _subscribe(self, topic: str, group: str, handler: Callable[..., Any]) -> None:
        subscribe(self.broker, self.settings, topic, f"{group}-{topic}")(handler)


# The processes of one loop


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class LoopPorts:
    kernels: int
    ingest: int
    gateway: int
    labeler_metrics: int
    trainer_metrics: int
    evaluator_metrics: int

    @classmethod
    def pick(cls) -> LoopPorts:
        return cls(*(free_port() for _ in range(6)))


def isolation_env(settings: KaizenSettings) -> dict[str, str]:
    """What makes the processes of one loop see each other and nothing else."""
    return {
        "KAIZEN_HOME": str(settings.home),
        "KAIZEN_PROJECT_ID": settings.project_id,
        "KAIZEN_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "KAIZEN_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
        "KAIZEN_CATALOG__NAMESPACE": settings.catalog.namespace,
        "KAIZEN_REDIS__URL": settings.redis.url,
        "KAIZEN_REDIS__KEY_PREFIX": settings.redis.key_prefix,
        "KAIZEN_MLFLOW__TRACKING_URI": settings.mlflow.tracking_uri,
        "KAIZEN_MLFLOW__REGISTERED_MODEL": settings.mlflow.registered_model,
    }


def loop_services(
    config: LoopConfig, settings: KaizenSettings, ports: LoopPorts, kernel_binary: Path
) -> list[ServiceSpec]:
    """Every process of the loop, with its real entry point and one shared environment."""
    from shared.kernels.local import SERVING, health_status

    python = sys.executable
    kernels = f"127.0.0.1:{ports.kernels}"
    env = {
        "PYTHONPATH": str(REPO),
        **config.service_env(),
        **isolation_env(settings),
        "KAIZEN_KERNELS__BACKEND": "grpc",
        "KAIZEN_KERNELS__ADDRESS": kernels,
        "KAIZEN_INGEST__PORT": str(ports.ingest),
        "KAIZEN_GATEWAY__PORT": str(ports.gateway),
        "KAIZEN_GATEWAY__INGEST_URL": f"http://127.0.0.1:{ports.ingest}",
    }

    def module(name: str, module_name: str, **extra: Any) -> ServiceSpec:
        metrics = extra.pop("metrics_port", None)
        threads = config.threads_of(name)
        service_env = {
            **env,
            **({"KAIZEN_METRICS_PORT": str(metrics)} if metrics else {}),
            **({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else {}),
        }
        return ServiceSpec(name, [python, "-m", module_name], service_env, **extra)

    return [
        ServiceSpec(
            "kernels",
            [str(kernel_binary), "--address", kernels, "--log-format", "text"],
            env,
            ready_check=lambda: health_status(kernels) == SERVING,
            ready_timeout_s=60,
        ),
        module(
            "gateway",
            "services.rollout.gateway",
            ready_url=f"http://127.0.0.1:{ports.gateway}/healthz",
            ready_timeout_s=420,
            alone=True,
        ),
        module("ingest-http", "services.ingest.http", ready_url=f"http://127.0.0.1:{ports.ingest}/healthz"),
        module("ingest-worker", "services.ingest.worker", ready_log=STARTED),
        module(
            "labeler",
            "services.labeler",
            metrics_port=ports.labeler_metrics,
            ready_log=STARTED,
            ready_timeout_s=420,
        ),
        module("trainer", "services.trainer", metrics_port=ports.trainer_metrics, ready_log=STARTED),
        module("trainer-worker", "services.trainer.worker"),
        module(
            "evaluator",
            "services.evaluator",
            metrics_port=ports.evaluator_metrics,
            ready_log=STARTED,
            ready_timeout_s=420,
        ),
        module("rollout", "services.rollout", ready_log=STARTED),
    ]


# Traffic and the before/after


async def answer_held_out(
    base_url: str,
    prompts: list[Prompt],
    *,
    max_tokens: int,
    model: str = "kaizen",
    timeout_s: float = 300.0,
    concurrency: int = 8,
    version: str | None = None,
    attempts: int = 5,
) -> tuple[dict[str, str], Counter[str]]:
    """Greedy answers to held-out prompts through the gateway, without consent (never trained on).

    With ``version``, an answer from another version (the gateway has not re-read its routing yet) is
    asked again, up to ``attempts`` times. Returns the answers by prompt id and how many each served
    version gave.
    """
    answers: dict[str, str] = {}
    versions: Counter[str] = Counter()
    slots = asyncio.Semaphore(concurrency)  # concurrent requests share the gateway's generation batches

    async def ask(http: httpx.AsyncClient, prompt: Prompt) -> None:
        for attempt in range(1, attempts + 1):
            async with slots:
                response = await http.post(
                    f"{base_url}/chat/completions",
                    json={
                        "model": model,
                        "messages": chat_messages(prompt),
                        "max_tokens": max_tokens,
                        "temperature": 0.0,
                    },
                    headers={"X-Kaizen-Consent": "false", "X-Kaizen-User": f"held-out-{prompt.id}"},
                )
            response.raise_for_status()
            served = response.headers.get("x-kaizen-model-version", "unknown")
            if version is None or served == version or attempt == attempts:
                break
            await asyncio.sleep(0.5)
        answers[prompt.id] = str(response.json()["choices"][0]["message"]["content"] or "")
        versions[served] += 1

    async with httpx.AsyncClient(timeout=timeout_s) as http:
        await asyncio.gather(*(ask(http, prompt) for prompt in prompts))
    return answers, versions


@dataclass
class LoopResult:
    timeline: Timeline
    rounds: list[dict[str, Any]]
    before: dict[str, str]
    after: dict[str, str]
    before_versions: dict[str, int]
    after_versions: dict[str, int]
    held_out: list[Prompt]
    preference: PreferenceConfig
    services_dead: list[str]


async def drive(
    config: LoopConfig,
    settings: KaizenSettings,
    ports: LoopPorts,
    supervisor: Supervisor,
    log: Log,
    *,
    on_progress: Callable[[Timeline, int], None] | None = None,
) -> LoopResult:
    """Traffic in rounds while the watcher stamps the timeline; stops at promotion, at a candidate's
    failure (``stop_on_failure``) or at the time limit."""
    timeline = Timeline()
    deadline = time.monotonic() + config.time_limit_s
    preference = load_preference()
    prompts = load_prompts()
    train = list(select(prompts, "train"))
    if config.workload.prompt_pool is not None:
        train = train[: config.workload.prompt_pool]
    held_out = list(select(prompts, "held_out"))[: config.comparison.held_out_prompts]
    base_url = f"http://127.0.0.1:{ports.gateway}/v1"
    await ensure_topics(settings)
    watcher = LoopWatcher(settings, timeline)
    rounds: list[dict[str, Any]] = []
    # The base answers the held-out prompts (the before) while the first rounds of traffic run: it is the
    # champion until a promotion, and its answers share the gateway's generation batches with the users'.
    log("the base model answers the held-out prompts (the before), alongside the first traffic")
    before_task = asyncio.create_task(
        answer_held_out(
            base_url,
            held_out,
            max_tokens=config.comparison.max_new_tokens,
            concurrency=config.comparison.concurrency,
        )
    )

    def failed() -> bool:
        return config.stop_on_failure and bool(timeline.failures)

    after: dict[str, str] = {}
    after_versions: Counter[str] = Counter()
    dead: list[str] = []
    async with (
        watcher.broker,
        KaizenClient.over_http(
            f"http://127.0.0.1:{ports.ingest}", public_key=DEV_PUBLIC_KEY, secret_key=DEV_SECRET_KEY
        ) as feedback,
    ):
        await watcher.broker.start()
        number = 0
        while True:
            dead = supervisor.dead()
            if timeline.promoted:
                timeline.stopped_because = f"version {timeline.candidate_version} promoted to champion"
                break
            if dead:
                timeline.stopped_because = f"service(s) exited: {', '.join(dead)}"
                break
            if failed():
                timeline.stopped_because = f"no new champion: {timeline.failures[-1]}"
                break
            if time.monotonic() > deadline:
                timeline.stopped_because = (
                    f"time limit of {config.time_limit_s:.0f} s reached before "
                    f"'{timeline.next_stage()}'" + (f"; {timeline.failures[-1]}" if timeline.failures else "")
                )
                break
            number += 1
            plan = config.workload
            round_task = asyncio.create_task(
                run_workload(
                    WorkloadConfig(
                        base_url=base_url,
                        project_id=settings.project_id,
                        users=plan.users,
                        requests=plan.requests_per_round,
                        concurrency=plan.concurrency,
                        seed=config.seed * 100_003 + number,
                        consent_share=plan.consent_share,
                        max_tokens=plan.max_tokens,
                        temperature=plan.temperature,
                        timeout_s=plan.request_timeout_s,
                        max_session_turns=plan.max_session_turns,
                        run_tag=f"{settings.project_id}-r{number}",
                    ),
                    train,
                    preference,
                    feedback,
                )
            )
            # A round ends early when the loop is over (a promotion, a candidate's failure, a dead service,
            # the time limit): its requests in flight are dropped rather than waited for, and the top of
            # the loop says why.
            while not round_task.done() and not (
                timeline.promoted or failed() or supervisor.dead() or time.monotonic() > deadline
            ):
                await asyncio.wait({round_task}, timeout=0.5)
            if not round_task.done():
                round_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, WorkloadError):
                    await round_task
                continue
            report: WorkloadReport = round_task.result()
            rounds.append(round_summary(number, timeline, report))
            if on_progress is not None:
                on_progress(timeline, number)
            await asyncio.sleep(plan.pause_s)
        if dead:
            before_task.cancel()
        try:
            before, before_versions = await before_task
        except (asyncio.CancelledError, httpx.HTTPError) as exc:
            before, before_versions = {}, Counter()
            timeline.failures.append(f"the base did not answer the held-out prompts: {exc!r}")
        if timeline.promoted:
            # Promotion moved the alias; an answer from before the gateway re-read its routing is asked again.
            log("the new champion answers the held-out prompts (the after)")
            after, after_versions = await answer_held_out(
                base_url,
                held_out,
                max_tokens=config.comparison.max_new_tokens,
                concurrency=config.comparison.concurrency,
                version=timeline.candidate_version,
            )
        # Let the watcher take the last events in flight.
        await asyncio.sleep(1.0)
    return LoopResult(
        timeline=timeline,
        rounds=rounds,
        before=before,
        after=after,
        before_versions=dict(before_versions),
        after_versions=dict(after_versions),
        held_out=held_out,
        preference=preference,
        services_dead=dead,
    )


def round_summary(number: int, timeline: Timeline, report: WorkloadReport) -> dict[str, Any]:
    """What one round of traffic saw, per served version."""
    versions: dict[str, dict[str, Any]] = {}
    for stats in report.by_version().values():
        versions[stats.model_version] = {
            "answered": stats.answered,
            "preference": stats.mean_preference,
            "words": stats.mean_words,
            "feedback": stats.mean_feedback,
        }
    answered = [turn for turn in report.turns if turn.answer is not None]
    return {
        "round": number,
        "at_s": round(time.time() - timeline.started_at, 2),
        "requests": len(report.turns),
        "errors": sum(turn.error is not None for turn in report.turns),
        "mean_preference": fmean(t.score.preference for t in answered if t.score) if answered else None,
        "versions": versions,
    }


def run_loop(
    config: LoopConfig,
    settings: KaizenSettings,
    *,
    log: Log = print,
    on_progress: Callable[[Timeline, int], None] | None = None,
    kernel_binary: Path | None = None,
) -> LoopResult:
    """Start the loop's services, drive the loop, stop the services (always)."""
    from shared.kernels.local import build_kernels

    binary = kernel_binary or build_kernels()
    ports = LoopPorts.pick()
    supervisor = Supervisor(settings.home, log=log)
    started = time.monotonic()
    try:
        supervisor.start(loop_services(config, settings, ports, binary))
        log(f"every service ready after {time.monotonic() - started:.1f} s")
        return asyncio.run(drive(config, settings, ports, supervisor, log, on_progress=on_progress))
    finally:
        with contextlib.suppress(Exception):
            for name in supervisor.dead():
                log(f"{name} had exited; last log lines:\n{supervisor.tail(name)}")
        supervisor.stop()
