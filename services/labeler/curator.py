"""The curator: watches labels and live traffic, decides when to learn, builds the dataset.

State in Redis, per project: the count of new labeled traces since the last dataset, the champion's
live-reward window, the error-rate window, the time of the last dataset, and at most one pending build
request. A trigger that fires records a request with ``SET NX``: however many replicas see the count
cross the threshold at once, one request exists, and the build that serves it runs under a lock, so one
dataset.ready comes out. The request carries the dataset id: a build that crashed after writing the
dataset finds it on restart and only publishes. After the build the counter is decreased by the count
the request saw (labels that arrived meanwhile stay counted) and the windows start over.

Building reads the new labels, the traces they come from (consent) and earlier datasets (replay), calls
``curation.build_dataset`` and writes the items in one append: one Iceberg snapshot per dataset.

``python -m services.labeler.curator`` runs the curator alone (the labeler service with the curator
role only); ``python -m services.labeler`` runs both roles.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pyiceberg.expressions import And, EqualTo, In

from services.labeler.curation import build_dataset
from services.labeler.settings import CuratorSettings
from services.labeler.triggers import Trigger, error_rate, reward_drop, sample_count, time_interval
from shared.evalsets import Decontaminator
from shared.events import DatasetReady, TableRef, TraceIngested, TraceLabeled
from shared.rewards import RewardConfig
from shared.rewards.config import IN_PROCESS_COMPONENTS
from shared.rewards.embeddings import SentenceEmbedder
from shared.state import RedisState
from shared.store import DATASETS, LABELS, TRACES, IcebergStore

log = logging.getLogger("kaizen.curator")

PRODUCER = "curator"
ChampionLookup = Callable[[], Awaitable[str | None]]
Publish = Callable[[DatasetReady], Awaitable[None]]

# Counts a labeled trace once (by event id) and only on its first label version, atomically.
_COUNT_ONCE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  if ARGV[2] == '1' then return redis.call('INCRBY', KEYS[2], 1) end
  return 0
end
return -1
"""


@dataclass(frozen=True)
class BuildRequest:
    dataset_id: str
    reason: str
    details: dict[str, float]
    counted: int
    requested_at: float


class Curator:
    def __init__(
        self,
        config: CuratorSettings,
        store: IcebergStore,
        state: RedisState,
        embedder: SentenceEmbedder,
        reward_config: RewardConfig,
        champion: ChampionLookup,
        *,
        clock: Callable[[], float] = time.time,
        state_ttl_s: int = 30 * 24 * 3600,
    ) -> None:
        self.config = config
        self.store = store
        self.state = state
        self.embedder = embedder
        self.reward_config = reward_config
        self.champion = champion
        self.clock = clock
        self.state_ttl_s = state_ttl_s
        self.decontaminator = Decontaminator.for_evaluation_sets(n=config.decontamination_ngram)
        combined = f"{config.config_hash}:{reward_config.config_hash}"
        self.config_hash = hashlib.sha256(combined.encode()).hexdigest()[:16]
        # GRPO completions are scored in process by the trainer: the weighted components that need
        # neither the LLM judge nor a user (no faithfulness, relevancy, rubric or feedback).
        self.grpo_components = [
            name
            for name, weight in reward_config.weights.items()
            if weight > 0 and name in IN_PROCESS_COMPONENTS
        ]

    # -- keys ------------------------------------------------------------------------------------

    def _new_counter(self, project_id: str) -> str:
        return f"curator:new:{project_id}"

    def _request_key(self, project_id: str) -> str:
        return self.state.key("state", f"curator:request:{project_id}")

    def _last_key(self, project_id: str) -> str:
        return f"curator:last:{project_id}"

    def _since_key(self, project_id: str) -> str:
        return self.state.key("state", f"curator:since:{project_id}")

    def _projects_key(self) -> str:
        return self.state.key("curator", "projects")

    def _reward_window(self, project_id: str, model_version: str | None) -> str:
        return f"curator:reward:{project_id}:{model_version or '-'}"

    def _error_window(self, project_id: str) -> str:
        return f"curator:errors:{project_id}"

    # -- events ----------------------------------------------------------------------------------

    async def on_labeled(self, events: Sequence[TraceLabeled]) -> None:
        """Count new labeled traces, feed the live-reward windows, then check the triggers."""
        projects: dict[str, None] = {}
        for event in events:
            result = await self.state.client.eval(  # type: ignore[misc]
                _COUNT_ONCE,
                2,
                self.state.key("seen", "curator-labeled", str(event.event_id)),
                self.state.key("count", self._new_counter(event.project_id)),
                str(self.state_ttl_s),
                "1" if event.label_version == 1 else "0",
            )
            if int(result) < 0:
                continue  # a redelivery
            projects[event.project_id] = None
            await self.state.push_window(
                self._reward_window(event.project_id, event.model_version),
                event.composite_reward,
                max_len=2 * self.config.reward_window,
            )
        for project_id in projects:
            await self._known(project_id)
            await self.check(project_id)

    async def on_ingested(self, events: Sequence[TraceIngested]) -> None:
        """Feed the error-rate window with live traffic."""
        projects: dict[str, None] = {}
        for event in events:
            if not await self.state.first_time(
                "curator-ingested", str(event.event_id), ttl_s=self.state_ttl_s
            ):
                continue
            projects[event.project_id] = None
            await self.state.push_window(
                self._error_window(event.project_id),
                1 if event.status == "error" else 0,
                max_len=2 * self.config.error_window,
            )
        for project_id in projects:
            await self._known(project_id)
            await self.check(project_id)

    async def _known(self, project_id: str) -> None:
        await self.state.client.sadd(self._projects_key(), project_id)  # type: ignore[misc]
        await self.state.client.set(self._since_key(project_id), str(self.clock()).encode(), nx=True)

    # -- triggers ----------------------------------------------------------------------------------

    async def pending(self, project_id: str) -> BuildRequest | None:
        raw = await self.state.client.get(self._request_key(project_id))
        return BuildRequest(**json.loads(raw)) if raw is not None else None

    async def check(self, project_id: str) -> Trigger | None:
        """Evaluate every trigger; the first that fires records the project's one build request."""
        if await self.pending(project_id) is not None:
            return None
        if await self.cooling_down(project_id):
            return None
        trigger = await self.evaluate(project_id)
        if trigger is None:
            return None
        counted = await self.state.counter(self._new_counter(project_id))
        request = BuildRequest(
            dataset_id=f"ds-{uuid.uuid4().hex[:16]}",
            reason=trigger.reason,
            details=trigger.details,
            counted=counted,
            requested_at=self.clock(),
        )
        created = await self.state.client.set(
            self._request_key(project_id), json.dumps(request.__dict__).encode(), nx=True
        )
        if not created:
            return None
        log.info(
            "learning trigger fired",
            extra={
                "project_id": project_id,
                "reason": trigger.reason,
                "details": trigger.details,
                "dataset_id": request.dataset_id,
            },
        )
        return trigger

    async def cooling_down(self, project_id: str) -> bool:
        """Whether the project's last dataset was built less than ``min_interval_s`` ago (a trigger that
        built nothing does not count)."""
        if self.config.min_interval_s <= 0:
            return False
        last = await self.state.get_json(self._last_key(project_id))
        built_at = last.get("dataset_built_at") if last else None
        return built_at is not None and self.clock() - float(built_at) < self.config.min_interval_s

    async def evaluate(self, project_id: str) -> Trigger | None:
        config = self.config
        new_samples = await self.state.counter(self._new_counter(project_id))
        found = sample_count(new_samples, config.sample_count_threshold)
        if found is not None:
            return found
        champion = await self.champion()
        if champion is not None:
            rewards = [float(x) for x in await self.state.window(self._reward_window(project_id, champion))]
            found = reward_drop(
                rewards,
                config.reward_window,
                config.reward_drop_threshold,
                new_samples,
                config.min_new_samples,
            )
            if found is not None:
                return Trigger(
                    found.reason,
                    found.details | {"champion_version": float(champion)}
                    if champion.isdigit()
                    else found.details,
                )
        errors = [int(x) for x in await self.state.window(self._error_window(project_id))]
        found = error_rate(
            errors,
            config.error_window,
            config.error_rate_threshold,
            config.error_rate_factor,
            new_samples,
            config.min_new_samples,
        )
        if found is not None:
            return found
        last = await self.state.get_json(self._last_key(project_id))
        since_raw = await self.state.client.get(self._since_key(project_id))
        since = float(last["built_at"]) if last else (float(since_raw) if since_raw is not None else None)
        return time_interval(self.clock(), since, new_samples, config.max_interval_s, config.min_new_samples)

    # -- building ----------------------------------------------------------------------------------

    async def projects(self) -> list[str]:
        members = await self.state.client.smembers(self._projects_key())  # type: ignore[misc]
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    async def tick(self, publish: Publish) -> list[DatasetReady]:
        """Check the time-based triggers and serve every pending build request (one replica each)."""
        published = []
        for project_id in await self.projects():
            await self.check(project_id)
            event = await self.serve(project_id, publish)
            if event is not None:
                published.append(event)
        return published

    async def serve(self, project_id: str, publish: Publish) -> DatasetReady | None:
        """Build, write and publish the pending dataset of a project, if any and if no replica is on it."""
        if await self.pending(project_id) is None:
            return None
        lock = self.state.lock(f"curator-build:{project_id}", timeout_s=1800, blocking_timeout_s=0)
        if not await lock.acquire():
            return None
        try:
            request = await self.pending(project_id)  # still there: no replica served it meanwhile
            if request is None:
                return None
            event = await self.build(project_id, request)
            if event is not None:
                await publish(event)
            await self._finish(project_id, request)
            return event
        finally:
            await lock.release()

    async def build(self, project_id: str, request: BuildRequest) -> DatasetReady | None:
        """Write the requested dataset (or find it written by an earlier attempt); its event."""
        last = await self.state.get_json(self._last_key(project_id))
        watermark = last["watermark"] if last else None
        # The cutoff leaves out labels younger than label_settle_s. Wait until it covers the request, so
        # the labels that fired the trigger are in: a reduced loop whose labels came in a burst just
        # before its trigger built a dataset of 4 items out of 24 new samples.
        wait = request.requested_at + self.config.label_settle_s - self.clock()
        if wait > 0:
            await asyncio.sleep(min(wait, self.config.label_settle_s))
        started = datetime.now(UTC)
        cutoff = started - timedelta(seconds=self.config.label_settle_s)
        existing = await asyncio.to_thread(self._existing_snapshot, request.dataset_id)
        if existing is not None:
            snapshot_id, sizes, algorithm = existing
        else:
            built = await asyncio.to_thread(self._build_rows, project_id, request, watermark, cutoff, started)
            if built is None:
                log.info(
                    "trigger fired but no training item survived the filters",
                    extra={
                        "project_id": project_id,
                        "reason": request.reason,
                        "dataset_id": request.dataset_id,
                    },
                )
                await self.state.put_json(
                    self._last_key(project_id),
                    {
                        "dataset_id": last["dataset_id"] if last else None,
                        "dataset_built_at": last.get("dataset_built_at") if last else None,
                        "built_at": self.clock(),
                        "watermark": cutoff.isoformat(),
                    },
                )
                return None
            rows, sizes, algorithm = built
            snapshot_id = await asyncio.to_thread(
                self.store.append,
                DATASETS,
                rows,
                snapshot_properties={
                    "kaizen.dataset_id": request.dataset_id,
                    "kaizen.trigger": request.reason,
                    "kaizen.algorithm": algorithm,
                    "kaizen.sizes": json.dumps(sizes, sort_keys=True),
                    "kaizen.config_hash": self.config_hash,
                    "kaizen.curator_config_hash": self.config.config_hash,
                    "kaizen.reward_config_hash": self.reward_config.config_hash,
                },
            )
        await self.state.put_json(
            self._last_key(project_id),
            {
                "dataset_id": request.dataset_id,
                "dataset_built_at": self.clock(),
                "built_at": self.clock(),
                "watermark": cutoff.isoformat(),
            },
        )
        return DatasetReady(
            producer=PRODUCER,
            project_id=project_id,
            correlation_id=request.dataset_id,
            dataset_id=request.dataset_id,
            stored=TableRef(table=self.store.identifier(DATASETS), snapshot_id=snapshot_id),
            sizes=sizes,
            algorithm=algorithm,  # type: ignore[arg-type]
            trigger_reason=request.reason,
            trigger_details=request.details,
            config_hash=self.config_hash,
        )

    async def _finish(self, project_id: str, request: BuildRequest) -> None:
        if request.counted:
            await self.state.incr(self._new_counter(project_id), -request.counted)
        await self.state.client.delete(
            self.state.key("window", self._error_window(project_id)),
            *[key for key in await self._reward_windows(project_id)],
        )
        await self.state.client.delete(self._request_key(project_id))

    async def _reward_windows(self, project_id: str) -> list[bytes]:
        pattern = self.state.key("window", self._reward_window(project_id, "*"))
        return [key async for key in self.state.client.scan_iter(match=pattern, count=100)]

    def _existing_snapshot(self, dataset_id: str) -> tuple[int | None, dict[str, int], str] | None:
        table = self.store.table(DATASETS)
        table = self.store.catalog.load_table(self.store.identifier(DATASETS))
        for snapshot in table.snapshots():
            summary = snapshot.summary
            if summary is not None and summary.additional_properties.get("kaizen.dataset_id") == dataset_id:
                props = summary.additional_properties
                return (
                    snapshot.snapshot_id,
                    json.loads(props.get("kaizen.sizes", "{}")),
                    props.get("kaizen.algorithm", "sft"),
                )
        return None

    def _build_rows(
        self,
        project_id: str,
        request: BuildRequest,
        watermark: str | None,
        cutoff: datetime,
        started: datetime,
    ) -> tuple[list[dict[str, Any]], dict[str, int], str] | None:
        """Labels stamped in (previous watermark, cutoff]: each label is in exactly one dataset."""
        labels = self.store.read(LABELS, EqualTo("project_id", project_id)).to_pylist()  # type: ignore[call-arg,misc]
        if watermark is not None:
            since = datetime.fromisoformat(watermark)
            labels = [row for row in labels if row["labeled_at"] > since]
        labels = [row for row in labels if row["labeled_at"] <= cutoff]
        earlier = self.store.read(
            DATASETS,
            And(EqualTo("project_id", project_id), EqualTo("split", "train")),  # type: ignore[call-arg,misc]
        ).to_pylist()
        trace_ids = {row["trace_id"] for row in labels}
        for item in earlier:
            trace_ids.update(item["source_trace_ids"] or ())
        traces = (
            self.store.read(
                TRACES,
                And(EqualTo("project_id", project_id), In("trace_id", sorted(trace_ids))),  # type: ignore[call-arg,misc]
                selected_fields=(
                    "trace_id",
                    "consent",
                    "prompt",
                    "response",
                    "contexts",
                    "session_id",
                    "input_messages",
                ),
            ).to_pylist()
            if trace_ids
            else []
        )
        built = build_dataset(
            dataset_id=request.dataset_id,
            project_id=project_id,
            labels=labels,
            traces=traces,
            earlier_items=earlier,
            config=self.config,
            decontaminator=self.decontaminator,
            embed=self.embedder.embed,
            reward_components=self.grpo_components,
            config_hash=self.config_hash,
            created_at=started,
        )
        log.info(
            "dataset built",
            extra={
                "project_id": project_id,
                "dataset_id": request.dataset_id,
                "sizes": built.sizes,
                "dropped": built.dropped,
                "algorithm": built.algorithm,
            },
        )
        if built.sizes.get("train", 0) == 0:
            return None
        return built.rows, built.sizes, built.algorithm


if __name__ == "__main__":
    from services.labeler.__main__ import main

    raise SystemExit(main(roles=["curator"]))
