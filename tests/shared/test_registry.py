"""MLflow helpers against the real tracking server: experiments per project, aliases, promotion with
``previous`` kept, and rollback to it."""

import uuid

import pytest

from shared.registry import CHALLENGER, CHAMPION, PREVIOUS, ModelRegistry, RegistryError
from shared.settings import KaizenSettings

pytestmark = pytest.mark.integration


def registered_versions(registry: ModelRegistry, count: int) -> list[str]:
    client = registry.client
    experiment_id = registry.experiment_id()
    name = registry.ensure_model()
    versions = []
    for i in range(count):
        run = client.create_run(experiment_id, tags={"kaizen.dataset_id": f"ds-{i}"})
        client.log_text(run.info.run_id, f"adapter {i}", "adapter/adapter_config.json")
        client.set_terminated(run.info.run_id)
        version = client.create_model_version(
            name, source=f"{run.info.artifact_uri}/adapter", run_id=run.info.run_id
        )
        versions.append(str(version.version))
    return versions


def test_experiment_is_created_once_per_project(settings: KaizenSettings) -> None:
    registry = ModelRegistry(settings)
    first = registry.experiment_id()
    assert registry.experiment_id() == first
    assert registry.client.get_experiment(first).name == f"kaizen/{settings.project_id}"


def test_promotion_keeps_previous_and_rollback_returns_to_it(settings: KaizenSettings) -> None:
    settings.mlflow.registered_model = f"kaizen-test-{uuid.uuid4().hex[:8]}"
    registry = ModelRegistry(settings)
    v1, v2 = registered_versions(registry, 2)
    assert registry.version(CHAMPION) is None

    assert registry.promote(v1) is None
    registry.set_alias(CHALLENGER, v2)
    registry.tag(v2, "eval.status", "passed")
    assert registry.promote(v2) == v1
    assert registry.version(CHAMPION).version == v2  # type: ignore[union-attr]
    assert registry.version(PREVIOUS).version == v1  # type: ignore[union-attr]
    assert registry.version(CHALLENGER) is None, "the challenger alias leaves with promotion"
    assert registry.client.get_model_version(registry.model_name, v2).tags["eval.status"] == "passed"

    assert registry.rollback() == v1
    assert registry.version(CHAMPION).version == v1  # type: ignore[union-attr]
    assert registry.version(PREVIOUS).version == v2  # type: ignore[union-attr]


def test_rollback_without_previous_is_refused(settings: KaizenSettings) -> None:
    settings.mlflow.registered_model = f"kaizen-test-{uuid.uuid4().hex[:8]}"
    registry = ModelRegistry(settings)
    (v1,) = registered_versions(registry, 1)
    registry.promote(v1)
    with pytest.raises(RegistryError, match="previous"):
        registry.rollback()
