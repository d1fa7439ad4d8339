"""`kaizen services status|down`, `kaizen loop status` and `kaizen send` as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from demo.loop import free_port
from shared.services import ServiceSpec, Supervisor
from shared.settings import KaizenSettings
from shared.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
KAIZEN = str(ROOT / "scripts" / "kaizen")


def _kaizen(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KAIZEN, *args], capture_output=True, text=True, env=os.environ | env, timeout=300)


def test_services_status_and_down_find_what_the_supervisor_started(tmp_path: Path) -> None:
    env = {"KAIZEN_HOME": str(tmp_path), "COLUMNS": "200"}
    assert "no services recorded" in _kaizen("services", "status", env=env).stdout
    supervisor = Supervisor(tmp_path)
    sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
    supervisor.start(
        [ServiceSpec("labeler", sleeper, settle_s=0.3), ServiceSpec("evaluator", sleeper, settle_s=0.3)]
    )
    pid = int(supervisor.recorded()["labeler"]["pid"])
    try:
        status = _kaizen("services", "status", env=env)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "labeler" in status.stdout and "evaluator" in status.stdout and "running" in status.stdout
        down = _kaizen("services", "down", env=env)
        assert down.returncode == 0, down.stderr
        assert "labeler: stopped" in down.stdout
        assert supervisor.recorded() == {}
        assert supervisor.processes["labeler"].wait(10) is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    finally:
        supervisor.stop()


def test_quick_commands_do_not_import_the_services() -> None:
    code = (
        "import sys; sys.argv = ['kaizen', 'services', 'status']\n"
        "import shared.cli\n"
        "heavy = [m for m in ('torch', 'services.rollout.cli', 'mlflow', 'demo.loop') if m in sys.modules]\n"
        "print(heavy)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.integration
def test_send_then_loop_status_counts_the_traces(stack: Stack, tmp_path: Path) -> None:
    from tests.conftest import isolated_settings

    settings = isolated_settings()
    port = free_port()
    env = {
        "KAIZEN_HOME": str(tmp_path),
        "KAIZEN_PROJECT_ID": settings.project_id,
        "KAIZEN_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
        "KAIZEN_CATALOG__NAMESPACE": settings.catalog.namespace,
        "KAIZEN_REDIS__KEY_PREFIX": settings.redis.key_prefix,
        "KAIZEN_MLFLOW__REGISTERED_MODEL": f"kaizen-{settings.project_id}",
        "KAIZEN_INGEST__PORT": str(port),
        "PYTHONPATH": str(ROOT),
        "COLUMNS": "200",
    }
    supervisor = Supervisor(tmp_path)
    python = sys.executable
    supervisor.start(
        [
            ServiceSpec(
                "ingest-http",
                [python, "-m", "services.ingest.http"],
                env,
                ready_url=f"http://127.0.0.1:{port}/healthz",
            ),
            ServiceSpec(
                "ingest-worker",
                [python, "-m", "services.ingest.worker"],
                env,
                ready_log="FastStream app started successfully",
            ),
        ]
    )
    try:
        sent = _kaizen("send", "--count", "5", "--url", f"http://127.0.0.1:{port}", env=env)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert "5 traces and 5 feedback signals accepted" in sent.stdout
        from demo.status import loop_status

        isolated = KaizenSettings(home=tmp_path, project_id=settings.project_id)
        isolated.catalog.namespace = settings.catalog.namespace
        isolated.kafka.topic_prefix = settings.kafka.topic_prefix
        isolated.redis.key_prefix = settings.redis.key_prefix
        isolated.mlflow.registered_model = env["KAIZEN_MLFLOW__REGISTERED_MODEL"]
        import time

        deadline = time.monotonic() + 120
        while loop_status(isolated)["tables"]["traces"] < 5 and time.monotonic() < deadline:
            time.sleep(1)
        status = _kaizen("loop", "status", "--json", env=env)
        assert status.returncode == 0, status.stdout + status.stderr
        assert '"traces": 5' in status.stdout
        assert '"datasets": 0' in status.stdout
        assert '"rollout": null' in status.stdout
    finally:
        supervisor.stop()
