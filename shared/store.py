"""The Iceberg store: Kaizen's tables, on local disk or any S3-compatible endpoint.

The catalog comes from settings: a SQL catalog on SQLite by default (``<home>/catalog.db``), or
Postgres (``KAIZEN_CATALOG__URI=postgresql+psycopg2://...``), a REST catalog or AWS Glue
(``KAIZEN_CATALOG__TYPE=rest|glue``). The warehouse is ``<home>/warehouse`` by default, or
``s3://bucket/prefix`` with the S3 settings (endpoint, keys, region) passed to pyiceberg's file IO.

Tables (namespace ``kaizen`` unless configured):

- ``traces``   one row per trainable generation; partitioned by day(ts), model, consent.
- ``traces_notrain``  the same schema, for traces without consent that a deployment chooses to keep
  (``KAIZEN_INGEST__KEEP_UNCONSENTED``); no dataset is ever built from it.
- ``labels``   one row per (trace, label version); partitioned by day(labeled_at).
- ``datasets`` one row per dataset item with its lineage; partitioned by dataset_id; every dataset is
  written in one append, so it is exactly one snapshot (its id is carried by dataset.ready).

A table written by an earlier release gains the columns its spec has added since, on first use.

``append`` writes a batch in one commit and retries when another writer won the commit race;
``read_added`` reads what one append added, from that snapshot's own files.
An append runs in a ``StagedTransaction``: pyiceberg's transaction, with its staged metadata built once
per state rather than on every read (see the class).

Snapshot history: the tables that services append to all the time (traces, traces_notrain, labels)
keep a bounded history, in Iceberg's own table properties: manifests are merged
(``commit.manifest-merge.enabled``), old metadata files are deleted
(``write.metadata.delete-after-commit.enabled``), and ``append`` expires all but the newest
``history.expire.min-snapshots-to-keep`` snapshots once the table holds a fifth more than that (and
none younger than ``history.expire.max-snapshot-age-ms``). Without it every commit rewrote the whole
history: an append of 200 labels took 21 ms on a new table, 283 ms after 300 appends and 1.0 s after
1,000, so a worker committing every second slowed down without end (``python -m bench.store``
compares the two kinds of table).
Expiry removes snapshots from the metadata, and deletes their manifest lists; the rows stay.
``datasets`` keeps every snapshot: a dataset is one snapshot, and its id is the dataset's version.
pyiceberg is synchronous: async services call the store through ``asyncio.to_thread``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.exceptions import CommitFailedException, NamespaceAlreadyExistsError, NoSuchTableError
from pyiceberg.expressions import AlwaysTrue, BooleanExpression
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import IncrementalAppendScan, Table, Transaction
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.transforms import DayTransform, IdentityTransform
from pyiceberg.types import (
    BooleanType,
    DoubleType,
    IntegerType,
    ListType,
    LongType,
    MapType,
    NestedField,
    StringType,
    TimestamptzType,
)

from shared.errors import KaizenError
from shared.settings import KaizenSettings

log = logging.getLogger("kaizen.store")

TRACES = "traces"
TRACES_NOTRAIN = "traces_notrain"
LABELS = "labels"
DATASETS = "datasets"


class StoreError(KaizenError):
    """The store could not write or read a table."""


@dataclass(frozen=True)
class TableSpec:
    name: str
    schema: Schema
    partition_spec: PartitionSpec
    description: str
    properties: dict[str, str] = field(default_factory=dict)
    """Iceberg table properties, set when the table is created and on first use of an older table."""


STREAMED = {
    "commit.manifest-merge.enabled": "true",
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "20",
    "history.expire.min-snapshots-to-keep": "100",
    "history.expire.max-snapshot-age-ms": "0",
}
"""The history of a table appended to every second or so (see the module's docstring)."""
KEEP_SNAPSHOTS = "history.expire.min-snapshots-to-keep"
MAX_SNAPSHOT_AGE_MS = "history.expire.max-snapshot-age-ms"


def _string(field_id: int, name: str, required: bool = False, doc: str | None = None) -> NestedField:
    return NestedField(field_id, name, StringType(), required=required, doc=doc)


def _strings(field_id: int, element_id: int, name: str, doc: str | None = None) -> NestedField:
    return NestedField(field_id, name, ListType(element_id, StringType(), element_required=True), doc=doc)


TRACES_SPEC = TableSpec(
    name=TRACES,
    description="Consented, redacted generations: the raw material of every dataset.",
    schema=Schema(
        _string(1, "trace_id", required=True),
        _string(2, "project_id", required=True),
        NestedField(3, "ts", TimestamptzType(), required=True, doc="When the generation started."),
        _string(4, "model", required=True),
        NestedField(5, "consent", BooleanType(), required=True),
        _string(6, "model_version"),
        _string(7, "span_id"),
        _string(8, "name"),
        _string(9, "prompt"),
        _string(10, "response"),
        _string(11, "input_messages", doc="JSON list of {role, content}."),
        _strings(12, 101, "contexts", doc="Retrieved contexts."),
        _string(13, "reference"),
        _string(14, "user_id"),
        _string(15, "session_id"),
        _strings(16, 102, "tags"),
        _string(17, "metadata", doc="JSON object of every unmapped attribute."),
        NestedField(18, "prompt_tokens", LongType()),
        NestedField(19, "completion_tokens", LongType()),
        NestedField(20, "latency_ms", DoubleType()),
        _string(21, "status"),
        _string(22, "error"),
        NestedField(23, "completion_token_ids", ListType(103, LongType(), element_required=True)),
        NestedField(24, "completion_logprobs", ListType(104, DoubleType(), element_required=True)),
        NestedField(25, "redactions", IntegerType()),
        NestedField(26, "ingested_at", TimestamptzType()),
    ),
    partition_spec=PartitionSpec(
        PartitionField(source_id=3, field_id=1000, transform=DayTransform(), name="ts_day"),
        PartitionField(source_id=4, field_id=1001, transform=IdentityTransform(), name="model"),
        PartitionField(source_id=5, field_id=1002, transform=IdentityTransform(), name="consent"),
    ),
    properties=STREAMED,
)

TRACES_NOTRAIN_SPEC = TableSpec(
    name=TRACES_NOTRAIN,
    description="Redacted generations without training consent, kept for analysis only: never trained on.",
    schema=TRACES_SPEC.schema,
    partition_spec=TRACES_SPEC.partition_spec,
    properties=STREAMED,
)

LABELS_SPEC = TableSpec(
    name=LABELS,
    description="Rewards: every component and the gated composite, per trace and label version.",
    schema=Schema(
        _string(1, "trace_id", required=True),
        _string(2, "project_id", required=True),
        NestedField(3, "label_version", IntegerType(), required=True),
        NestedField(4, "labeled_at", TimestamptzType(), required=True),
        _string(5, "model_version"),
        NestedField(6, "composite_reward", DoubleType(), required=True),
        NestedField(
            7,
            "components",
            MapType(101, StringType(), 102, DoubleType(), value_required=False),
            doc="Component name to score; a null score means the component is missing.",
        ),
        _string(8, "gated_by"),
        _string(9, "config_hash", required=True),
        _string(10, "prompt"),
        _string(11, "response"),
        _string(12, "session_id"),
    ),
    partition_spec=PartitionSpec(
        PartitionField(source_id=4, field_id=1000, transform=DayTransform(), name="labeled_at_day"),
    ),
    properties=STREAMED,
)

DATASETS_SPEC = TableSpec(
    name=DATASETS,
    description="Dataset items (DPO pairs, GRPO prompts, SFT examples) with their lineage.",
    schema=Schema(
        _string(1, "dataset_id", required=True),
        _string(2, "project_id", required=True),
        _string(3, "item_id", required=True),
        _string(4, "split", required=True, doc="train, eval or replay."),
        _string(5, "kind", required=True, doc="dpo, grpo or sft."),
        _string(6, "prompt", required=True),
        _string(7, "chosen"),
        _string(8, "rejected"),
        _string(9, "completion"),
        NestedField(10, "chosen_reward", DoubleType()),
        NestedField(11, "rejected_reward", DoubleType()),
        _strings(12, 101, "contexts"),
        _strings(13, 102, "source_trace_ids", doc="Lineage: the traces the item was built from."),
        NestedField(14, "label_versions", ListType(103, IntegerType(), element_required=True)),
        _string(15, "source_dataset_id", doc="For replayed items, the dataset they come from."),
        _string(16, "config_hash"),
        NestedField(17, "created_at", TimestamptzType(), required=True),
        _string(18, "reward_components", doc="JSON list of the reward components a GRPO prompt uses."),
        _string(
            19,
            "messages",
            doc="JSON list of {role, content}: the chat the answers followed, as served (system prompt and "
            "retrieved passages included); the prompt column is its last user turn.",
        ),
    ),
    partition_spec=PartitionSpec(
        PartitionField(source_id=1, field_id=1000, transform=IdentityTransform(), name="dataset_id"),
    ),
)

TABLE_SPECS: dict[str, TableSpec] = {
    spec.name: spec for spec in (TRACES_SPEC, TRACES_NOTRAIN_SPEC, LABELS_SPEC, DATASETS_SPEC)
}


def catalog_properties(settings: KaizenSettings) -> dict[str, str]:
    """The pyiceberg catalog properties for these settings."""
    catalog = settings.catalog
    properties: dict[str, str] = {"type": catalog.type}
    if catalog.uri:
        properties["uri"] = catalog.uri
    if catalog.warehouse:
        properties["warehouse"] = catalog.warehouse
    s3 = settings.s3
    if s3.endpoint_url:
        properties["s3.endpoint"] = s3.endpoint_url
    properties["s3.region"] = s3.region
    if s3.access_key_id:
        properties["s3.access-key-id"] = s3.access_key_id
    if s3.secret_access_key is not None:
        properties["s3.secret-access-key"] = s3.secret_access_key.get_secret_value()
    if catalog.type == "sql" and catalog.uri and catalog.uri.startswith("sqlite"):
        properties.setdefault("init_catalog_tables", "true")
    properties.update(catalog.properties)
    return properties


class StagedTransaction(Transaction):
    """pyiceberg's ``Transaction``, building the staged table metadata once per state.

    In pyiceberg 0.12 every read of ``Transaction.table_metadata`` replays the staged updates onto the
    table's metadata and deep-copies the result, snapshot history included, and one append reads it
    23 times. On a traces table holding the ~110 snapshots ``history.expire.*`` keeps, an append of
    1,000 rows took 69-79 ms with pyiceberg's transaction and 27-30 ms with this one, which builds the
    metadata twice (``python -m bench.store`` compares them). Nothing in pyiceberg 0.12 caches it.

    The result is kept for as long as neither input changes: the table's metadata (replaced, never
    changed, on a commit or refresh) and the tuple of staged updates (a new tuple whenever an update is
    staged). The cache holds both, so neither can be freed and its id reused.
    """

    _staged: tuple[TableMetadata, tuple[Any, ...], TableMetadata] | None = None

    @property
    def table_metadata(self) -> TableMetadata:
        base, updates = self._table.metadata, self._updates
        staged = self._staged
        if staged is None or staged[0] is not base or staged[1] is not updates:
            staged = self._staged = (base, updates, super().table_metadata)
        return staged[2]


class IcebergStore:
    """Kaizen's tables in one namespace of one catalog."""

    transaction_type: type[Transaction] = StagedTransaction  # bench.store compares it with pyiceberg's

    def __init__(self, settings: KaizenSettings, catalog: Catalog | None = None) -> None:
        self.settings = settings
        self.namespace = settings.catalog.namespace
        if catalog is None and settings.catalog.type == "sql" and settings.catalog.warehouse:
            _ensure_local_dirs(settings)
        self.catalog = catalog or load_catalog(settings.catalog.name, **catalog_properties(settings))
        self._tables: dict[str, Table] = {}

    def identifier(self, name: str) -> str:
        return f"{self.namespace}.{name}"

    def table(self, name: str) -> Table:
        """The table, created with its schema and partition spec the first time it is asked for."""
        if name in self._tables:
            return self._tables[name]
        spec = TABLE_SPECS.get(name)
        if spec is None:
            raise StoreError(f"unknown table {name!r}; Kaizen's tables are {sorted(TABLE_SPECS)}")
        try:
            self.catalog.create_namespace(self.namespace)
        except NamespaceAlreadyExistsError:
            pass
        attempts = self.settings.catalog.commit_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                table = self._with_new_columns(self.catalog.load_table(self.identifier(name)), spec)
                table = self._with_properties(table, spec)
                break
            except NoSuchTableError:
                table = self.catalog.create_table_if_not_exists(
                    self.identifier(name),
                    schema=spec.schema,
                    partition_spec=spec.partition_spec,
                    properties={"comment": spec.description, "format-version": "2", **spec.properties},
                )
                break
            except CommitFailedException as exc:
                # Services start together: another one brought the table up to date first. Load it
                # again; what it changed is then there.
                if attempt == attempts:
                    raise StoreError(f"table {name!r} could not be brought up to date: {exc}") from exc
                time.sleep(0.05 * attempt * (0.5 + random.random()))
        self._tables[name] = table
        return table

    @staticmethod
    def _with_new_columns(table: Table, spec: TableSpec) -> Table:
        """A table created by an earlier release gets the columns added to its spec since (all optional,
        so the rows already written read them as null)."""
        present = {field.name for field in table.schema().fields}
        if all(field.name in present for field in spec.schema.fields):
            return table
        with table.update_schema() as update:
            update.union_by_name(spec.schema)
        log.info("table schema evolved", extra={"table": spec.name})
        return table

    @staticmethod
    def _with_properties(table: Table, spec: TableSpec) -> Table:
        """A table created by an earlier release gets the properties its spec has gained since; a value
        someone set on the table is left as it is."""
        missing = {key: value for key, value in spec.properties.items() if key not in table.properties}
        if not missing:
            return table
        with table.transaction() as transaction:
            transaction.set_properties(missing)
        log.info("table properties set", extra={"table": spec.name, "properties": sorted(missing)})
        return table

    def append(
        self,
        name: str,
        rows: Sequence[Mapping[str, Any]],
        *,
        snapshot_properties: Mapping[str, str] | None = None,
    ) -> int | None:
        """Append a batch of rows in one commit; return the id of the snapshot that holds them.

        A commit that lost a race with another writer is retried on the refreshed table, with jittered
        backoff, up to ``catalog.commit_retries`` times.
        """
        if not rows:
            return None
        table = self.table(name)
        try:
            # The table's own schema: the catalog assigns field ids when it creates a table.
            batch = pa.Table.from_pylist(
                [row if isinstance(row, dict) else dict(row) for row in rows],
                schema=table.schema().as_arrow(),
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError, TypeError) as exc:
            raise StoreError(f"rows do not fit table {name!r}: {exc}") from exc
        return self._commit(name, table, batch, snapshot_properties)

    def append_columns(
        self,
        name: str,
        columns: Mapping[str, Sequence[Any]],
        *,
        snapshot_properties: Mapping[str, str] | None = None,
    ) -> int | None:
        """``append`` for a batch given as columns (name -> one value per row): a writer that builds
        columns skips turning rows into columns, which ``append`` does in Python. A column the table has
        and the batch lacks is null; a column the table lacks is refused."""
        table = self.table(name)
        schema = table.schema().as_arrow()
        unknown = sorted(set(columns) - set(schema.names))
        if unknown:
            raise StoreError(f"table {name!r} has no columns {unknown}")
        lengths = {len(values) for values in columns.values()}
        if len(lengths) > 1:
            raise StoreError(f"columns for table {name!r} differ in length: {sorted(lengths)}")
        count = lengths.pop() if lengths else 0
        if not count:
            return None
        try:
            batch = pa.Table.from_pydict(
                {
                    field.name: columns[field.name] if field.name in columns else pa.nulls(count, field.type)
                    for field in schema
                },
                schema=schema,
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
            raise StoreError(f"columns do not fit table {name!r}: {exc}") from exc
        return self._commit(name, table, batch, snapshot_properties)

    def _commit(
        self, name: str, table: Table, batch: pa.Table, snapshot_properties: Mapping[str, str] | None
    ) -> int | None:
        """Append an Arrow batch in one commit, retrying lost races; then expire what history allows."""
        attempts = self.settings.catalog.commit_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                with self.transaction_type(table) as transaction:
                    transaction.append(batch, snapshot_properties=dict(snapshot_properties or {}))
                break
            except CommitFailedException as exc:
                if attempt == attempts:
                    raise StoreError(f"append to {name!r} lost {attempts} commit races: {exc}") from exc
                log.info("commit conflict, retrying", extra={"table": name, "attempt": attempt})
                time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))
                table = self.catalog.load_table(self.identifier(name))
                self._tables[name] = table
        snapshot = table.current_snapshot()
        keep = int(table.properties.get(KEEP_SNAPSHOTS, 0))
        if keep and len(table.metadata.snapshots) > keep + keep // 5:
            self.expire_snapshots(name)
        return snapshot.snapshot_id if snapshot else None

    def expire_snapshots(self, name: str) -> int:
        """Expire the snapshots a table's ``history.expire.*`` properties do not keep; how many went.

        Kept: the newest ``min-snapshots-to-keep``, every snapshot younger than ``max-snapshot-age-ms``,
        and branch and tag heads. A table without ``min-snapshots-to-keep`` keeps everything. Losing a
        commit race to another writer is not an error: the next append tries again.
        """
        table = self.table(name)
        keep = int(table.properties.get(KEEP_SNAPSHOTS, 0))
        if not keep:
            return 0
        newest_first = sorted(table.metadata.snapshots, key=lambda s: s.timestamp_ms, reverse=True)
        cutoff_ms = time.time() * 1000 - int(table.properties.get(MAX_SNAPSHOT_AGE_MS, 0))
        heads = {ref.snapshot_id for ref in table.metadata.refs.values()}
        old = [s for s in newest_first[keep:] if s.timestamp_ms < cutoff_ms and s.snapshot_id not in heads]
        if not old:
            return 0
        try:
            table.maintenance.expire_snapshots().by_ids([s.snapshot_id for s in old]).commit()
        except CommitFailedException as exc:
            log.info("snapshot expiry lost a commit race", extra={"table": name, "error": str(exc)})
            self._tables[name] = self.catalog.load_table(self.identifier(name))
            return 0
        # Each snapshot has a manifest list of its own, which nothing reads once the snapshot is gone.
        # (Manifests and data files may be shared with the snapshots kept: they stay.)
        for snapshot in old:
            try:
                table.io.delete(snapshot.manifest_list)
            except OSError as exc:  # already gone, or the storage refused: it only costs space
                log.info(
                    "manifest list not deleted", extra={"path": snapshot.manifest_list, "error": str(exc)}
                )
        log.info(
            "snapshots expired",
            extra={"table": name, "expired": len(old), "kept": len(newest_first) - len(old)},
        )
        return len(old)

    def read(self, name: str, row_filter: BooleanExpression | str | None = None, **scan: Any) -> pa.Table:
        """Rows of a table (optionally filtered, e.g. ``"dataset_id == 'ds-1'"``) as an Arrow table."""
        table = self.catalog.load_table(self.identifier(name))
        self._tables[name] = table
        return table.scan(row_filter=AlwaysTrue() if row_filter is None else row_filter, **scan).to_arrow()

    def read_snapshot(
        self, name: str, snapshot_id: int, row_filter: BooleanExpression | str | None = None
    ) -> pa.Table:
        """Rows of a table as of one snapshot: what an event referring to that snapshot saw."""
        return self.read(name, row_filter, snapshot_id=snapshot_id)

    def read_added(
        self, name: str, snapshot_id: int, row_filter: BooleanExpression | str | None = None
    ) -> pa.Table:
        """Rows that one append snapshot added, read from its own data files (pyiceberg's incremental
        append scan), so the cost does not grow with the table as a read as of the snapshot does: a
        traces table of 111 appends took 0.57 s of CPU to find two rows as of its last snapshot (57 data
        files), 0.02 s from the files that snapshot added. No rows when the snapshot is gone or added
        none; the caller falls back to ``read_snapshot`` for rows it did not find."""
        scan = self.added_scan(name, snapshot_id, row_filter)
        if scan is None:
            return self.table(name).schema().as_arrow().empty_table()
        try:
            return scan.to_arrow()
        except ValueError:  # the parent snapshot has expired: the range cannot be resolved
            return self.table(name).schema().as_arrow().empty_table()

    def added_scan(
        self, name: str, snapshot_id: int, row_filter: BooleanExpression | str | None = None
    ) -> IncrementalAppendScan | None:
        """The scan of what one append snapshot added (``read_added``), or None when it is gone."""
        table = self.catalog.load_table(self.identifier(name))
        self._tables[name] = table
        snapshot = table.snapshot_by_id(snapshot_id)
        if snapshot is None:
            return None
        return table.incremental_append_scan(
            from_snapshot_id_exclusive=snapshot.parent_snapshot_id,
            to_snapshot_id_inclusive=snapshot_id,
            row_filter=AlwaysTrue() if row_filter is None else row_filter,
        )


def _ensure_local_dirs(settings: KaizenSettings) -> None:
    warehouse = settings.catalog.warehouse or ""
    if warehouse.startswith("file://"):
        Path(urlparse(warehouse).path).mkdir(parents=True, exist_ok=True)
    uri = settings.catalog.uri or ""
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
