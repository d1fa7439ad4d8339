"""The local stack without Docker: real Kafka (KRaft), Redis, an S3 endpoint (moto) and MLflow.

``scripts/stack up|down|status`` (and ``kaizen stack ...``) drive this module. Every part is the real
server on loopback; its address comes from the same settings the services read, so one variable moves
both (``KAIZEN_REDIS__URL=redis://127.0.0.1:6390/0 scripts/stack up``). A part that already answers is
reused and never stopped by ``down``: ``down`` stops only what ``up`` started (pid files under
``<home>/run``). Logs of every part are in ``<home>/logs``.

Kafka comes from the Apache Kafka artifacts on Maven Central, fetched once with Maven into
``$KAIZEN_CACHE/kafka-<version>/libs``. With ``KAFKA_BOOTSTRAP_SERVERS`` set, that broker is used instead.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from shared.settings import KaizenSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
KAFKA_POM = REPO_ROOT / "scripts" / "kafka" / "pom.xml"
START_TIMEOUT_S = 240.0  # MLflow's server alone can take minutes to import on a saturated 2-core machine
STOP_TIMEOUT_S = 20.0


class StackError(RuntimeError):
    """A part of the local stack could not be installed, started or stopped."""


def cache_dir() -> Path:
    return Path(os.environ.get("KAIZEN_CACHE", Path.home() / ".cache" / "kaizen")).expanduser()


def kafka_version() -> str:
    text = KAFKA_POM.read_text()
    start = text.index("<kafka.version>") + len("<kafka.version>")
    return text[start : text.index("</kafka.version>")]


def kafka_libs() -> Path:
    return cache_dir() / f"kafka-{kafka_version()}" / "libs"


def kafka_cluster_id() -> str:
    """A new KRaft cluster id: 16 random bytes in URL-safe base64, as Kafka's ``random-uuid`` prints.

    Like Kafka's own ``Uuid.randomUuid``, never one that starts with ``-``: the storage tool would read
    ``-t -Xyz...`` as an option and refuse to format (one fresh stack in 64 failed to start that way).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def install_kafka() -> Path:
    """Fetch the Kafka jars with Maven once; later calls find them in the cache."""
    libs = kafka_libs()
    done = libs.parent / ".complete"
    if done.exists():
        return libs
    if shutil.which("mvn") is None:
        raise StackError("Maven (mvn) is needed to fetch Kafka's artifacts and is not on PATH")
    libs.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(KAFKA_POM),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={libs}",
        ],
        check=True,
    )
    done.touch()
    return libs


def install_redis() -> str:
    """The redis-server binary, installed from Debian's package when missing."""
    found = shutil.which("redis-server")
    if found:
        return found
    if shutil.which("apt-get") is None:
        raise StackError("redis-server is not installed and apt-get is not available to install it")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], check=True)
    found = shutil.which("redis-server")
    if not found:
        raise StackError("redis-server is still missing after apt-get install redis-server")
    return found


# ---------------------------------------------------------------------------------------------
# Probes: each answers True only when the real server speaks its protocol.


def _host_port(address: str, default_port: int) -> tuple[str, int]:
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    return parsed.hostname or "127.0.0.1", parsed.port or default_port


def _tcp_exchange(host: str, port: int, payload: bytes, timeout: float = 1.0) -> bytes:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(payload)
        return sock.recv(64)


def kafka_answers(bootstrap: str) -> bool:
    """Send Kafka's ApiVersions request (v0) and check the broker answers with correlation id 7."""
    host, port = _host_port(bootstrap.split(",")[0], 9092)
    client_id = b"kaizen-stack"
    body = (
        (18).to_bytes(2, "big")  # api key ApiVersions
        + (0).to_bytes(2, "big")  # api version
        + (7).to_bytes(4, "big")  # correlation id
        + len(client_id).to_bytes(2, "big")
        + client_id
    )
    try:
        reply = _tcp_exchange(host, port, len(body).to_bytes(4, "big") + body)
    except OSError:
        return False
    return len(reply) >= 10 and int.from_bytes(reply[4:8], "big") == 7 and reply[8:10] == b"\x00\x00"


def redis_answers(url: str) -> bool:
    host, port = _host_port(url, 6379)
    try:
        return _tcp_exchange(host, port, b"PING\r\n").startswith(b"+PONG")
    except OSError:
        return False


def http_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as reply:
            return 200 <= int(reply.status) < 300
    except (OSError, urllib.error.URLError):
        return False


# ---------------------------------------------------------------------------------------------
# Parts.


@dataclass
class Part:
    name: str
    address: str
    answers: Callable[[], bool]
    command: Callable[[], list[str]] = field(repr=False)
    prepare: Callable[[], None] = field(default=lambda: None, repr=False)
    after_start: Callable[[], None] = field(default=lambda: None, repr=False)
    external: bool = False
    env: dict[str, str] = field(default_factory=dict)
    """Set in the part's environment on top of this process's own."""


class Stack:
    def __init__(self, settings: KaizenSettings | None = None) -> None:
        self.settings = settings or KaizenSettings()
        home = self.settings.home
        self.data = home / "stack"
        self.logs = home / "logs"
        self.run = home / "run"
        self.parts = [self._kafka(), self._redis(), self._s3(), self._mlflow()]

    # -- part definitions ------------------------------------------------------------------

    def _kafka(self) -> Part:
        bootstrap = self.settings.kafka.bootstrap_servers
        host, port = _host_port(bootstrap.split(",")[0], 9092)
        controller_port = int(os.environ.get("KAIZEN_STACK_KAFKA_CONTROLLER_PORT", port + 1))
        data = self.data / "kafka"
        config = data / "server.properties"
        log_config = data / "log4j2.properties"

        def prepare() -> None:
            libs = install_kafka()
            data.mkdir(parents=True, exist_ok=True)
            config.write_text(
                "\n".join(
                    [
                        "process.roles=broker,controller",
                        "node.id=1",
                        f"controller.quorum.voters=1@{host}:{controller_port}",
                        f"listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
                        f"advertised.listeners=PLAINTEXT://{host}:{port}",
                        "controller.listener.names=CONTROLLER",
                        "inter.broker.listener.name=PLAINTEXT",
                        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                        f"log.dirs={data / 'logs'}",
                        f"num.partitions={self.settings.kafka.partitions}",
                        "auto.create.topics.enable=true",
                        "offsets.topic.replication.factor=1",
                        "offsets.topic.num.partitions=10",
                        "transaction.state.log.replication.factor=1",
                        "transaction.state.log.min.isr=1",
                        "share.coordinator.state.topic.replication.factor=1",
                        "share.coordinator.state.topic.min.isr=1",
                        "group.initial.rebalance.delay.ms=0",
                        "log.retention.hours=168",
                        "",
                    ]
                )
            )
            log_config.write_text(
                "rootLogger.level=WARN\nrootLogger.appenderRef.stdout.ref=STDOUT\n"
                "appender.stdout.type=Console\nappender.stdout.name=STDOUT\n"
                "appender.stdout.layout.type=PatternLayout\n"
                "appender.stdout.layout.pattern=[%d] %p %m (%c)%n\n"
                "logger.kafka.name=kafka\nlogger.kafka.level=INFO\n"
            )
            if not (data / "logs" / "meta.properties").exists():
                cluster_id = kafka_cluster_id()
                subprocess.run(
                    [
                        *self._java(libs, log_config),
                        *("kafka.tools.StorageTool", "format", "-t", cluster_id),
                        *("-c", str(config), "--ignore-formatted"),
                    ],
                    check=True,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )

        return Part(
            name="kafka",
            address=bootstrap,
            answers=lambda: kafka_answers(bootstrap),
            prepare=prepare,
            command=lambda: [*self._java(kafka_libs(), log_config), "kafka.Kafka", str(config)],
            external=bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS")),
        )

    @staticmethod
    def _java(libs: Path, log_config: Path) -> list[str]:
        heap = os.environ.get("KAIZEN_STACK_KAFKA_HEAP", "768m")
        return [
            "java",
            f"-Xmx{heap}",
            "-Xms256m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log_config}",
            "-cp",
            f"{libs}/*",
        ]

    def _redis(self) -> Part:
        url = self.settings.redis.url
        host, port = _host_port(url, 6379)
        data = self.data / "redis"

        def command() -> list[str]:
            return [
                install_redis(),
                "--bind",
                host,
                "--port",
                str(port),
                "--dir",
                str(data),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--protected-mode",
                "no",
            ]

        return Part(
            name="redis",
            address=url,
            answers=lambda: redis_answers(url),
            prepare=lambda: data.mkdir(parents=True, exist_ok=True),
            command=command,
        )

    def _s3(self) -> Part:
        endpoint = self.settings.s3.endpoint_url or ""
        host, port = _host_port(endpoint, 9100)

        def after_start() -> None:
            # The warehouse bucket exists from the start, as it would on a real deployment.
            request = urllib.request.Request(f"{endpoint}/{self.settings.s3.bucket}", method="PUT")
            try:
                urllib.request.urlopen(request, timeout=5).close()
            except urllib.error.HTTPError as exc:  # 409: it exists already
                if exc.code != 409:
                    raise

        return Part(
            name="s3",
            address=endpoint,
            answers=lambda: http_answers(f"{endpoint}/moto-api/"),
            command=lambda: [_venv_bin("moto_server"), "-H", host, "-p", str(port)],
            after_start=after_start,
            external=not endpoint or host not in {"127.0.0.1", "localhost"},
        )

    def _mlflow(self) -> Part:
        uri = self.settings.mlflow.tracking_uri
        host, port = _host_port(uri, 5000)
        data = self.data / "mlflow"

        def command() -> list[str]:
            return [
                _venv_bin("mlflow"),
                "server",
                "--backend-store-uri",
                f"sqlite:///{data / 'mlflow.db'}",
                "--artifacts-destination",
                str(data / "artifacts"),
                "--host",
                host,
                "--port",
                str(port),
                "--workers",
                "1",
            ]

        return Part(
            name="mlflow",
            address=uri,
            answers=lambda: http_answers(f"{uri}/health"),
            prepare=lambda: data.mkdir(parents=True, exist_ok=True),
            command=command,
            external=host not in {"127.0.0.1", "localhost"},
            # MLflow 3's server starts a job runner (seven huey consumers, each a Python process that
            # imports mlflow) for its GenAI jobs; Kaizen uses tracking and the registry only, and on a
            # 2-core machine the runner's start took about 160 CPU-seconds and 1.7 GiB of memory.
            env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def pidfile(self, part: Part) -> Path:
        return self.run / f"{part.name}.pid"

    def owned_pid(self, part: Part) -> int | None:
        try:
            pid = int(self.pidfile(part).read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except OSError:
            return None
        return pid

    def up(self, log: Callable[[str], None] = print) -> list[str]:
        """Start every part that does not answer yet, wait until all answer; return the names started."""
        for directory in (self.data, self.logs, self.run):
            directory.mkdir(parents=True, exist_ok=True)
        started: list[tuple[Part, subprocess.Popen[bytes]]] = []
        for part in self.parts:
            if part.answers():
                log(f"{part.name}: already answering at {part.address}")
                continue
            if part.external:
                raise StackError(
                    f"{part.name} at {part.address} is external to this stack and does not answer"
                )
            if self.owned_pid(part) is not None:
                log(f"{part.name}: started earlier, waiting for it at {part.address}")
                continue
            part.prepare()
            with open(self.logs / f"{part.name}.log", "ab") as out:
                process = subprocess.Popen(
                    part.command(),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    cwd=self.data,
                    env={**os.environ, **part.env},
                )
            self.pidfile(part).write_text(str(process.pid))
            started.append((part, process))
            log(f"{part.name}: starting (pid {process.pid}), log {self.logs / (part.name + '.log')}")
        deadline = time.monotonic() + START_TIMEOUT_S
        for part in self.parts:
            mine = next((p for q, p in started if q is part), None)
            while not part.answers():
                if mine is not None and mine.poll() is not None:
                    self.pidfile(part).unlink(missing_ok=True)
                    raise StackError(
                        f"{part.name} exited with status {mine.returncode}; "
                        f"see {self.logs / (part.name + '.log')}"
                    )
                if time.monotonic() > deadline:
                    raise StackError(
                        f"{part.name} did not answer at {part.address} within {START_TIMEOUT_S:.0f}s"
                    )
                time.sleep(0.25)
            if mine is not None:
                part.after_start()
                log(f"{part.name}: answering at {part.address}")
        return [part.name for part, _ in started]

    def down(self, log: Callable[[str], None] = print, only: Sequence[str] | None = None) -> None:
        """Stop what ``up`` started (and only that); ``only`` narrows it to some parts."""
        for part in reversed(self.parts):
            if only is not None and part.name not in only:
                continue
            pid = self.owned_pid(part)
            if pid is None:
                self.pidfile(part).unlink(missing_ok=True)
                continue
            _stop_group(pid)
            self.pidfile(part).unlink(missing_ok=True)
            log(f"{part.name}: stopped (pid {pid})")

    def status(self) -> list[dict[str, str]]:
        rows = []
        for part in self.parts:
            pid = self.owned_pid(part)
            rows.append(
                {
                    "part": part.name,
                    "address": part.address,
                    "answering": "yes" if part.answers() else "no",
                    "started by stack": f"pid {pid}" if pid else ("external" if part.external else "no"),
                }
            )
        return rows

    def all_answer(self) -> bool:
        return all(part.answers() for part in self.parts)


def _venv_bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise StackError(f"{name} is not installed in this environment; run `make install`")
    return found


def _stop_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        _reap(pid)
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/stack", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("action", choices=["up", "down", "status", "install"])
    args = parser.parse_args(argv)
    stack = Stack()
    try:
        if args.action == "install":
            install_kafka()
            install_redis()
        elif args.action == "up":
            stack.up()
        elif args.action == "down":
            stack.down()
        else:
            rows = stack.status()
            width = {key: max(len(key), *(len(row[key]) for row in rows)) for key in rows[0]}
            print("  ".join(key.ljust(width[key]) for key in rows[0]))
            for row in rows:
                print("  ".join(row[key].ljust(width[key]) for key in row))
            return 0 if all(row["answering"] == "yes" for row in rows) else 1
    except (StackError, subprocess.CalledProcessError) as exc:
        print(f"stack {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
