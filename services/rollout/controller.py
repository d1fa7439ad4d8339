"""The canary controller: stage plan, analysis at each stage, promotion or rollback, manual controls.

Everything it knows lives in Redis (the running rollout, the queue, the routing table and the sample
windows), so a restarted controller resumes the same rollout at the same stage, and the CLI's controls
(another process) act on the same state. Every change happens under one Redis lock and is announced
on ``rollout.stage`` with the stage, the weight, the metrics behind it, the decision and the reason.

Samples come from the live event stream, tagged with the model version that served each trace:
``trace.ingested`` (error flag, latency), ``trace.labeled`` (composite reward, first label of a trace)
and ``feedback.received`` (explicit feedback values; the version is joined from the trace when the
event does not carry it). They are kept per rollout, stage and version, so canary and champion are
compared over the same window. At a final stage of weight 1.0 the champion gets no traffic, so that
stage compares both arms over the whole rollout: the champion's baseline is everything it served since
the canary started, and the canary's verdict rests on every sample it earned, not on the few of its
last stage (a handful of ratings at 100% once rolled back a candidate that the earlier stages had
passed).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from services.rollout.analysis import ArmSamples, StageAnalysis, analyse
from services.rollout.errors import NoRollout, RolloutError
from services.rollout.routing import (
    BASE_VERSION,
    Routing,
    TrafficRouter,
    read_routing,
)
from services.rollout.settings import RolloutSettings
from shared.events import (
    EXPLICIT_FEEDBACK_KINDS,
    EvalPassed,
    FeedbackReceived,
    RolloutDecision,
    RolloutStage,
    TraceIngested,
    TraceLabeled,
)
from shared.registry import CHAMPION, PREVIOUS, ModelRegistry
from shared.state import RedisState

SERVICE = "rollout"
ACTIVE_KEY = "rollout:active"
QUEUE_KEY = "rollout:queue"
LAST_KEY = "rollout:last"
LOCK = "rollout"
TRACE_VERSION_TTL_S = 7 * 24 * 3600
TAG_STATUS = "kaizen.rollout.status"
TAG_REASON = "kaizen.rollout.reason"

SampleKind = Literal["errors", "latency", "feedback", "reward"]
Publish = Callable[[RolloutStage], Awaitable[None]]

log = logging.getLogger("kaizen.rollout.controller")


class Rollout(BaseModel):
    """The running rollout, as kept in Redis."""

    rollout_id: str = Field(description="Unique id of this rollout (salt of the user hash).")
    model_version: str = Field(description="Canary version.")
    registered_model: str = Field(description="Registered model the versions belong to.")
    champion_version: str = Field(description="Champion it runs against ('base' for the base model).")
    stage: int = Field(0, ge=0, description="Index of the running stage in the plan.")
    stage_started_at: float = Field(description="When the stage started (epoch seconds).")
    started_at: float = Field(description="When the rollout started (epoch seconds).")
    extensions: int = Field(0, ge=0, description="Times the running stage was extended for too little data.")
    paused: bool = Field(False, description="Paused by an operator: no analysis, no advance.")
    paused_at: float | None = Field(None, description="When it was paused (the stage clock stops).")
    shadow: bool = Field(False, description="Shadow mode: the canary only answers mirrored copies.")
    correlation_id: str = Field(description="The eval.passed event that started it.")


class Controller:
    """The controller's state machine. Handlers, the tick loop and the CLI all call into it."""

    def __init__(
        self,
        settings: RolloutSettings,
        state: RedisState,
        registry: ModelRegistry,
        router: TrafficRouter,
        publish: Publish,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.options = settings.rollout
        self.state = state
        self.registry = registry
        self.router = router
        self.publish = publish
        self.clock = clock

    # ------------------------------------------------------------------ state

    async def active(self) -> Rollout | None:
        document = await self.state.get_json(ACTIVE_KEY)
        return None if document is None else Rollout.model_validate(document)

    async def queue(self) -> list[EvalPassed]:
        return [EvalPassed.model_validate(item) for item in await self.state.get_json(QUEUE_KEY) or []]

    async def _save(self, rollout: Rollout | None) -> None:
        if rollout is None:
            await self.state.client.delete(self.state.key("state", ACTIVE_KEY))
        else:
            await self.state.put_json(ACTIVE_KEY, rollout.model_dump(mode="json"))

    async def _save_queue(self, queue: list[EvalPassed]) -> None:
        await self.state.put_json(QUEUE_KEY, [item.model_dump(mode="json") for item in queue])

    def _lock(self) -> Any:
        return self.state.lock(LOCK, timeout_s=60.0, blocking_timeout_s=30.0)

    def weight(self, rollout: Rollout) -> float:
        return self.options.stages[rollout.stage]

    async def _route(self, routing: Routing) -> None:
        await self.router.apply(routing)

    def _routing_for(self, rollout: Rollout) -> Routing:
        return Routing(
            champion_version=rollout.champion_version,
            canary_version=rollout.model_version,
            canary_weight=self.weight(rollout),
            shadow=rollout.shadow,
            rollout_id=rollout.rollout_id,
            stage=rollout.stage,
            registered_model=rollout.registered_model,
        )

    async def _announce(
        self,
        rollout: Rollout,
        decision: RolloutDecision,
        reason: str,
        weight: float,
        metrics: dict[str, float] | None = None,
    ) -> RolloutStage:
        event = RolloutStage(
            producer=SERVICE,
            project_id=self.settings.project_id,
            correlation_id=rollout.model_version,
            model_version=rollout.model_version,
            champion_version=rollout.champion_version,
            stage=rollout.stage,
            canary_weight=weight,
            decision=decision,
            reason=reason,
            metrics=metrics or {},
        )
        await self.publish(event)
        await self.state.put_json(LAST_KEY, event.model_dump(mode="json"))
        log.info(
            "rollout %s",
            decision,
            extra={"model_version": rollout.model_version, "stage": rollout.stage, "reason": reason},
        )
        return event

    # ------------------------------------------------------------------ samples

    def _window(self, rollout_id: str, scope: str, version: str, kind: SampleKind) -> str:
        return f"rollout:{rollout_id}:{scope}:{version}:{kind}"

    async def _fresh(self, kind: str, ids: Sequence[str]) -> list[bool]:
        """For each id, whether it is seen for the first time (at-least-once delivery repeats events)."""
        if not ids:
            return []
        async with self.state.client.pipeline(transaction=False) as pipe:
            for item in ids:
                pipe.set(self.state.key("seen", kind, item), b"1", nx=True, ex=TRACE_VERSION_TTL_S)
            return [bool(result) for result in await pipe.execute()]

    async def _record(self, samples: Sequence[tuple[str | None, SampleKind, float]]) -> int:
        """Append samples of the running rollout's two versions to their windows; returns how many."""
        rollout = await self.active()
        if rollout is None:
            return 0
        arms = (rollout.model_version, rollout.champion_version)
        keys: set[str] = set()
        kept = 0
        async with self.state.client.pipeline(transaction=False) as pipe:
            for version, kind, value in samples:
                if version not in arms:
                    continue
                kept += 1
                for scope in (str(rollout.stage), "all"):
                    key = self.state.key("window", self._window(rollout.rollout_id, scope, version, kind))
                    pipe.rpush(key, json.dumps(value).encode())
                    keys.add(key)
            for key in keys:
                pipe.ltrim(key, -self.options.window_max, -1)
            await pipe.execute()
        return kept

    async def record_traces(self, events: Sequence[TraceIngested]) -> int:
        """Served traces: each one's error flag and latency count for its version's arm."""
        fresh = [
            e
            for e, new in zip(
                events, await self._fresh("rollout-trace", [str(e.event_id) for e in events]), strict=True
            )
            if new
        ]
        samples: list[tuple[str | None, SampleKind, float]] = []
        async with self.state.client.pipeline(transaction=False) as pipe:
            for event in fresh:
                version = event.model_version or BASE_VERSION
                pipe.set(
                    self.state.key("rollout", "trace-version", event.trace_id),
                    version.encode(),
                    ex=TRACE_VERSION_TTL_S,
                )
                samples.append((version, "errors", 1 if event.status == "error" else 0))
                if event.latency_ms is not None:
                    samples.append((version, "latency", event.latency_ms))
            await pipe.execute()
        waiting = await self._waiting_feedback([e.trace_id for e in fresh])
        for event in fresh:
            version = event.model_version or BASE_VERSION
            samples.extend((version, "feedback", value) for value in waiting.get(event.trace_id, []))
        return await self._record(samples)

    async def record_labels(self, events: Sequence[TraceLabeled]) -> int:
        """Traces' composite rewards (a trace's first label; later label versions are not counted again)."""
        fresh = [
            e
            for e, new in zip(
                events, await self._fresh("rollout-label", [e.trace_id for e in events]), strict=True
            )
            if new
        ]
        versions = await self._versions([e.trace_id for e in fresh if e.model_version is None])
        return await self._record(
            [(e.model_version or versions.get(e.trace_id), "reward", e.composite_reward) for e in fresh]
        )

    async def record_feedback(self, events: Sequence[FeedbackReceived]) -> int:
        """Explicit feedback values (implicit signals carry no value and are not compared)."""
        rated = [e for e in events if e.kind in EXPLICIT_FEEDBACK_KINDS and e.value is not None]
        fresh = [
            e
            for e, new in zip(
                rated, await self._fresh("rollout-feedback", [e.feedback_id for e in rated]), strict=True
            )
            if new
        ]
        versions = await self._versions([e.trace_id for e in fresh if e.model_version is None])
        known = [e for e in fresh if e.model_version or e.trace_id in versions]
        # Users often rate an answer before its trace is through ingest: such feedback waits for the
        # trace (record_traces picks it up) instead of being dropped for want of a version.
        waiting = [e for e in fresh if not (e.model_version or e.trace_id in versions)]
        if waiting:
            async with self.state.client.pipeline(transaction=False) as pipe:
                for event in waiting:
                    key = self.state.key("rollout", "feedback-waiting", event.trace_id)
                    pipe.rpush(key, json.dumps(float(event.value or 0.0)).encode())
                    pipe.expire(key, TRACE_VERSION_TTL_S)
                await pipe.execute()
        return await self._record(
            [(e.model_version or versions.get(e.trace_id), "feedback", float(e.value or 0.0)) for e in known]
        )

    async def _waiting_feedback(self, trace_ids: Sequence[str]) -> dict[str, list[float]]:
        """Feedback values that arrived before their traces, taken (removed) for these traces."""
        if not trace_ids:
            return {}
        keys = [self.state.key("rollout", "feedback-waiting", t) for t in trace_ids]
        async with self.state.client.pipeline(transaction=True) as pipe:
            for key in keys:
                pipe.lrange(key, 0, -1)
            pipe.delete(*keys)
            *values, _ = await pipe.execute()
        return {
            trace_id: [float(json.loads(item)) for item in items]
            for trace_id, items in zip(trace_ids, values, strict=True)
            if items
        }

    async def _versions(self, trace_ids: Sequence[str]) -> dict[str, str]:
        """The serving version of traces, from trace.ingested (feedback events may not carry it)."""
        if not trace_ids:
            return {}
        raw = await self.state.client.mget([self.state.key("rollout", "trace-version", t) for t in trace_ids])
        return {
            trace_id: value.decode() if isinstance(value, bytes) else str(value)
            for trace_id, value in zip(trace_ids, raw, strict=True)
            if value is not None
        }

    async def _arm(self, rollout: Rollout, scope: str, version: str) -> ArmSamples:
        async def read(kind: SampleKind) -> list[Any]:
            return await self.state.window(self._window(rollout.rollout_id, scope, version, kind))

        errors, latency, feedback, reward = await asyncio.gather(
            read("errors"), read("latency"), read("feedback"), read("reward")
        )
        return ArmSamples(
            errors=[int(v) for v in errors],
            latencies_ms=[float(v) for v in latency],
            feedback=[float(v) for v in feedback],
            rewards=[float(v) for v in reward],
        )

    async def analyse(self, rollout: Rollout) -> StageAnalysis:
        """Canary vs champion over the running stage (both over the whole rollout at 100%)."""
        scope = "all" if self.weight(rollout) >= 1.0 and not rollout.shadow else str(rollout.stage)
        canary, champion = await asyncio.gather(
            self._arm(rollout, scope, rollout.model_version),
            self._arm(rollout, scope, rollout.champion_version),
        )
        return await asyncio.to_thread(analyse, canary, champion, self.options)

    # ------------------------------------------------------------------ the plan

    async def on_eval_passed(self, event: EvalPassed) -> RolloutStage | None:
        """Start a rollout of the passed candidate, or queue it (or supersede) if one runs."""
        if not await self.state.first_time("rollout-eval", str(event.event_id)):
            return None
        try:
            return await self._on_eval_passed(event)
        except BaseException:
            await self.state.forget("rollout-eval", str(event.event_id))  # redelivery must redo it
            raise

    async def _on_eval_passed(self, event: EvalPassed) -> RolloutStage | None:
        async with self._lock():
            active = await self.active()
            if active is not None and active.model_version == event.model_version:
                return None
            if active is None:
                return await self._start(event)
            if self.options.on_new_candidate == "supersede":
                await self._end(
                    active,
                    "aborted",
                    f"superseded by version {event.model_version}, which passed evaluation meanwhile",
                )
                return await self._start(event)
            queue = await self.queue()
            if all(item.model_version != event.model_version for item in queue):
                queue.append(event)
                await self._save_queue(queue)
            waiting = Rollout(
                rollout_id="queued",
                model_version=event.model_version,
                registered_model=event.registered_model,
                champion_version=active.champion_version,
                stage=0,
                stage_started_at=self.clock(),
                started_at=self.clock(),
                correlation_id=str(event.event_id),
            )
            return await self._announce(
                waiting,
                "queued",
                f"version {active.model_version} is being rolled out (stage {active.stage}); "
                f"version {event.model_version} waits, position {len(queue)} in the queue",
                0.0,
            )

    async def _start(self, event: EvalPassed) -> RolloutStage:
        champion = await asyncio.to_thread(self.registry.version, CHAMPION, event.registered_model)
        now = self.clock()
        rollout = Rollout(
            rollout_id=uuid.uuid4().hex[:12],
            model_version=event.model_version,
            registered_model=event.registered_model,
            champion_version=str(champion.version) if champion is not None else BASE_VERSION,
            stage_started_at=now,
            started_at=now,
            shadow=self.options.shadow,
            correlation_id=str(event.event_id),
        )
        await self._save(rollout)
        await self._route(self._routing_for(rollout))
        mode = "shadow (mirrored copies only)" if rollout.shadow else "canary"
        return await self._announce(
            rollout,
            "started",
            f"version {rollout.model_version} passed evaluation; {mode} at {self.weight(rollout):.0%} "
            f"against champion {rollout.champion_version}, plan {self.options.stages}",
            self.weight(rollout),
            dict(event.metrics),
        )

    async def _start_next(self) -> RolloutStage | None:
        queue = await self.queue()
        if not queue:
            return None
        started = await self._start(queue[0])
        await self._save_queue(queue[1:])
        return started

    async def _end(
        self,
        rollout: Rollout,
        decision: Literal["rolled_back", "aborted"],
        reason: str,
        metrics: dict[str, float] | None = None,
        decided_at: float | None = None,
    ) -> RolloutStage:
        """Weight to 0 at once, then record why: state, MLflow tag, rollout.stage."""
        await self._route(
            Routing(champion_version=rollout.champion_version, registered_model=rollout.registered_model)
        )
        figures = dict(metrics or {})
        if decided_at is not None:
            figures["rollback_latency_ms"] = (time.perf_counter() - decided_at) * 1000.0
        await self._save(None)
        try:
            await asyncio.to_thread(self._tag, rollout, decision, reason)
        except Exception as exc:  # the weight is already 0: a tag failure must not undo the decision
            log.error("could not tag the rolled back version in MLflow", extra={"error": repr(exc)})
        return await self._announce(rollout, decision, reason, 0.0, figures)

    def _tag(self, rollout: Rollout, status: str, reason: str) -> None:
        self.registry.tag(rollout.model_version, TAG_STATUS, status, rollout.registered_model)
        self.registry.tag(rollout.model_version, TAG_REASON, reason[:4900], rollout.registered_model)

    async def _promote(self, rollout: Rollout, reason: str, metrics: dict[str, float]) -> RolloutStage:
        previous = await asyncio.to_thread(
            self.registry.promote, rollout.model_version, rollout.registered_model
        )
        await self._route(
            Routing(champion_version=rollout.model_version, registered_model=rollout.registered_model)
        )
        await self._save(None)
        await asyncio.to_thread(self._tag, rollout, "promoted", reason)
        kept = f"; version {previous} keeps alias 'previous'" if previous is not None else ""
        return await self._announce(rollout, "promoted", reason + kept, 1.0, metrics)

    async def tick(self) -> list[RolloutStage]:
        """Analyse the running stage and act: roll back, extend, advance, promote; start a queued one."""
        async with self._lock():
            rollout = await self.active()
            if rollout is None:
                started = await self._start_next()
                return [started] if started is not None else []
            if rollout.paused:
                return []
            decided: list[RolloutStage] = []
            analysis = await self.analyse(rollout)
            metrics = analysis.metrics()
            weight = self.weight(rollout)
            regressions = analysis.regressions()
            if regressions:
                decided_at = time.perf_counter()
                reason = f"stage {rollout.stage} ({weight:.0%}): " + "; ".join(
                    f"{v.metric} regressed: {v.detail}" for v in regressions
                )
                decided.append(await self._end(rollout, "rolled_back", reason, metrics, decided_at))
            else:
                period = max(self.options.min_stage_duration_s, self.options.tick_s)
                elapsed = self.clock() - rollout.stage_started_at
                if elapsed < period * (rollout.extensions + 1):
                    return []
                missing = analysis.insufficient(self.options.required_at(rollout.stage))
                if missing:
                    detail = "; ".join(f"{v.metric}: {v.detail}" for v in missing)
                    if rollout.extensions >= self.options.max_extensions:
                        reason = (
                            f"stage {rollout.stage} ({weight:.0%}): too little data after "
                            f"{rollout.extensions} extensions ({elapsed:.0f}s), and missing data is never "
                            "a pass: "
                            f"{detail}"
                        )
                        decided.append(await self._end(rollout, "rolled_back", reason, metrics))
                    else:
                        rollout.extensions += 1
                        await self._save(rollout)
                        reason = (
                            f"stage {rollout.stage} ({weight:.0%}) extended by {period:.0f}s "
                            f"(extension {rollout.extensions} of {self.options.max_extensions}): {detail}"
                        )
                        return [await self._announce(rollout, "extended", reason, weight, metrics)]
                elif rollout.stage + 1 < len(self.options.stages):
                    passed = analysis.summary()
                    rollout.stage += 1
                    rollout.stage_started_at = self.clock()
                    rollout.extensions = 0
                    await self._save(rollout)
                    await self._route(self._routing_for(rollout))
                    reason = (
                        f"stage {rollout.stage - 1} ({weight:.0%}) held for {elapsed:.0f}s; advanced to "
                        f"{self.weight(rollout):.0%}: {passed}"
                    )
                    return [await self._announce(rollout, "advanced", reason, self.weight(rollout), metrics)]
                else:
                    reason = (
                        f"every stage of {self.options.stages} passed; final stage held for {elapsed:.0f}s: "
                        f"{analysis.summary()}"
                    )
                    decided.append(await self._promote(rollout, reason, metrics))
            started = await self._start_next()
            if started is not None:
                decided.append(started)
            return decided

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until ``stop`` is set; a failing tick is logged and retried on the next one."""
        while not stop.is_set():
            try:
                await self.tick()
            except Exception as exc:
                log.exception("rollout tick failed", extra={"error": repr(exc)})
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.options.tick_s)
            except TimeoutError:
                pass

    async def sync_champion(self) -> Routing:
        """With no rollout running, point the routing table's champion at the MLflow alias."""
        async with self._lock():
            routing = await read_routing(self.state)
            if await self.active() is not None:
                return routing
            name = self.settings.mlflow.registered_model
            champion = await asyncio.to_thread(self.registry.version, CHAMPION, name)
            routing = Routing(
                champion_version=str(champion.version) if champion is not None else BASE_VERSION,
                registered_model=name,
            )
            await self._route(routing)
            return routing

    # ------------------------------------------------------------------ manual controls

    async def _require(self) -> Rollout:
        rollout = await self.active()
        if rollout is None:
            raise NoRollout("no rollout is running")
        return rollout

    async def pause(self, reason: str = "paused by an operator") -> RolloutStage:
        """Stop the stage clock and the analysis; the weights stay as they are."""
        async with self._lock():
            rollout = await self._require()
            if rollout.paused:
                raise RolloutError(f"the rollout of version {rollout.model_version} is already paused")
            rollout.paused, rollout.paused_at = True, self.clock()
            await self._save(rollout)
            return await self._announce(rollout, "paused", reason, self.weight(rollout))

    async def resume(self, reason: str = "resumed by an operator") -> RolloutStage:
        async with self._lock():
            rollout = await self._require()
            if not rollout.paused:
                raise RolloutError(f"the rollout of version {rollout.model_version} is not paused")
            if rollout.paused_at is not None:
                rollout.stage_started_at += self.clock() - rollout.paused_at
            rollout.paused, rollout.paused_at = False, None
            await self._save(rollout)
            return await self._announce(rollout, "resumed", reason, self.weight(rollout))

    async def abort(self, reason: str = "aborted by an operator") -> RolloutStage:
        """Weight to 0 now; the champion stays. A queued candidate starts on the next tick."""
        async with self._lock():
            rollout = await self._require()
            return await self._end(rollout, "aborted", reason)

    async def promote(self, reason: str = "promoted by an operator") -> RolloutStage:
        """Skip the remaining stages: the canary becomes champion now."""
        async with self._lock():
            rollout = await self._require()
            analysis = await self.analyse(rollout)
            return await self._promote(rollout, f"{reason} at stage {rollout.stage}", analysis.metrics())

    async def rollback(self, reason: str = "rolled back by an operator") -> RolloutStage:
        """Return the champion alias to the version holding ``previous``, at once (``kaizen rollback``).

        A running canary is aborted first, so users go back to the restored champion only.
        """
        async with self._lock():
            name = self.settings.mlflow.registered_model
            if await asyncio.to_thread(self.registry.version, PREVIOUS, name) is None:
                raise RolloutError(
                    f"registered model {name!r} has no version with alias {PREVIOUS!r} to return to"
                )
            active = await self.active()
            if active is not None:
                await self._end(active, "aborted", f"{reason}: the champion is being rolled back")
            current = await asyncio.to_thread(self.registry.version, CHAMPION, name)
            restored = await asyncio.to_thread(self.registry.rollback, name)
            await self._route(Routing(champion_version=restored, registered_model=name))
            demoted = str(current.version) if current is not None else BASE_VERSION
            record = Rollout(
                rollout_id="rollback",
                model_version=demoted,
                registered_model=name,
                champion_version=restored,
                stage_started_at=self.clock(),
                started_at=self.clock(),
                correlation_id=demoted,
            )
            await asyncio.to_thread(self._tag, record, "rolled_back", reason)
            return await self._announce(
                record,
                "rolled_back",
                f"{reason}: champion returned from version {demoted} to {restored}",
                0.0,
            )

    async def status(self) -> dict[str, Any]:
        """The running rollout, its live analysis, the queue, the routing table and the last decision."""
        rollout = await self.active()
        document: dict[str, Any] = {
            "rollout": rollout.model_dump(mode="json") if rollout is not None else None,
            "weight": self.weight(rollout) if rollout is not None else 0.0,
            "plan": self.options.stages,
            "queue": [item.model_version for item in await self.queue()],
            "routing": (await read_routing(self.state)).model_dump(mode="json"),
            "last": await self.state.get_json(LAST_KEY),
        }
        if rollout is not None:
            analysis = await self.analyse(rollout)
            document["analysis"] = [
                {"metric": v.metric, "status": v.status, "detail": v.detail} for v in analysis.verdicts
            ]
        return document
