"""The client against real servers: retries on UNAVAILABLE, deadlines, message limits, configuration."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
import torch

from shared.kernels import make_backend
from shared.kernels._proto import kernels_pb2 as pb
from shared.kernels.client import KernelClient
from shared.kernels.errors import KernelError, KernelTimeoutError, KernelUnavailableError
from shared.kernels.grpc_backend import GrpcBackend
from shared.kernels.local import LocalKernelServer, build_kernels
from shared.kernels.torch_backend import TorchBackend
from shared.settings import KernelSettings


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def kl_request() -> pb.KlK3Request:
    one = pb.Tensor(shape=[1], dtype=pb.DTYPE_FLOAT64, data=b"\0" * 8)
    return pb.KlK3Request(logps=one, ref_logps=one)


def test_a_call_retries_until_the_service_comes_up(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    server = LocalKernelServer(build_kernels(), tmp_path, listen=address)
    starter = threading.Timer(0.4, server.start)
    starter.start()
    try:
        with KernelClient(address, retries=8, backoff_s=0.05) as client:
            started = time.monotonic()
            response = client.call("KlK3", kl_request(), pb.KlK3Response)
            assert time.monotonic() - started >= 0.3  # it had to wait for the server
        assert response.kl.shape == [1]
    finally:
        starter.join()
        assert server.stop() == 0


def test_unavailable_after_the_retries_are_spent() -> None:
    client = KernelClient(f"127.0.0.1:{free_port()}", retries=2, backoff_s=0.01)
    with client, pytest.raises(KernelUnavailableError, match="after 2 retries"):
        client.call("KlK3", kl_request(), pb.KlK3Response)


def test_a_call_past_its_deadline_raises_timeout(kernel_server: str) -> None:
    backend = GrpcBackend(KernelClient(kernel_server, deadline_s=0.001, retries=0))
    logits = torch.zeros(64, 49152, dtype=torch.float64)  # 25 MB each way: more than a millisecond
    try:
        with pytest.raises(KernelTimeoutError):
            backend.log_softmax(logits)
    finally:
        backend.close()


def test_messages_over_the_client_limit_are_refused(kernel_server: str) -> None:
    backend = GrpcBackend(KernelClient(kernel_server, max_message_bytes=1024))
    try:
        with pytest.raises(KernelError, match="RESOURCE_EXHAUSTED"):
            backend.log_softmax(torch.zeros(1, 4096, dtype=torch.float64))
        assert backend.log_softmax(torch.zeros(1, 8, dtype=torch.float64)).output.shape == (1, 8)
    finally:
        backend.close()


def test_configuration_picks_the_backend(kernel_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(make_backend(KernelSettings()), TorchBackend)  # the default
    monkeypatch.setenv("KAIZEN_KERNELS__BACKEND", "grpc")
    monkeypatch.setenv("KAIZEN_KERNELS__ADDRESS", kernel_server)
    monkeypatch.setenv("KAIZEN_KERNELS__DEADLINE_S", "5")
    backend = make_backend()
    try:
        assert isinstance(backend, GrpcBackend)
        assert backend.client.address == kernel_server and backend.client.deadline_s == 5.0
        out = backend.kl_k3(torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64))
        assert out.kl.tolist() == [0.0, 0.0, 0.0]
    finally:
        backend.close()
