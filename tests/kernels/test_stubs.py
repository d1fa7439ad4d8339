"""The committed Python stubs are what the proto generates today, and the client knows every RPC."""

from __future__ import annotations

from pathlib import Path

from shared.kernels import codegen
from shared.kernels._proto import kernels_pb2 as pb
from shared.kernels.client import METHODS


def test_committed_stubs_match_the_proto(tmp_path: Path) -> None:
    for generated in codegen.generate(tmp_path):
        committed = codegen.STUBS / generated.name
        assert committed.read_bytes() == generated.read_bytes(), (
            f"{committed.relative_to(codegen.REPO)} is stale: run `python -m shared.kernels.codegen`"
        )


def test_client_knows_every_rpc_of_the_service() -> None:
    service = pb.DESCRIPTOR.services_by_name["KernelService"]
    assert set(METHODS) == {method.name for method in service.methods}
    assert METHODS["DpoLoss"] == (pb.DpoLossRequest, pb.DpoLossResponse)
