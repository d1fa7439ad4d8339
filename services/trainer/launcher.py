"""Where a recorded training job runs: a worker process on this machine, or a Kubernetes Job in a cluster.

Locally (``KAIZEN_TRAINER__LAUNCHER=worker``, the default) the consumer only records the job in Redis and
``python -m services.trainer.worker`` claims it. In a cluster (``kubernetes``) the consumer also creates
one Job per dataset from the template the Helm chart renders into the ``<release>-training-job``
ConfigMap (mounted at ``KAIZEN_TRAINER__JOB_TEMPLATE_DIR``): ``job.yaml``, plus ``podgroup.yaml`` when
Volcano gang scheduling is on. The Job runs ``python -m services.trainer.job --dataset-id <id>`` on the
GPU pool; that program takes the recorded job's lease, trains and publishes the outcome.

Creating is idempotent: the Job's name is derived from the dataset id, so a redelivered or duplicate
``dataset.ready`` meets ``409 AlreadyExists`` and changes nothing. The kubernetes client is synchronous;
its calls run in a thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import string
from pathlib import Path
from typing import Any

import yaml

from services.trainer.errors import TrainerError
from shared.events import DatasetReady

log = logging.getLogger("kaizen.trainer.launcher")

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
_NOT_DNS = re.compile(r"[^a-z0-9-]+")


class LaunchError(TrainerError):
    """The training Job could not be built or created."""


def job_name(dataset_id: str) -> str:
    """A DNS-1123 label (at most 63 characters) for the dataset's Job, the same for the same id."""
    slug = _NOT_DNS.sub("-", dataset_id.lower()).strip("-")
    digest = hashlib.sha256(dataset_id.encode()).hexdigest()[:8]
    return f"train-{slug[:48].rstrip('-')}-{digest}" if slug else f"train-{digest}"


class KubernetesLauncher:
    """Creates the training Job (and PodGroup) of a dataset from the chart's template."""

    def __init__(self, template_dir: Path, namespace: str | None = None) -> None:
        self.template_dir = template_dir
        job_file = template_dir / "job.yaml"
        if not job_file.is_file():
            raise LaunchError(
                f"no training Job template at {job_file} (mount the chart's training-job ConfigMap there, "
                "or set KAIZEN_TRAINER__JOB_TEMPLATE_DIR)"
            )
        self.templates = {
            path.stem: string.Template(path.read_text())
            for path in (job_file, template_dir / "podgroup.yaml")
            if path.is_file()
        }
        self.namespace = namespace or self._own_namespace()
        self._api: tuple[Any, Any] | None = None

    @staticmethod
    def _own_namespace() -> str:
        try:
            return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
        except OSError:
            return "default"

    def manifests(self, event: DatasetReady) -> dict[str, dict[str, Any]]:
        """The objects for this dataset: ``{"job": ..., "podgroup": ...}`` (podgroup only with Volcano)."""
        fields = {
            "job_name": job_name(event.dataset_id),
            "dataset_id": event.dataset_id,
            "snapshot_id": str(event.stored.snapshot_id or ""),
            "algorithm": event.algorithm,
        }
        out: dict[str, dict[str, Any]] = {}
        for name, template in self.templates.items():
            try:
                document = yaml.safe_load(template.substitute(fields))
            except (KeyError, ValueError, yaml.YAMLError) as exc:
                raise LaunchError(f"{self.template_dir / (name + '.yaml')}: cannot render: {exc}") from exc
            if not isinstance(document, dict) or "kind" not in document:
                raise LaunchError(f"{self.template_dir / (name + '.yaml')}: not a Kubernetes object")
            out[name] = document
        return out

    def _clients(self) -> tuple[Any, Any]:
        if self._api is None:
            from kubernetes import client, config

            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            api = client.ApiClient()
            self._api = (client.BatchV1Api(api), client.CustomObjectsApi(api))
        return self._api

    def _create(self, event: DatasetReady) -> bool:
        from kubernetes.client.exceptions import ApiException

        batch, custom = self._clients()
        objects = self.manifests(event)
        try:
            if "podgroup" in objects:
                group, version = objects["podgroup"]["apiVersion"].split("/")
                custom.create_namespaced_custom_object(
                    group, version, self.namespace, "podgroups", objects["podgroup"]
                )
            batch.create_namespaced_job(self.namespace, objects["job"])
        except ApiException as exc:
            if exc.status == 409:  # the dataset's Job exists: a duplicate or redelivered dataset.ready
                return False
            raise LaunchError(f"cannot create the training Job of {event.dataset_id}: {exc.reason}") from exc
        return True

    async def launch(self, event: DatasetReady) -> bool:
        """Create the dataset's Job; False when it existed already."""
        created = await asyncio.to_thread(self._create, event)
        log.info(
            "training Job created" if created else "training Job exists already",
            extra={"dataset_id": event.dataset_id, "job": job_name(event.dataset_id), "ns": self.namespace},
        )
        return created
