"""The kernel service as a local process: build it, start it on a loopback port, wait until gRPC health
reports SERVING, stop it with SIGTERM. Tests, benchmarks and the local stack use it; in containers and
on Kubernetes the binary runs on its own.

    with LocalKernelServer(build_kernels(), workdir) as server:
        backend = GrpcBackend(KernelClient(server.address))
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import grpc

from shared.kernels.errors import KernelError, KernelUnavailableError

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build-kernels"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
SERVING = 1  # grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING


def build_kernels() -> Path:
    """The server binary: ``KAIZEN_KERNELS_BINARY`` when set, else what ``scripts/build-kernels`` builds
    (it prints the path on its last line; a no-op build takes well under a second)."""
    override = os.environ.get("KAIZEN_KERNELS_BINARY")
    if override:
        return Path(override)
    built = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True, check=False)
    lines = [line.strip() for line in built.stdout.splitlines() if line.strip()]
    if built.returncode != 0 or not lines:
        raise KernelError(f"scripts/build-kernels failed ({built.returncode}):\n{built.stderr[-4000:]}")
    return Path(lines[-1])


def _encode_health_request(service: str) -> bytes:
    """grpc.health.v1.HealthCheckRequest{service}: field 1, length-delimited (empty message for "")."""
    data = service.encode()
    if not data:
        return b""
    if len(data) > 127:
        raise KernelError("health check service name too long")
    return b"\x0a" + bytes([len(data)]) + data


def _decode_health_status(reply: bytes) -> int:
    """grpc.health.v1.HealthCheckResponse.status: field 1, a varint (absent means UNKNOWN, 0)."""
    if not reply:
        return 0
    if reply[0] != 0x08 or len(reply) < 2:
        raise KernelError(f"unexpected health reply {reply!r}")
    return reply[1] & 0x7F


def health_status(address: str, timeout_s: float = 1.0, service: str = "") -> int:
    """The gRPC health status of ``service`` at ``address`` (1 is SERVING); raises ``grpc.RpcError``."""
    with grpc.insecure_channel(address) as channel:
        check: Any = channel.unary_unary(
            HEALTH_CHECK,
            request_serializer=_encode_health_request,
            response_deserializer=_decode_health_status,
        )
        status: int = check(service, timeout=timeout_s)
        return status


class LocalKernelServer:
    """A kernel server process on loopback; ``address`` is set once :meth:`start` returns."""

    def __init__(
        self,
        binary: Path,
        workdir: Path,
        *,
        listen: str = "127.0.0.1:0",
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.binary = binary
        self.workdir = workdir
        self.listen = listen
        self.extra_args = extra_args
        self.address = ""
        self.log_path = workdir / "kernels.log"
        self._address_file = workdir / "kernels.address"
        self._log: IO[bytes] | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30.0) -> str:
        """Starts the server and returns its address once health reports SERVING."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._address_file.unlink(missing_ok=True)
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                str(self.binary),
                "--address",
                self.listen,
                "--address-file",
                str(self._address_file),
                "--log-format",
                "text",
                *self.extra_args,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while not self._address_file.exists():
            self._check_alive(deadline)
            time.sleep(0.02)
        self.address = self._address_file.read_text().strip()
        while True:
            self._check_alive(deadline)
            try:
                if health_status(self.address) == SERVING:
                    return self.address
            except grpc.RpcError:
                pass
            time.sleep(0.05)

    def _check_alive(self, deadline: float) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise KernelUnavailableError(
                f"kernel server exited with {self.process.returncode}:\n{self.log_tail()}"
            )
        if time.monotonic() > deadline:
            self.process.kill()
            raise KernelUnavailableError(f"kernel server not SERVING in time:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        if self._log is not None and not self._log.closed:
            self._log.flush()
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self, timeout_s: float = 15.0) -> int:
        """Sends SIGTERM and returns the exit status (0 after a graceful shutdown); kills it if it hangs."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
        return self.process.returncode

    def __enter__(self) -> LocalKernelServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
