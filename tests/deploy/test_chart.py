"""The Helm chart renders for both values files, and every core object validates against the
Kubernetes schemas (kubernetes-validate); the custom resources (KEDA, Gateway API, Prometheus
Operator, Karpenter) are the kinds we expect. The trainer's Job template requests GPUs on spot."""

import importlib
import os
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from shared.events import DatasetReady

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "kaizen"
KUBERNETES_VERSION = "1.31"
CUSTOM_KINDS = {
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("karpenter.sh/v1", "NodePool"),
    ("karpenter.k8s.aws/v1", "EC2NodeClass"),
}
VALUES = ["values-local.yaml", "values-eks.yaml"]


def helm() -> str:
    cache_dir = Path(os.environ.get("KAIZEN_CACHE", Path.home() / ".cache" / "kaizen"))
    found = sorted((cache_dir / "tools").glob("helm-*/helm"))
    if not found:
        pytest.fail("helm is not installed; scripts/bootstrap builds it into $KAIZEN_CACHE/tools")
    return str(found[-1])


@cache
def render(values: str) -> tuple[dict[str, Any], ...]:
    result = subprocess.run(
        [
            helm(),
            "template",
            "kaizen",
            str(CHART),
            "-f",
            str(CHART / values),
            "--namespace",
            "kaizen",
            "--kube-version",
            KUBERNETES_VERSION,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def by_kind(docs: tuple[dict[str, Any], ...], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def training_objects(docs: tuple[dict[str, Any], ...], dataset_id: str = "ds-1") -> dict[str, dict[str, Any]]:
    """The objects the trainer's Kubernetes launcher creates for a dataset, from the rendered ConfigMap."""
    from services.trainer.launcher import KubernetesLauncher
    from shared.samples import sample_events

    files = by_kind(docs, "ConfigMap")["kaizen-training-job"]["data"]
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in files.items():
            (Path(tmp) / name).write_text(text)
        launcher = KubernetesLauncher(Path(tmp), namespace="kaizen")
    event = next(e for e in sample_events() if isinstance(e, DatasetReady)).model_copy(
        update={"dataset_id": dataset_id}
    )
    return launcher.manifests(event)


def training_job(docs: tuple[dict[str, Any], ...], dataset_id: str = "ds-1") -> dict[str, Any]:
    return training_objects(docs, dataset_id)["job"]


@pytest.mark.parametrize("values", VALUES)
def test_every_core_object_validates(values: str) -> None:
    docs = render(values)
    core = [doc for doc in docs if (doc["apiVersion"], doc["kind"]) not in CUSTOM_KINDS]
    assert len(core) > 30
    for doc in [*core, training_job(docs)]:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} ({values}): {error.message}")
    kinds = {(doc["apiVersion"], doc["kind"]) for doc in docs}
    assert kinds - {(d["apiVersion"], d["kind"]) for d in core} <= CUSTOM_KINDS


@pytest.mark.parametrize("values", VALUES)
def test_one_deployment_per_service_with_real_probes_and_its_own_account(values: str) -> None:
    docs = render(values)
    deployments = by_kind(docs, "Deployment")
    expected = {
        "ingest-http", "ingest-worker", "labeler", "curator", "trainer", "evaluator",
        "rollout-controller", "gateway-champion", "gateway-canary", "kernels", "dashboard",
    }  # fmt: skip
    assert set(deployments) == {f"kaizen-{name}" for name in expected}
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert pod["serviceAccountName"] == name
        assert container["resources"]["requests"] and container["resources"]["limits"], name
        assert "livenessProbe" in container and "readinessProbe" in container, name
        if name == "kaizen-kernels":
            assert "grpc" in container["livenessProbe"]
        else:
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert set(by_kind(docs, "PodDisruptionBudget")) == set(deployments)
    roles = by_kind(docs, "Role")
    assert set(roles) == {"kaizen-trainer", "kaizen-rollout-controller"}, "least privilege"
    route_rules = roles["kaizen-rollout-controller"]["rules"]
    assert route_rules == [
        {
            "apiGroups": ["gateway.networking.k8s.io"],
            "resources": ["httproutes"],
            "verbs": ["get", "list", "watch", "patch"],
        }
    ]


@pytest.mark.parametrize("values", VALUES)
def test_consumers_scale_on_their_own_lag_within_partitions(values: str) -> None:
    docs = render(values)
    chart_values = yaml.safe_load((CHART / values).read_text())
    partitions = chart_values["kafka"]["partitions"]
    scaled = by_kind(docs, "ScaledObject")
    assert set(scaled) == {
        "kaizen-ingest-worker", "kaizen-labeler", "kaizen-curator", "kaizen-trainer", "kaizen-evaluator",
        "kaizen-rollout-controller",
    }  # fmt: skip
    for name, obj in scaled.items():
        assert obj["spec"]["scaleTargetRef"]["name"] == name
        assert obj["spec"]["maxReplicaCount"] <= partitions, name
        for trigger in obj["spec"]["triggers"]:
            assert trigger["type"] == "kafka"
            assert trigger["metadata"]["consumerGroup"] and trigger["metadata"]["topic"]
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    assert set(hpas) == {"kaizen-ingest-http", "kaizen-gateway-champion", "kaizen-gateway-canary"}


def test_replicas_above_partitions_are_refused() -> None:
    result = subprocess.run(
        [
            helm(),
            "template",
            "kaizen",
            str(CHART),
            "--set",
            "kafka.partitions=2",
            "--kube-version",
            KUBERNETES_VERSION,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "exceeds kafka.partitions" in result.stderr


@pytest.mark.parametrize("values", VALUES)
def test_training_job_requests_gpus_on_spot_and_checkpoints_to_s3(values: str) -> None:
    from services.trainer.job import main as job_main
    from services.trainer.launcher import job_name

    docs = render(values)
    dataset_id = "ds-7F3A_curated/2026"  # not a DNS name: the launcher derives one
    job = training_job(docs, dataset_id)
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["KAIZEN_TRAINER__CHECKPOINT_URI"].startswith("s3://")  # the job adds project/dataset
    assert container["args"] == ["--dataset-id", dataset_id]
    with pytest.raises(SystemExit) as usage:  # the job program accepts exactly these arguments
        job_main([*container["args"], "--help"])
    assert usage.value.code == 0
    assert job["metadata"]["name"] == job_name(dataset_id)
    assert job["metadata"]["annotations"]["kaizen.dev/dataset-id"] == dataset_id
    trainer = by_kind(docs, "Deployment")["kaizen-trainer"]["spec"]["template"]["spec"]
    trainer_env = {item["name"]: item.get("value") for item in trainer["containers"][0]["env"]}
    assert trainer_env["KAIZEN_TRAINER__LAUNCHER"] == "kubernetes"
    mount = trainer_env["KAIZEN_TRAINER__JOB_TEMPLATE_DIR"]
    assert {"name": "training-job", "mountPath": mount, "readOnly": True} in trainer["containers"][0][
        "volumeMounts"
    ]
    assert {"name": "training-job", "configMap": {"name": "kaizen-training-job"}} in trainer["volumes"]
    if values == "values-eks.yaml":
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
        assert {
            "key": "karpenter.sh/capacity-type",
            "operator": "Equal",
            "value": "spot",
            "effect": "NoSchedule",
        } in pod["tolerations"]
        assert pod["schedulerName"] == "volcano"
        group = training_objects(docs, dataset_id)["podgroup"]
        assert group["metadata"]["name"] == job["metadata"]["name"]
        pools = by_kind(render(values), "NodePool")
        requirements = pools["kaizen-gpu"]["spec"]["template"]["spec"]["requirements"]
        assert {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]} in requirements


@pytest.mark.parametrize("values", VALUES)
def test_the_rollout_controller_patches_exactly_the_routes_backend_refs(values: str) -> None:
    """The controller's rendered settings name the chart's HTTPRoute and its two backendRefs, and its
    patch moves their weights."""
    from services.rollout.routing import httproute_weights_patch
    from services.rollout.settings import RolloutSettings

    docs = render(values)
    route = by_kind(docs, "HTTPRoute")["kaizen-chat"]
    container = by_kind(docs, "Deployment")["kaizen-rollout-controller"]["spec"]["template"]["spec"][
        "containers"
    ][0]
    env = {item["name"]: item["value"] for item in container["env"] if "value" in item}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        rollout = RolloutSettings().rollout
    assert rollout.router == "kubernetes"
    assert rollout.kubernetes.name == route["metadata"]["name"]
    refs = route["spec"]["rules"][0]["backendRefs"]
    assert [ref["name"] for ref in refs] == [
        rollout.kubernetes.champion_service,
        rollout.kubernetes.canary_service,
    ]
    weights = httproute_weights_patch(
        route, rollout.kubernetes.champion_service, rollout.kubernetes.canary_service, 0.05
    )
    assert [ref["weight"] for ref in weights["spec"]["rules"][0]["backendRefs"]] == [95, 5]
    role = by_kind(docs, "Role")["kaizen-rollout-controller"]
    assert any("httproutes" in rule["resources"] and "patch" in rule["verbs"] for rule in role["rules"])


@pytest.mark.parametrize("values", VALUES)
def test_http_route_splits_between_the_two_gateway_services(values: str) -> None:
    docs = render(values)
    route = by_kind(docs, "HTTPRoute")["kaizen-chat"]
    refs = route["spec"]["rules"][0]["backendRefs"]
    services = by_kind(docs, "Service")
    assert [ref["name"] for ref in refs] == ["kaizen-gateway-champion", "kaizen-gateway-canary"]
    assert [ref["weight"] for ref in refs] == [100, 0]
    for ref in refs:
        assert ref["port"] in [port["port"] for port in services[ref["name"]]["spec"]["ports"]]


# Deployment -> the module whose ``create_app`` builds the FastStream app that Deployment runs, and the
# arguments its command implies. The chart's KEDA triggers must name exactly the (topic, consumer group)
# pairs that app's broker subscribes with.
CONSUMER_APPS: dict[str, tuple[str, dict[str, Any]]] = {
    "ingest-worker": ("services.ingest.app", {}),
    "labeler": ("services.labeler.app", {"roles": ["labeler"]}),  # KAIZEN_LABELER__ROLES in values.yaml
    "curator": ("services.labeler.app", {"roles": ["curator"]}),  # python -m services.labeler.curator
    "trainer": ("services.trainer.app", {}),
    "evaluator": ("services.evaluator.app", {}),
    "rollout-controller": ("services.rollout.app", {}),
}


def code_subscriptions(module: str, arguments: dict[str, Any]) -> set[tuple[str, str]]:
    from prometheus_client import CollectorRegistry

    app = importlib.import_module(module).create_app(registry=CollectorRegistry(), **arguments)
    return {
        (getattr(topic, "name", str(topic)), subscriber.group_id)
        for subscriber in app.broker.subscribers
        for topic in subscriber.topics
    }


@pytest.mark.parametrize("deployment", sorted(CONSUMER_APPS))
def test_scaled_objects_name_the_topics_and_groups_the_code_subscribes_with(deployment: str) -> None:
    scaled = by_kind(render("values-eks.yaml"), "ScaledObject")[f"kaizen-{deployment}"]
    rendered = {(t["metadata"]["topic"], t["metadata"]["consumerGroup"]) for t in scaled["spec"]["triggers"]}
    assert rendered == code_subscriptions(*CONSUMER_APPS[deployment])


def test_http_services_scale_on_a_metric_the_adapter_derives_from_what_they_export() -> None:
    """Each requestRate metric of the chart is what the prometheus-adapter rule names, and that rule
    reads the counter the HTTP services really export (shared.telemetry.HttpMetrics)."""
    import re

    from prometheus_client import CollectorRegistry

    from shared.telemetry import HTTP_REQUESTS, HttpMetrics

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    wanted = {svc["requestRate"]["metric"] for svc in values["services"].values() if svc.get("requestRate")}
    assert wanted == {"kaizen_http_requests_per_second"}

    adapter = yaml.safe_load((ROOT / "deploy" / "prometheus-adapter" / "values.yaml").read_text())
    (rule,) = adapter["rules"]["custom"]
    series = rule["seriesQuery"].split("{")[0]
    assert re.sub(rule["name"]["matches"], rule["name"]["as"], series) in wanted
    assert "rate(<<.Series>>" in rule["metricsQuery"]

    registry = CollectorRegistry()
    HttpMetrics.of(registry).requests.labels("gateway", "/v1/chat/completions", "200").inc()
    exported = {sample.name for family in registry.collect() for sample in family.samples}
    assert series == HTTP_REQUESTS and series in exported
