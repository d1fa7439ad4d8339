"""``kaizen loop status``: how far one loop's data has come, read from where it is kept.

Traces, labels and datasets from the Iceberg tables; training runs, model versions and aliases from
MLflow; the rollout state from the rollout controller's own controls.
"""

from __future__ import annotations

import asyncio
from typing import Any

from shared.settings import KaizenSettings


def table_counts(settings: KaizenSettings) -> dict[str, int]:
    """Rows of traces and labels, and distinct datasets, in the loop's Iceberg namespace."""
    from pyiceberg.exceptions import NoSuchTableError

    from shared.store import DATASETS, LABELS, TRACES, IcebergStore

    store = IcebergStore(settings)

    def column(name: str, field: str) -> list[Any]:
        try:
            values: list[Any] = store.read(name, selected_fields=(field,)).column(field).to_pylist()
            return values
        except NoSuchTableError:  # nothing has reached that stage of the loop yet
            return []

    traces = len(column(TRACES, "trace_id"))
    labels = len(column(LABELS, "trace_id"))
    datasets = column(DATASETS, "dataset_id")
    return {"traces": traces, "labels": labels, "datasets": len(set(datasets)), "dataset rows": len(datasets)}


def registry_state(settings: KaizenSettings) -> dict[str, Any]:
    """MLflow: runs in the project's experiment, versions of the registered model and its aliases."""
    from mlflow.exceptions import MlflowException

    from shared.registry import ModelRegistry

    registry = ModelRegistry(settings)
    client = registry.client
    runs = client.search_runs([registry.experiment_id()], max_results=1000)
    name = settings.mlflow.registered_model
    try:
        versions = client.search_model_versions(f"name='{name}'")
        aliases = dict(client.get_registered_model(name).aliases)
    except MlflowException:
        versions, aliases = [], {}
    return {
        "runs": len(runs),
        "training runs": sum(
            run.info.run_name is not None and not run.info.run_name.startswith("eval-") for run in runs
        ),
        "model versions": len(versions),
        "aliases": {alias: str(version) for alias, version in sorted(aliases.items())},
    }


def rollout_state(settings: KaizenSettings) -> dict[str, Any]:
    from services.rollout.controls import status
    from services.rollout.settings import RolloutSettings

    rollout_settings = RolloutSettings.model_validate(settings.model_dump())
    return asyncio.run(status(rollout_settings))


def loop_status(settings: KaizenSettings) -> dict[str, Any]:
    """Everything ``kaizen loop status`` shows, as one document."""
    return {
        "project": settings.project_id,
        "tables": table_counts(settings),
        "registry": registry_state(settings),
        "rollout": rollout_state(settings),
    }
