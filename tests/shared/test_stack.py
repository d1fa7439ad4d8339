"""`scripts/stack up|status|down` as a user runs it, on ports and a home of its own: everything
answers after up, status says so, and down leaves none of its processes running (and spares a part
it did not start)."""

import base64
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from shared.settings import KaizenSettings
from shared.stack import Stack, kafka_answers, kafka_cluster_id, redis_answers

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_up_status_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kafka, controller, redis, s3, mlflow, own_redis = (free_port() for _ in range(6))
    env = {
        **os.environ,
        "KAIZEN_HOME": str(tmp_path / "home"),
        "KAIZEN_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka}",
        "KAIZEN_STACK_KAFKA_CONTROLLER_PORT": str(controller),
        "KAIZEN_REDIS__URL": f"redis://127.0.0.1:{redis}/0",
        "KAIZEN_S3__ENDPOINT_URL": f"http://127.0.0.1:{s3}",
        "KAIZEN_MLFLOW__TRACKING_URI": f"http://127.0.0.1:{mlflow}",
    }
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    stack = [str(ROOT / "scripts" / "stack")]

    up = subprocess.run([*stack, "up"], env=env, capture_output=True, text=True, timeout=600)
    assert up.returncode == 0, up.stderr + up.stdout
    try:
        status = subprocess.run([*stack, "status"], env=env, capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr
        lines = {line.split()[0]: line for line in status.stdout.splitlines()[1:]}
        assert set(lines) == {"kafka", "redis", "s3", "mlflow"}
        for part, port in (("kafka", kafka), ("redis", redis), ("s3", s3), ("mlflow", mlflow)):
            assert f":{port}" in lines[part] and " yes " in lines[part], lines[part]
        assert kafka_answers(f"127.0.0.1:{kafka}")
        pids = {p.stem: int(p.read_text()) for p in (tmp_path / "home" / "run").glob("*.pid")}
        assert set(pids) == {"kafka", "redis", "s3", "mlflow"}
        assert (tmp_path / "home" / "logs" / "kafka.log").exists()
    finally:
        down = subprocess.run([*stack, "down"], env=env, capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    assert not any(pid_alive(pid) for pid in pids.values()), "stack down left processes running"
    assert not kafka_answers(f"127.0.0.1:{kafka}")
    after = subprocess.run([*stack, "status"], env=env, capture_output=True, text=True, timeout=60)
    assert after.returncode == 1 and " no " in after.stdout

    # A part that answers before `up` is reused, and `down` leaves it alone.
    mine = subprocess.Popen(
        ["redis-server", "--port", str(own_redis), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            if redis_answers(f"redis://127.0.0.1:{own_redis}"):
                break
            time.sleep(0.05)
        for key, value in env.items():
            if key.startswith("KAIZEN_"):
                monkeypatch.setenv(key, value)
        monkeypatch.setenv("KAIZEN_REDIS__URL", f"redis://127.0.0.1:{own_redis}/0")
        only_redis = Stack(KaizenSettings())
        only_redis.parts = [p for p in only_redis.parts if p.name == "redis"]
        assert only_redis.up(log=lambda _: None) == [], "an answering part is reused, not started"
        only_redis.down(log=lambda _: None)
        assert redis_answers(f"redis://127.0.0.1:{own_redis}"), "down stopped a redis it did not start"
    finally:
        mine.terminate()
        mine.wait(10)


def test_kafka_cluster_ids_never_read_as_an_option() -> None:
    # One id in 64 would start with "-" and the storage tool would take it for an option; 5,000 ids
    # drawn as before would hold about 78 such.
    ids = [kafka_cluster_id() for _ in range(5000)]
    assert not [cluster_id for cluster_id in ids if cluster_id.startswith("-")]
    assert len(set(ids)) == len(ids)
    assert all(len(base64.urlsafe_b64decode(cluster_id + "==")) == 16 for cluster_id in ids)
