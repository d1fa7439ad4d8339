"""A connection to the Rust kernel service: one gRPC channel, a deadline per call, retries on UNAVAILABLE.

Every kernel op is a pure function of its request, so a call that found the service unavailable is
simply sent again (after a short, doubling pause) up to ``retries`` times. INVALID_ARGUMENT becomes a
:class:`KernelInputError` whose message starts with the field at fault.

    with KernelClient("127.0.0.1:50051") as client:
        response = client.call("DpoLoss", request)
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from shared.kernels._proto import kernels_pb2 as pb
from shared.kernels.errors import KernelError, KernelInputError, KernelTimeoutError, KernelUnavailableError
from shared.settings import KernelSettings

SERVICE = "kaizen.kernels.v1.KernelService"

ResponseT = TypeVar("ResponseT", bound=Message)


def _methods() -> dict[str, tuple[type[Message], type[Message]]]:
    """Request and response classes of every RPC, read from the generated descriptor."""
    service = pb.DESCRIPTOR.services_by_name["KernelService"]
    methods: dict[str, tuple[type[Message], type[Message]]] = {}
    for method in service.methods:
        request: type[Message] = getattr(pb, method.input_type.name)
        response: type[Message] = getattr(pb, method.output_type.name)
        methods[method.name] = (request, response)
    return methods


METHODS = _methods()


class KernelClient:
    """Calls the kernel service at ``address`` (host:port)."""

    def __init__(
        self,
        address: str,
        *,
        deadline_s: float = 30.0,
        retries: int = 3,
        max_message_bytes: int = 64 * 1024 * 1024,
        backoff_s: float = 0.1,
    ) -> None:
        self.address = address
        self.deadline_s = deadline_s
        self.retries = retries
        self.backoff_s = backoff_s
        self._channel: Any = grpc.insecure_channel(
            address,
            options=[
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.max_receive_message_length", max_message_bytes),
                # This client retries UNAVAILABLE itself; gRPC's retry machinery only adds latency.
                ("grpc.enable_retries", 0),
                # Reconnect soon after the service restarts (gRPC's default first backoff is 1 s).
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.min_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 2000),
            ],
        )
        self._stubs: dict[str, Any] = {}

    @classmethod
    def from_settings(cls, settings: KernelSettings) -> KernelClient:
        return cls(
            settings.address,
            deadline_s=settings.deadline_s,
            retries=settings.retries,
            max_message_bytes=settings.max_message_bytes,
        )

    def _stub(self, method: str) -> Any:
        stub = self._stubs.get(method)
        if stub is None:
            if method not in METHODS:
                raise KernelError(f"unknown kernel method {method!r}")
            request, response = METHODS[method]
            stub = self._channel.unary_unary(
                f"/{SERVICE}/{method}",
                request_serializer=request.SerializeToString,
                response_deserializer=response.FromString,
            )
            self._stubs[method] = stub
        return stub

    def call(self, method: str, request: Message, response_type: type[ResponseT]) -> ResponseT:
        """Sends ``request`` to RPC ``method`` (``"DpoLoss"``) and returns its response."""
        stub = self._stub(method)
        attempt = 0
        while True:
            try:
                response = stub(request, timeout=self.deadline_s)
            except grpc.RpcError as err:
                code = err.code()
                if code == grpc.StatusCode.UNAVAILABLE and attempt < self.retries:
                    time.sleep(self.backoff_s * 2**attempt)
                    attempt += 1
                    continue
                raise _translate(method, code, err.details() or "", attempt) from err
            if not isinstance(response, response_type):
                raise KernelError(f"{method}: unexpected response type {type(response).__name__}")
            return response

    def wait_until_ready(self, timeout_s: float) -> None:
        """Blocks until the channel connects, or raises :class:`KernelUnavailableError`."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout_s)
        except grpc.FutureTimeoutError as err:
            raise KernelUnavailableError(
                f"kernel service at {self.address} not ready in {timeout_s}s"
            ) from err

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> KernelClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _translate(method: str, code: Any, details: str, retries: int) -> KernelError:
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return KernelInputError(details)
    if code == grpc.StatusCode.UNAVAILABLE:
        return KernelUnavailableError(
            f"{method}: kernel service unavailable after {retries} retries: {details}"
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return KernelTimeoutError(f"{method}: deadline exceeded: {details}")
    return KernelError(f"{method}: {code.name}: {details}")
