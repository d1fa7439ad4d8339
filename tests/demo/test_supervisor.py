"""The process supervisor: real processes, readiness, pid files, logs, stop with SIGTERM then SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from demo.loop import free_port
from shared.services import ServiceError, ServiceSpec, Supervisor

SLEEPER = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(600)"]
# Ignores SIGTERM: only SIGKILL stops it.
STUBBORN = [
    sys.executable,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('up', flush=True); time.sleep(600)",
]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[-1].split()[0] != "Z"


def test_start_waits_for_readiness_records_and_stops(tmp_path: Path) -> None:
    port = free_port()
    http = ServiceSpec(
        "web",
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        env={"KAIZEN_MARK": "loop-env"},
        ready_url=f"http://127.0.0.1:{port}/",
    )
    supervisor = Supervisor(tmp_path)
    supervisor.start([http, ServiceSpec("sleeper", SLEEPER, settle_s=0.5)])
    try:
        rows = {row["service"]: row for row in supervisor.status()}
        assert set(rows) == {"web", "sleeper"}
        assert all(row["state"] == "running" for row in rows.values())
        web_pid = int(rows["web"]["pid"])
        assert "KAIZEN_MARK=loop-env" in Path(f"/proc/{web_pid}/environ").read_bytes().decode(
            errors="replace"
        ).replace("\0", "\n")
        # Another supervisor (a later `kaizen services down`) finds them by their pid files.
        later = Supervisor(tmp_path)
        assert set(later.recorded()) == {"web", "sleeper"}
        assert sorted(later.stop()) == ["sleeper", "web"]
        assert not _alive(web_pid)
        assert later.recorded() == {}
        assert (tmp_path / "logs" / "sleeper.log").read_text().startswith("up")
    finally:
        supervisor.stop()


def test_sigkill_after_the_grace_period(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    supervisor.start([ServiceSpec("stubborn", STUBBORN, settle_s=1.0)])
    pid = int(supervisor.recorded()["stubborn"]["pid"])
    began = time.monotonic()
    supervisor.stop(grace_s=1.0)
    assert time.monotonic() - began >= 1.0
    assert not _alive(pid)


def test_a_service_that_dies_stops_everything_and_says_why(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    crashing = ServiceSpec(
        "crashing",
        [sys.executable, "-c", "import sys; print('no broker here'); sys.exit(3)"],
        ready_url="http://127.0.0.1:9/",
    )
    with pytest.raises(ServiceError, match=r"exited with 3[\s\S]*no broker here"):
        supervisor.start([ServiceSpec("sleeper", SLEEPER, settle_s=0.5), crashing])
    assert supervisor.recorded() == {}
    assert supervisor.processes == {}


def test_not_ready_in_time(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    never = ServiceSpec("never", SLEEPER, ready_check=lambda: False, ready_timeout_s=1.0)
    with pytest.raises(ServiceError, match="not ready after"):
        supervisor.start([never])
    assert supervisor.recorded() == {}


def test_dead_reports_exited_services(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    supervisor.start([ServiceSpec("sleeper", SLEEPER, settle_s=0.3)])
    try:
        pid = int(supervisor.recorded()["sleeper"]["pid"])
        os.kill(pid, signal.SIGKILL)
        for _ in range(50):
            if supervisor.dead():
                break
            time.sleep(0.05)
        assert supervisor.dead() == ["sleeper"]
    finally:
        supervisor.stop()


def test_a_service_alone_starts_before_the_next_ones_launch(tmp_path: Path) -> None:
    port = free_port()
    # Writes "gate" at once, then serves HTTP only after 2 s: the next one launches between the two.
    first = ServiceSpec(
        "first",
        [
            sys.executable,
            "-c",
            "import time, subprocess, sys; print('gate', flush=True); time.sleep(2); "
            f"subprocess.run([sys.executable, '-m', 'http.server', '{port}', '--bind', '127.0.0.1'])",
        ],
        ready_url=f"http://127.0.0.1:{port}/",
        alone=True,
        alone_until_log="gate",
    )
    supervisor = Supervisor(tmp_path)
    supervisor.start([first, ServiceSpec("second", SLEEPER, settle_s=0.2)])
    try:
        records = supervisor.recorded()
        launched_after = float(records["second"]["started_at"]) - float(records["first"]["started_at"])
        assert 0 < launched_after < 2.0
        assert supervisor.dead() == []
    finally:
        supervisor.stop()


def test_sigterm_to_the_supervising_process_stops_its_services(tmp_path: Path) -> None:
    """As `kill` of a running demo: the services it started stop with it."""
    script = f"""
import sys, time
from pathlib import Path
from shared.services import ServiceSpec, Supervisor, interrupt_on_sigterm
interrupt_on_sigterm()
supervisor = Supervisor(Path({str(tmp_path)!r}))
try:
    supervisor.start([ServiceSpec("sleeper", {SLEEPER!r}, settle_s=0.5)])
    print(supervisor.recorded()["sleeper"]["pid"], flush=True)
    time.sleep(600)
finally:
    supervisor.stop(grace_s=5.0)
"""
    parent = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _alive(child)
        parent.send_signal(signal.SIGTERM)
        parent.wait(timeout=30)
        assert not _alive(child), "the service outlived the SIGTERM'd supervisor"
        assert Supervisor(tmp_path).recorded() == {}
    finally:
        parent.kill()
