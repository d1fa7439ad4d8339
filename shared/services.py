"""A process supervisor for the local loop: each service as its own process, with its real entry point.

    supervisor = Supervisor(home)
    supervisor.start([ServiceSpec("ingest-http", [python, "-m", "services.ingest.http"], env, ready=...)])
    ...
    supervisor.stop()

Every process gets the environment of one loop configuration, writes its log to
``<home>/logs/<name>.log`` and its pid file to ``<home>/run/services/<name>.json`` (pid, command, log,
start time), and runs in a session of its own so that stopping it (SIGTERM to its process group, then
SIGKILL after a grace period) also stops what it started (Ray's processes under the gateway). ``start``
waits for each service's readiness check before the next one starts, and stops everything it started
when one fails. A later process (``kaizen services down``) finds what to stop in the pid files.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.errors import KaizenError

Log = Callable[[str], None]


class ServiceError(KaizenError):
    """A service that did not start, did not become ready, or died."""


@dataclass(frozen=True)
class ServiceSpec:
    """One process: its name, command, environment and how to know it is ready."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    ready_url: str | None = None
    """An HTTP URL that answers 200 once the service serves."""
    ready_log: str | None = None
    """A line the service writes to its log once it serves (e.g. FastStream's "started successfully")."""
    ready_check: Callable[[], bool] | None = None
    """Any other readiness check (e.g. gRPC health); called until it returns True."""
    settle_s: float = 2.0
    """With no check: the process must stay alive this long to count as started."""
    ready_timeout_s: float = 180.0
    alone: bool = False
    """Start it on its own, before the next ones launch (Ray gives its node 30 s to register, which a
    machine busy with every other service's imports may not meet)."""
    alone_until_log: str | None = None
    """With ``alone``: the next ones launch once this line is in its log (its readiness is then waited
    on after theirs); None: once it is ready."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not alive.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            return False
    return True


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def interrupt_on_sigterm() -> None:
    """From now on SIGTERM stops this process as Ctrl-C does (``KeyboardInterrupt``), so ``finally``
    blocks run and a supervisor stops its services (Python's default SIGTERM ends the process on the
    spot, leaving them running). Call it from the main thread."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)


class Supervisor:
    """Starts, watches and stops the services of one loop."""

    def __init__(self, home: Path, *, log: Log | None = None) -> None:
        self.home = home
        self.logs = home / "logs"
        self.run_dir = home / "run" / "services"
        self.log = log or (lambda line: None)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def log_path(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def pid_path(self, name: str) -> Path:
        return self.run_dir / f"{name}.json"

    # Starting

    def start(self, specs: Sequence[ServiceSpec]) -> None:
        """Start every service, then wait until each is ready; on any failure stop all and raise.

        Consecutive services start together (their imports and model loads overlap) and are waited on
        in order; a service marked ``alone`` starts only once those before it are ready, and the next
        ones only once it is.
        """
        try:
            batch: list[ServiceSpec] = []
            deferred: list[tuple[ServiceSpec, subprocess.Popen[bytes], float]] = []
            for spec in specs:
                if not spec.alone:
                    batch.append(spec)
                    continue
                self._start_batch(batch)
                batch = []
                process, started = self._launch(spec)
                if spec.alone_until_log is None:
                    self._wait_ready(spec, process, started)
                    self.log(f"{spec.name}: ready after {time.monotonic() - started:.1f} s")
                else:
                    gate = ServiceSpec(
                        spec.name,
                        spec.argv,
                        ready_log=spec.alone_until_log,
                        ready_timeout_s=spec.ready_timeout_s,
                    )
                    self._wait_ready(gate, process, started)
                    deferred.append((spec, process, started))
            self._start_batch(batch)
            for spec, process, started in deferred:
                self._wait_ready(spec, process, started)
                self.log(f"{spec.name}: ready after {time.monotonic() - started:.1f} s")
        except BaseException:
            self.stop()
            raise

    def _start_batch(self, specs: Sequence[ServiceSpec]) -> None:
        launched = [(spec, *self._launch(spec)) for spec in specs]
        for spec, process, started in launched:
            self._wait_ready(spec, process, started)
            self.log(f"{spec.name}: ready after {time.monotonic() - started:.1f} s")

    def _launch(self, spec: ServiceSpec) -> tuple[subprocess.Popen[bytes], float]:
        running = self.recorded().get(spec.name)
        if running is not None and _alive(int(running["pid"])):
            raise ServiceError(f"{spec.name} already runs as pid {running['pid']} (kaizen services down)")
        self.logs.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log_file = self.log_path(spec.name).open("ab")
        env = {**os.environ, **spec.env}
        started = time.monotonic()
        process = subprocess.Popen(
            list(spec.argv), env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        log_file.close()
        self.processes[spec.name] = process
        self.pid_path(spec.name).write_text(
            json.dumps(
                {
                    "name": spec.name,
                    "pid": process.pid,
                    "argv": list(spec.argv),
                    "log": str(self.log_path(spec.name)),
                    "started_at": time.time(),
                }
            )
        )
        self.log(f"{spec.name}: started, pid {process.pid}, log {self.log_path(spec.name)}")
        return process, started

    def _wait_ready(self, spec: ServiceSpec, process: subprocess.Popen[bytes], started: float) -> None:
        deadline = started + spec.ready_timeout_s
        settle_until = started + spec.settle_s
        while True:
            code = process.poll()
            if code is not None:
                raise ServiceError(
                    f"{spec.name} exited with {code} before it was ready; last log lines:\n"
                    + self.tail(spec.name)
                )
            if spec.ready_url is not None:
                if http_ok(spec.ready_url):
                    return
            elif spec.ready_log is not None:
                if spec.ready_log in self.tail(spec.name, lines=10_000, max_bytes=1 << 22):
                    return
            elif spec.ready_check is not None:
                with contextlib.suppress(Exception):
                    if spec.ready_check():
                        return
            elif time.monotonic() >= settle_until:
                return
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"{spec.name} was not ready after {spec.ready_timeout_s:.0f} s; last log lines:\n"
                    + self.tail(spec.name)
                )
            time.sleep(0.2)

    # Watching

    def tail(self, name: str, lines: int = 20, max_bytes: int = 16_384) -> str:
        path = self.log_path(name)
        if not path.exists():
            return "(no log)"
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - max_bytes))
            text = handle.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def recorded(self) -> dict[str, dict[str, Any]]:
        """The pid files: what this or an earlier supervisor started and has not stopped."""
        records: dict[str, dict[str, Any]] = {}
        if not self.run_dir.exists():
            return records
        for path in sorted(self.run_dir.glob("*.json")):
            with contextlib.suppress(OSError, ValueError):
                record = json.loads(path.read_text())
                records[str(record["name"])] = record
        return records

    def status(self) -> list[dict[str, str]]:
        """One row per recorded service: name, pid, running or exited, log file."""
        rows = []
        for name, record in self.recorded().items():
            running = _alive(int(record["pid"]))
            rows.append(
                {
                    "service": name,
                    "pid": str(record["pid"]),
                    "state": "running" if running else "exited",
                    "up for": f"{time.time() - float(record['started_at']):.0f} s" if running else "-",
                    "log": str(record["log"]),
                }
            )
        return rows

    def dead(self) -> list[str]:
        """Services this supervisor started whose process has exited."""
        return [name for name, process in self.processes.items() if process.poll() is not None]

    # Stopping

    def stop(self, grace_s: float = 15.0) -> list[str]:
        """Stop every recorded service, newest first: SIGTERM to its group, SIGKILL after ``grace_s``."""
        records = self.recorded()
        names = list(reversed(sorted(records, key=lambda name: float(records[name]["started_at"]))))
        for name in names:
            self._signal(int(records[name]["pid"]), signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for name in names:
            pid = int(records[name]["pid"])
            while self._running(name, pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if self._running(name, pid):
                self.log(f"{name}: still running after {grace_s:.0f} s, killed")
                self._signal(pid, signal.SIGKILL)
            # What the service started in its group goes too (Ray workers outliving their driver).
            self._signal(pid, signal.SIGKILL)
            process = self.processes.pop(name, None)
            if process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(5)
            self.pid_path(name).unlink(missing_ok=True)
            self.log(f"{name}: stopped")
        return names

    def _running(self, name: str, pid: int) -> bool:
        process = self.processes.get(name)
        if process is not None:
            return process.poll() is None
        return _alive(pid)

    @staticmethod
    def _signal(pid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
