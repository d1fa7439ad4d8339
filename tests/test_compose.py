"""compose.yaml validates with Docker's own tool (no engine needed), every Kaizen service builds from
a Dockerfile that exists, and each service group of the lock installs only what it needs."""

import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
KAIZEN_SERVICES = {
    "kernels",
    "ingest",
    "ingest-worker",
    "labeler",
    "trainer",
    "evaluator",
    "rollout",
    "gateway",
    "dashboard",
}


def compose_command() -> list[str]:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    pytest.fail("neither `docker compose` nor `docker-compose` is installed (scripts/bootstrap installs it)")


def test_compose_config_validates() -> None:
    result = subprocess.run(
        [*compose_command(), "-f", str(ROOT / "compose.yaml"), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr


def test_every_service_is_built_healthchecked_and_waits_for_healthy_dependencies() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services: dict[str, Any] = compose["services"]
    assert KAIZEN_SERVICES | {"kafka", "redis", "minio", "mlflow"} <= set(services)
    for name in KAIZEN_SERVICES:
        build = services[name]["build"]
        dockerfile = ROOT / build["context"] / build.get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), f"{name}: Dockerfile missing"
        assert "healthcheck" in services[name], name
    for name, service in services.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert condition["condition"] in {"service_healthy", "service_completed_successfully"}, (
                name,
                dependency,
            )
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], (
                    f"{name} waits on {dependency}, which has no healthcheck"
                )


def _closure(lock: dict[str, Any], roots: list[str]) -> set[str]:
    packages = {package["name"]: package for package in lock["package"]}
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name not in packages:
            continue
        seen.add(name)
        for dependency in packages[name].get("dependencies", []):
            if "sys_platform == 'never'" not in dependency.get("marker", ""):
                todo.append(dependency["name"])
    return seen


def test_ingest_group_does_not_pull_torch_and_trainer_does() -> None:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    root = next(p for p in lock["package"] if p["name"] == "kaizen")
    base = [d["name"] for d in root.get("dependencies", [])]
    extras = {group: [d["name"] for d in deps] for group, deps in root["optional-dependencies"].items()}
    ingest = _closure(lock, base + extras["ingest"])
    assert "fastapi" in ingest and "faststream" in ingest
    assert not {"torch", "transformers", "ray", "mlflow"} & ingest
    assert "torch" in _closure(lock, base + extras["trainer"])
    assert "llama-cpp-python" not in _closure(lock, base + extras["trainer"]), "only the GGUF file is used"
