"""Kernel tests: the real kernel server (``kernel_server``) and a backend of each kind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.kernels.client import KernelClient
from shared.kernels.grpc_backend import GrpcBackend
from shared.kernels.torch_backend import TorchBackend
from tests.fixtures.kernel_server import kernel_server  # noqa: F401


@pytest.fixture(scope="session")
def kernel_client(kernel_server: str) -> Iterator[KernelClient]:  # noqa: F811
    with KernelClient(kernel_server, deadline_s=30.0, retries=2) as client:
        yield client


@pytest.fixture(scope="session")
def grpc_backend(kernel_client: KernelClient) -> GrpcBackend:
    return GrpcBackend(kernel_client)


@pytest.fixture(scope="session")
def torch_backend() -> TorchBackend:
    return TorchBackend()
