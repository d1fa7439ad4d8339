"""Reading the dashboard's sections from Iceberg and MLflow (synchronous: call them in a thread).

Nothing here writes: a table or experiment that does not exist yet reads as empty.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError
from pyiceberg.expressions import And, BooleanExpression, EqualTo, GreaterThanOrEqual
from pyiceberg.table import Table

from services.dashboard.views import (
    UNKNOWN_VERSION,
    DatasetSummary,
    Evaluation,
    MetricComparison,
    MinuteCount,
    ModelVersionSummary,
    Registry,
    RewardBucket,
    RewardDistribution,
    RewardStats,
    TracesPerMinute,
    TrainingRun,
)
from shared.settings import KaizenSettings
from shared.store import DATASETS, LABELS, TRACES, IcebergStore

ALIASES = ("champion", "challenger", "previous")
TAG_DATASET = "kaizen.dataset_id"
TAG_KIND = "kaizen.kind"
TAG_EVAL_STATUS = "eval.status"
TAG_EVAL_REASON = "eval.reason"
TAG_EVAL_RUN = "eval.run_id"
TAG_EVAL_CHAMPION = "eval.champion"
EVAL_METRIC_PREFIX = "eval.metric."
CHAMPION_METRIC_PREFIX = "champion."


def _minute(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(second=0, microsecond=0)


def _version(value: object) -> str:
    return str(value) if value not in (None, "") else UNKNOWN_VERSION


def _version_order(version: str) -> tuple[int, int | str]:
    """Numeric versions in number order, then the rest (``unknown`` and names) by name."""
    return (0, int(version)) if version.isdigit() else (1, version)


def _load(store: IcebergStore, name: str) -> Table | None:
    try:
        return store.catalog.load_table(store.identifier(name))
    except (NoSuchTableError, NoSuchNamespaceError):
        return None


def _rows(
    store: IcebergStore, name: str, fields: Sequence[str], since: tuple[str, datetime] | None
) -> tuple[Table | None, list[dict[str, Any]]]:
    table = _load(store, name)
    if table is None:
        return None, []
    row_filter: BooleanExpression = EqualTo("project_id", store.settings.project_id)  # type: ignore[call-arg,misc]
    if since is not None:
        column, start = since
        row_filter = And(row_filter, GreaterThanOrEqual(column, start.isoformat()))  # type: ignore[call-arg,misc]
    rows: list[dict[str, Any]] = (
        table.scan(row_filter=row_filter, selected_fields=tuple(fields)).to_arrow().to_pylist()
    )
    return table, rows


def traces_per_minute(store: IcebergStore, since: datetime, now: datetime) -> TracesPerMinute:
    """Traces per minute of generation start, split by model version, from ``since`` to ``now``."""
    _, rows = _rows(store, TRACES, ("ts", "model_version"), ("ts", since))
    counts: dict[datetime, Counter[str]] = defaultdict(Counter)
    for row in rows:
        counts[_minute(row["ts"])][_version(row["model_version"])] += 1
    minutes: list[MinuteCount] = []
    if counts:
        minute, last = min(counts), max(max(counts), _minute(now))
        while minute <= last:
            by_version = dict(sorted(counts[minute].items(), key=lambda item: _version_order(item[0])))
            minutes.append(MinuteCount(minute=minute, count=sum(by_version.values()), by_version=by_version))
            minute += timedelta(minutes=1)
    versions = sorted({v for c in counts.values() for v in c}, key=_version_order)
    return TracesPerMinute(since=since, total=len(rows), versions=versions, minutes=minutes)


def reward_stats(values: Sequence[float]) -> RewardStats:
    array = np.asarray(values, dtype=float)
    p10, p25, p50, p75, p90 = (float(q) for q in np.percentile(array, [10, 25, 50, 75, 90]))
    return RewardStats(
        count=len(array), mean=float(array.mean()), p10=p10, p25=p25, p50=p50, p75=p75, p90=p90
    )


def reward_distribution(store: IcebergStore, since: datetime, buckets: int) -> RewardDistribution:
    """Composite rewards by label time and model version; a relabeled trace counts once, as relabeled."""
    _, rows = _rows(
        store,
        LABELS,
        ("trace_id", "label_version", "labeled_at", "model_version", "composite_reward"),
        ("labeled_at", since),
    )
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        held = latest.get(row["trace_id"])
        if held is None or row["label_version"] > held["label_version"]:
            latest[row["trace_id"]] = row
    labels = sorted(latest.values(), key=lambda row: row["labeled_at"])
    if not labels:
        return RewardDistribution(since=since, bucket_minutes=1, versions=[], buckets=[], overall={})
    first, last = _minute(labels[0]["labeled_at"]), _minute(labels[-1]["labeled_at"])
    span_minutes = int((last - first).total_seconds() // 60) + 1
    width = max(1, math.ceil(span_minutes / buckets))
    grouped: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    overall: dict[str, list[float]] = defaultdict(list)
    for row in labels:
        index = int((_minute(row["labeled_at"]) - first).total_seconds() // 60) // width
        version = _version(row["model_version"])
        grouped[index][version].append(float(row["composite_reward"]))
        overall[version].append(float(row["composite_reward"]))
    versions = sorted(overall, key=_version_order)
    return RewardDistribution(
        since=since,
        bucket_minutes=width,
        versions=versions,
        buckets=[
            RewardBucket(
                start=first + timedelta(minutes=index * width),
                end=first + timedelta(minutes=(index + 1) * width),
                by_version={v: reward_stats(grouped[index][v]) for v in versions if grouped[index].get(v)},
            )
            for index in sorted(grouped)
        ],
        overall={version: reward_stats(overall[version]) for version in versions},
    )


def datasets(store: IcebergStore) -> list[DatasetSummary]:
    """Every dataset of the project, newest first, with the trigger that built it."""
    table, rows = _rows(store, DATASETS, ("dataset_id", "split", "kind", "created_at"), None)
    if table is None:
        return []
    snapshots: dict[str, tuple[int, Mapping[str, str]]] = {}
    for snapshot in table.snapshots():
        properties: Mapping[str, str] = snapshot.summary.additional_properties if snapshot.summary else {}
        if dataset_id := properties.get("kaizen.dataset_id"):
            snapshots[dataset_id] = (snapshot.snapshot_id, properties)
    by_dataset: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_dataset[row["dataset_id"]].append(row)
    found: list[DatasetSummary] = []
    for dataset_id, items in by_dataset.items():
        snapshot_id, properties = snapshots.get(dataset_id, (None, {}))
        found.append(
            DatasetSummary(
                dataset_id=dataset_id,
                created_at=max(item["created_at"] for item in items),
                items=len(items),
                sizes=dict(sorted(Counter(item["split"] for item in items).items())),
                kinds=dict(sorted(Counter(item["kind"] for item in items).items())),
                trigger_reason=properties.get("kaizen.trigger"),
                algorithm=properties.get("kaizen.algorithm"),
                snapshot_id=snapshot_id,
            )
        )
    return sorted(found, key=lambda d: d.created_at or datetime.min.replace(tzinfo=UTC), reverse=True)


def _ms(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value / 1000, UTC) if value else None


def _floats(values: Iterable[tuple[str, Any]]) -> dict[str, float]:
    found: dict[str, float] = {}
    for key, value in values:
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            found[key] = number
    return found


def registry(settings: KaizenSettings, max_runs: int, max_versions: int) -> Registry:
    """The registered model's versions, aliases and evaluations, and the project's training runs."""
    from mlflow import MlflowClient  # imported on first use: importing mlflow takes seconds
    from mlflow.exceptions import MlflowException

    client: MlflowClient = MlflowClient(tracking_uri=settings.mlflow.tracking_uri)
    name = settings.mlflow.registered_model
    try:
        aliases = {
            alias: str(version) for alias, version in client.get_registered_model(name).aliases.items()
        }
        versions = sorted(
            client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version), reverse=True
        )[:max_versions]
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        aliases, versions = {}, []
    runs: list[Any] = []
    experiment = client.get_experiment_by_name(f"{settings.mlflow.experiment_prefix}/{settings.project_id}")
    if experiment is not None:
        runs = client.search_runs(
            [experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=4 * max_runs
        )
    runs_by_id = {run.info.run_id: run for run in runs}
    version_of_run = {str(v.run_id): str(v.version) for v in versions if v.run_id}

    training = [
        TrainingRun(
            run_id=run.info.run_id,
            name=run.info.run_name,
            status=run.info.status,
            started_at=_ms(run.info.start_time),
            ended_at=_ms(run.info.end_time),
            dataset_id=run.data.tags.get(TAG_DATASET),
            algorithm=run.data.tags.get("kaizen.algorithm"),
            base_model=run.data.tags.get("kaizen.base_model"),
            trigger_reason=run.data.tags.get("kaizen.trigger_reason"),
            failure_reason=run.data.tags.get("kaizen.failure_reason"),
            model_version=version_of_run.get(run.info.run_id),
            metrics=dict(sorted(_floats(run.data.metrics.items()).items())),
        )
        for run in runs
        if TAG_DATASET in run.data.tags and run.data.tags.get(TAG_KIND) != "evaluation"
    ][:max_runs]

    evaluations: list[Evaluation] = []
    for version in versions:
        tags: dict[str, str] = dict(version.tags or {})
        if TAG_EVAL_STATUS not in tags:
            continue
        candidate = _floats(
            (key.removeprefix(EVAL_METRIC_PREFIX), value)
            for key, value in tags.items()
            if key.startswith(EVAL_METRIC_PREFIX)
        )
        champion: dict[str, float] = {}
        run_id = tags.get(TAG_EVAL_RUN)
        if run_id:
            run = runs_by_id.get(run_id)
            if run is None:
                try:
                    run = client.get_run(run_id)
                except MlflowException:
                    run = None
            if run is not None:
                champion = {
                    key.removeprefix(CHAMPION_METRIC_PREFIX): value
                    for key, value in _floats(run.data.metrics.items()).items()
                    if key.startswith(CHAMPION_METRIC_PREFIX)
                }
        evaluations.append(
            Evaluation(
                model_version=str(version.version),
                status=tags[TAG_EVAL_STATUS],
                reason=tags.get(TAG_EVAL_REASON, ""),
                champion=tags.get(TAG_EVAL_CHAMPION),
                run_id=run_id,
                metrics=[
                    MetricComparison(
                        metric=metric, candidate=candidate.get(metric), champion=champion.get(metric)
                    )
                    for metric in sorted(set(candidate) | set(champion))
                ],
            )
        )

    by_version: dict[str, list[str]] = defaultdict(list)
    for alias, version_id in aliases.items():
        by_version[version_id].append(alias)
    return Registry(
        registered_model=name,
        aliases=dict(
            sorted(aliases.items(), key=lambda item: ALIASES.index(item[0]) if item[0] in ALIASES else 9)
        ),
        versions=[
            ModelVersionSummary(
                version=str(v.version),
                created_at=_ms(v.creation_timestamp),
                aliases=sorted(by_version.get(str(v.version), [])),
                run_id=v.run_id or None,
                dataset_id=(v.tags or {}).get(TAG_DATASET),
                algorithm=(v.tags or {}).get("kaizen.algorithm"),
                eval_status=(v.tags or {}).get(TAG_EVAL_STATUS),
            )
            for v in versions
        ],
        evaluations=evaluations,
        training_runs=training,
    )
