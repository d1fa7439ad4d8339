"""MLflow helpers: an experiment per project, a registered model per served model, and the aliases
``champion``, ``challenger`` and ``previous`` that decide what serves. A checkpoint goes live by moving
an alias, never by editing code."""

from __future__ import annotations

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from shared.errors import KaizenError
from shared.settings import KaizenSettings

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS = "previous"


class RegistryError(KaizenError):
    """The model registry refused or could not find something."""


class ModelRegistry:
    def __init__(self, settings: KaizenSettings, client: MlflowClient | None = None) -> None:
        self.settings = settings
        self.client = client or MlflowClient(tracking_uri=settings.mlflow.tracking_uri)
        self.model_name = settings.mlflow.registered_model

    def experiment_id(self, project_id: str | None = None) -> str:
        """The project's experiment (``<prefix>/<project>``), created the first time."""
        name = f"{self.settings.mlflow.experiment_prefix}/{project_id or self.settings.project_id}"
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        try:
            return str(self.client.create_experiment(name))
        except MlflowException:  # created meanwhile by another replica
            again = self.client.get_experiment_by_name(name)
            if again is None:
                raise
            return str(again.experiment_id)

    def ensure_model(self, name: str | None = None) -> str:
        name = name or self.model_name
        try:
            self.client.get_registered_model(name)
        except MlflowException:
            try:
                self.client.create_registered_model(name)
            except MlflowException:
                self.client.get_registered_model(name)
        return name

    def version(self, alias: str, name: str | None = None) -> ModelVersion | None:
        """The version holding ``alias``, or None when no version holds it."""
        try:
            return self.client.get_model_version_by_alias(name or self.model_name, alias)
        except MlflowException:
            return None

    def set_alias(self, alias: str, version: str, name: str | None = None) -> None:
        self.client.set_registered_model_alias(name or self.model_name, alias, version)

    def tag(self, version: str, key: str, value: str, name: str | None = None) -> None:
        self.client.set_model_version_tag(name or self.model_name, version, key, value)

    def promote(self, version: str, name: str | None = None) -> str | None:
        """Make ``version`` the champion; the old champion keeps the alias ``previous``. Returns it."""
        name = name or self.model_name
        old = self.version(CHAMPION, name)
        if old is not None and old.version == str(version):
            return None
        if old is not None:
            self.set_alias(PREVIOUS, old.version, name)
        self.set_alias(CHAMPION, str(version), name)
        if (challenger := self.version(CHALLENGER, name)) is not None and challenger.version == str(version):
            self.client.delete_registered_model_alias(name, CHALLENGER)
        return old.version if old is not None else None

    def rollback(self, name: str | None = None) -> str:
        """Return the champion alias to the ``previous`` version at once; returns that version."""
        name = name or self.model_name
        previous = self.version(PREVIOUS, name)
        if previous is None:
            raise RegistryError(f"registered model {name!r} has no version with alias {PREVIOUS!r}")
        current = self.version(CHAMPION, name)
        self.set_alias(CHAMPION, previous.version, name)
        if current is not None:
            self.set_alias(PREVIOUS, current.version, name)
        return str(previous.version)
