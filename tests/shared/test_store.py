"""The Iceberg store on local disk and on the S3 endpoint: rows go in, come back, and the tables
carry DESIGN.md's partition specs."""

import threading
from datetime import UTC, datetime, timedelta

import boto3
import pyiceberg.table
import pytest
from pyiceberg.schema import Schema
from pyiceberg.transforms import DayTransform, IdentityTransform

from shared.settings import KaizenSettings
from shared.store import (
    DATASETS,
    KEEP_SNAPSHOTS,
    LABELS,
    STREAMED,
    TABLE_SPECS,
    TRACES,
    TRACES_NOTRAIN,
    IcebergStore,
    StagedTransaction,
    StoreError,
)

pytestmark = pytest.mark.integration


def trace_rows(count: int, project_id: str) -> list[dict[str, object]]:
    start = datetime(2026, 11, 20, 23, 0, tzinfo=UTC)
    return [
        {
            "trace_id": f"trace-{i}",
            "project_id": project_id,
            "ts": start + timedelta(hours=i),  # crosses midnight: two day partitions
            "model": "SmolLM2-135M-Instruct" if i % 2 else "tiny-llama",
            "consent": True,
            "prompt": f"question {i}",
            "response": f"answer {i}",
            "contexts": [f"context {i}"],
            "tags": ["a", "b"],
            "latency_ms": 10.0 * i,
            "completion_token_ids": [1, 2, 3],
        }
        for i in range(count)
    ]


def on_s3(settings: KaizenSettings) -> KaizenSettings:
    settings.catalog.warehouse = f"s3://{settings.s3.bucket}/{settings.catalog.namespace}"
    return settings


@pytest.mark.parametrize("where", ["local", "s3"])
def test_rows_round_trip_with_the_partition_spec_of_design(settings: KaizenSettings, where: str) -> None:
    if where == "s3":
        settings = on_s3(settings)
    store = IcebergStore(settings)
    snapshot_id = store.append(TRACES, trace_rows(4, settings.project_id))
    assert snapshot_id is not None

    table = store.table(TRACES)
    scheme = "s3://" if where == "s3" else "file://"
    assert table.location().startswith(scheme)
    fields = [
        (f.name, type(f.transform), table.schema().find_field(f.source_id).name) for f in table.spec().fields
    ]
    assert fields == [
        ("ts_day", DayTransform, "ts"),
        ("model", IdentityTransform, "model"),
        ("consent", IdentityTransform, "consent"),
    ]

    rows = store.read(TRACES).sort_by("trace_id").to_pylist()
    assert [row["trace_id"] for row in rows] == ["trace-0", "trace-1", "trace-2", "trace-3"]
    assert rows[1]["contexts"] == ["context 1"]
    assert rows[3]["latency_ms"] == 30.0
    # Partitioning really happened: the rows fall in three (day, model) partitions, one file each:
    # (11-20, tiny), (11-21, SmolLM2), (11-21, tiny).
    files = [task.file for task in table.scan().plan_files()]
    assert len(files) == 3
    assert {str(f.partition[1]) for f in files} == {"SmolLM2-135M-Instruct", "tiny-llama"}

    if where == "s3":
        s3 = boto3.client(
            "s3",
            endpoint_url=settings.s3.endpoint_url,
            aws_access_key_id=settings.s3.access_key_id,
            aws_secret_access_key=settings.s3.secret_access_key.get_secret_value(),  # type: ignore[union-attr]
            region_name=settings.s3.region,
        )
        keys = [
            obj["Key"]
            for obj in s3.list_objects_v2(Bucket=settings.s3.bucket, Prefix=settings.catalog.namespace)[
                "Contents"
            ]
        ]
        assert any(key.endswith(".parquet") and "ts_day=" in key for key in keys)


def test_labels_and_datasets_tables_have_their_specs(settings: KaizenSettings) -> None:
    store = IcebergStore(settings)
    labels = store.table(LABELS)
    assert [(f.name, type(f.transform)) for f in labels.spec().fields] == [("labeled_at_day", DayTransform)]
    datasets = store.table(DATASETS)
    assert [(f.name, type(f.transform)) for f in datasets.spec().fields] == [
        ("dataset_id", IdentityTransform)
    ]


def test_one_dataset_is_one_snapshot_and_reads_back_by_snapshot(settings: KaizenSettings) -> None:
    store = IcebergStore(settings)
    now = datetime.now(UTC)

    def items(dataset_id: str, n: int) -> list[dict[str, object]]:
        return [
            {
                "dataset_id": dataset_id,
                "project_id": settings.project_id,
                "item_id": f"{dataset_id}-{i}",
                "split": "train",
                "kind": "dpo",
                "prompt": f"p{i}",
                "chosen": "short",
                "rejected": "long long",
                "source_trace_ids": [f"t{i}a", f"t{i}b"],
                "label_versions": [1, 1],
                "created_at": now,
            }
            for i in range(n)
        ]

    first = store.append(DATASETS, items("ds-1", 3), snapshot_properties={"kaizen.dataset_id": "ds-1"})
    second = store.append(DATASETS, items("ds-2", 2), snapshot_properties={"kaizen.dataset_id": "ds-2"})
    assert first is not None and second is not None and first != second
    assert store.read_snapshot(DATASETS, first).num_rows == 3
    # What one append added, from its own files: the rows of that commit alone.
    assert store.read_snapshot(DATASETS, second).num_rows == 5
    assert sorted(store.read_added(DATASETS, second).column("item_id").to_pylist()) == ["ds-2-0", "ds-2-1"]
    assert store.read_added(DATASETS, first).num_rows == 3
    assert store.read_added(DATASETS, second, "item_id == 'ds-1-0'").num_rows == 0
    assert store.read_added(DATASETS, 12345).num_rows == 0  # no such snapshot: nothing, not an error
    assert store.read(DATASETS, "dataset_id == 'ds-2'").num_rows == 2
    summary = store.table(DATASETS).snapshot_by_id(second).summary  # type: ignore[union-attr]
    assert summary["kaizen.dataset_id"] == "ds-2"


def test_concurrent_appends_retry_their_commit_and_lose_nothing(settings: KaizenSettings) -> None:
    IcebergStore(settings).table(TRACES)  # created once, then written by four writers at once
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            store = IcebergStore(settings)  # its own catalog connection, like another replica
            for batch in range(3):
                rows = trace_rows(2, settings.project_id)
                for row in rows:
                    row["trace_id"] = f"w{n}-b{batch}-{row['trace_id']}"
                store.append(TRACES, rows)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert IcebergStore(settings).read(TRACES).num_rows == 4 * 3 * 2


def test_rows_that_do_not_fit_the_table_are_refused_by_name(settings: KaizenSettings) -> None:
    store = IcebergStore(settings)
    with pytest.raises(StoreError, match="traces"):
        store.append(
            TRACES, [{"trace_id": "x", "project_id": "p", "ts": "not a time", "model": "m", "consent": True}]
        )
    with pytest.raises(StoreError, match="unknown table"):
        store.table("nope")


def test_columns_append_like_rows_and_bad_columns_are_refused_by_name(settings: KaizenSettings) -> None:
    store = IcebergStore(settings)
    rows = trace_rows(3, settings.project_id)
    columns = {name: [row.get(name) for row in rows] for name in rows[0]}  # no "reference" column
    snapshot = store.append_columns(TRACES, columns, snapshot_properties={"kaizen.note": "columns"})
    assert snapshot is not None
    assert store.table(TRACES).snapshot_by_id(snapshot).summary["kaizen.note"] == "columns"  # type: ignore[union-attr]
    store.append(TRACES, rows)
    read = sorted(store.read(TRACES).to_pylist(), key=lambda r: r["trace_id"])
    assert len(read) == 6 and read[0::2] == read[1::2]  # the same rows, whichever way they went in
    assert all(r["reference"] is None and r["contexts"] for r in read)
    with pytest.raises(StoreError, match=r"no columns \['colour'\]"):
        store.append_columns(TRACES, {**columns, "colour": ["red"] * 3})
    with pytest.raises(StoreError, match=r"differ in length: \[2, 3\]"):
        store.append_columns(TRACES, {**columns, "model": ["m", "m"]})
    with pytest.raises(StoreError, match="traces"):
        store.append_columns(TRACES, {**columns, "ts": ["not a time"] * 3})
    assert store.append_columns(TRACES, {name: [] for name in columns}) is None
    assert store.read(TRACES).num_rows == 6  # nothing refused was written


def test_a_table_of_an_earlier_release_gains_the_new_columns(settings: KaizenSettings) -> None:
    store = IcebergStore(settings)
    spec = TABLE_SPECS[DATASETS]
    old = Schema(*(field for field in spec.schema.fields if field.name != "messages"))
    store.catalog.create_namespace_if_not_exists(store.namespace)
    store.catalog.create_table(store.identifier(DATASETS), schema=old, partition_spec=spec.partition_spec)
    now = datetime.now(UTC)
    row = {
        "dataset_id": "ds-1",
        "project_id": settings.project_id,
        "item_id": "i",
        "split": "train",
        "kind": "dpo",
        "prompt": "Q?",
        "created_at": now,
    }
    fresh = IcebergStore(settings)
    fresh.append(DATASETS, [row, {**row, "item_id": "j", "messages": '[{"role": "user", "content": "Q?"}]'}])
    assert "messages" in {field.name for field in fresh.table(DATASETS).schema().fields}
    read = sorted(fresh.read(DATASETS).to_pylist(), key=lambda r: r["item_id"])
    assert [r["messages"] for r in read] == [None, '[{"role": "user", "content": "Q?"}]']


def test_a_streamed_table_keeps_a_bounded_history_and_every_row(settings: KaizenSettings) -> None:
    store = IcebergStore(settings)
    spec = TABLE_SPECS[TRACES]
    # An older release made the table without history properties: it gains them on first use, and a
    # value set on the table (here a history of 5 snapshots, to keep the test short) is left alone.
    store.catalog.create_namespace_if_not_exists(store.namespace)
    store.catalog.create_table(
        store.identifier(TRACES),
        schema=spec.schema,
        partition_spec=spec.partition_spec,
        properties={KEEP_SNAPSHOTS: "5"},
    )
    fresh = IcebergStore(settings)
    properties = fresh.table(TRACES).properties
    assert {key: properties[key] for key in STREAMED} == {**STREAMED, KEEP_SNAPSHOTS: "5"}
    snapshots: list[int | None] = []
    lists: list[str] = []
    for batch in range(12):
        rows = trace_rows(2, settings.project_id)
        for row in rows:
            row["trace_id"] = f"b{batch}-{row['trace_id']}"
        snapshots.append(fresh.append(TRACES, rows))
        lists.append(fresh.table(TRACES).metadata.snapshot_by_id(snapshots[-1]).manifest_list)  # type: ignore[arg-type,union-attr]
        # Expired once it holds a fifth more than it keeps (5 + 1), down to the newest 5.
        assert len(fresh.table(TRACES).metadata.snapshots) <= 6
    kept = IcebergStore(settings).table(TRACES).metadata.snapshots
    kept_ids = {s.snapshot_id for s in kept}
    assert set(snapshots[-5:]) <= kept_ids and snapshots[0] not in kept_ids
    # The kept snapshots' manifest lists are there; the expired ones' were deleted.
    io = fresh.table(TRACES).io
    assert all(io.new_input(s.manifest_list).exists() for s in kept)
    assert not any(io.new_input(path).exists() for path in lists[:-6])
    assert fresh.read(TRACES).num_rows == 12 * 2  # expiry drops history, never rows
    assert fresh.read_added(TRACES, snapshots[-1]).num_rows == 2
    assert fresh.read_added(TRACES, snapshots[0]).num_rows == 0  # gone: the caller reads the table
    fresh.expire_snapshots(TRACES)
    assert len(fresh.table(TRACES).metadata.snapshots) == 5
    assert fresh.expire_snapshots(TRACES) == 0  # nothing more to expire


def test_a_staged_transaction_builds_its_metadata_once_per_state(settings: KaizenSettings) -> None:
    store = IcebergStore(settings)
    store.append(TRACES, trace_rows(2, settings.project_id))
    table = store.table(TRACES)
    with StagedTransaction(table) as transaction:
        first = transaction.table_metadata
        assert transaction.table_metadata is first  # nothing staged since: the same metadata
        assert first.snapshots == table.metadata.snapshots and first is not table.metadata
        transaction.set_properties({"kaizen.note": "staged"})
        staged = transaction.table_metadata
        assert staged is not first and staged.properties["kaizen.note"] == "staged"
        assert "kaizen.note" not in first.properties and "kaizen.note" not in table.metadata.properties
        transaction.append(store.table(TRACES).scan().to_arrow().slice(0, 1))  # appends see the staged state
    committed = IcebergStore(settings).table(TRACES)
    assert committed.properties["kaizen.note"] == "staged"
    assert len(committed.metadata.snapshots) == 2 and committed.scan().to_arrow().num_rows == 3


def test_an_append_builds_the_staged_metadata_a_few_times_not_once_a_read(
    settings: KaizenSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pyiceberg's own transaction rebuilds (and deep-copies) the whole metadata 23 times an append."""
    built = 0
    replay = pyiceberg.table.update_table_metadata

    def counted(*args: object, **kwargs: object) -> object:
        nonlocal built
        built += 1
        return replay(*args, **kwargs)  # type: ignore[arg-type]

    store = IcebergStore(settings)
    store.append(TRACES, trace_rows(2, settings.project_id))
    monkeypatch.setattr(pyiceberg.table, "update_table_metadata", counted)
    store.append(TRACES, trace_rows(2, settings.project_id))
    assert 1 <= built <= 3
    assert store.read(TRACES).num_rows == 4


def test_datasets_keep_every_snapshot(settings: KaizenSettings) -> None:
    store = IcebergStore(settings)
    assert KEEP_SNAPSHOTS not in TABLE_SPECS[DATASETS].properties
    assert all(TABLE_SPECS[name].properties == STREAMED for name in (TRACES, TRACES_NOTRAIN, LABELS))
    store.table(DATASETS)
    assert store.expire_snapshots(DATASETS) == 0


def test_services_starting_together_bring_an_older_table_up_to_date_once(settings: KaizenSettings) -> None:
    # Every service asks for the table at start; on an older table each then sets the new properties,
    # and all but the first lose the commit race. None may fail for it.
    spec = TABLE_SPECS[LABELS]
    first = IcebergStore(settings)
    first.catalog.create_namespace_if_not_exists(first.namespace)
    first.catalog.create_table(
        first.identifier(LABELS), schema=spec.schema, partition_spec=spec.partition_spec
    )
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        try:
            store = IcebergStore(settings)
            barrier.wait()
            store.table(LABELS)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    properties = IcebergStore(settings).table(LABELS).properties
    assert {key: properties[key] for key in STREAMED} == STREAMED
