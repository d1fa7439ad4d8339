"""Malformed requests of every kind get INVALID_ARGUMENT naming the field, and the server keeps serving.

The requests are built by hand from the generated messages, so they can be wrong in ways the Python
backends never produce (byte lengths, unknown dtypes, absent fields).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from google.protobuf.message import Message

from shared.kernels._proto import kernels_pb2 as pb
from shared.kernels.client import KernelClient
from shared.kernels.errors import KernelError, KernelInputError
from shared.kernels.local import SERVING, health_status


def f64(*values: float) -> pb.Tensor:
    data: np.ndarray = np.asarray(values, dtype="<f8")
    return pb.Tensor(shape=[len(values)], dtype=pb.DTYPE_FLOAT64, data=data.tobytes())


def f32(*values: float) -> pb.Tensor:
    data = np.asarray(values, dtype="<f4")
    return pb.Tensor(shape=[len(values)], dtype=pb.DTYPE_FLOAT32, data=data.tobytes())


def f64_matrix(rows: int, cols: int, value: float = -1.0) -> pb.Tensor:
    data: np.ndarray = np.full((rows, cols), value, dtype="<f8")
    return pb.Tensor(shape=[rows, cols], dtype=pb.DTYPE_FLOAT64, data=data.tobytes())


def i64(*values: int) -> pb.Tensor:
    data = np.asarray(values, dtype="<i8")
    return pb.Tensor(shape=[len(values)], dtype=pb.DTYPE_INT64, data=data.tobytes())


def dpo(**changes: object) -> pb.DpoLossRequest:
    request = pb.DpoLossRequest(
        policy_chosen_logps=f64(-1.0, -2.0),
        policy_rejected_logps=f64(-3.0, -1.0),
        ref_chosen_logps=f64(-1.5, -2.0),
        ref_rejected_logps=f64(-2.0, -1.5),
        beta=0.1,
    )
    for name, value in changes.items():
        if value is None:
            request.ClearField(name)
        elif isinstance(value, Message):
            getattr(request, name).CopyFrom(value)
        elif isinstance(value, list):
            del getattr(request, name)[:]
            getattr(request, name).extend(value)
        else:
            setattr(request, name, value)
    return request


def grpo(**changes: object) -> pb.GrpoLossRequest:
    request = pb.GrpoLossRequest(
        per_token_logps=f64_matrix(2, 3),
        advantages=f64(1.0, -1.0),
        mask=f64_matrix(2, 3, 1.0),
        loss_type="grpo",
    )
    for name, value in changes.items():
        if value is None:
            request.ClearField(name)
        elif isinstance(value, Message):
            getattr(request, name).CopyFrom(value)
        else:
            setattr(request, name, value)
    return request


@dataclass(frozen=True)
class Case:
    method: str
    request: Callable[[], Message]
    response: type[Message]
    field: str
    """The message must start with this (the field, and often why)."""


CASES = {
    # the kinds the issue names
    "wrong shape": Case(
        "DpoLoss", lambda: dpo(ref_chosen_logps=f64(1.0)), pb.DpoLossResponse, "ref_chosen_logps.shape"
    ),
    "mismatched lengths": Case(
        "DpoLoss",
        lambda: dpo(loss_types=["ipo"], chosen_lengths=f64(3.0), rejected_lengths=f64(2.0, 2.0)),
        pb.DpoLossResponse,
        "chosen_lengths.shape",
    ),
    "empty tensor": Case(
        "DpoLoss",
        lambda: dpo(policy_chosen_logps=pb.Tensor(shape=[0], dtype=pb.DTYPE_FLOAT64)),
        pb.DpoLossResponse,
        "policy_chosen_logps: empty tensor",
    ),
    "unknown loss type": Case(
        "DpoLoss", lambda: dpo(loss_types=["kto"]), pb.DpoLossResponse, "loss_types: unknown"
    ),
    "NaN": Case(
        "DpoLoss",
        lambda: dpo(ref_rejected_logps=f64(float("nan"), 0.0)),
        pb.DpoLossResponse,
        "ref_rejected_logps: contains NaN",
    ),
    "infinity": Case(
        "Softmax",
        lambda: pb.SoftmaxRequest(logits=f32(1.0, float("inf"))),
        pb.SoftmaxResponse,
        "logits: contains",
    ),
    "byte length": Case(
        "DpoLoss",
        lambda: dpo(policy_rejected_logps=pb.Tensor(shape=[2], dtype=pb.DTYPE_FLOAT64, data=b"\0" * 12)),
        pb.DpoLossResponse,
        "policy_rejected_logps.data",
    ),
    "unknown dtype": Case(
        "DpoLoss",
        lambda: dpo(policy_chosen_logps=pb.Tensor(shape=[2], dtype=7, data=b"\0" * 16)),  # type: ignore[arg-type]
        pb.DpoLossResponse,
        "policy_chosen_logps.dtype: unknown dtype 7",
    ),
    "unset dtype": Case(
        "KlK3",
        lambda: pb.KlK3Request(logps=pb.Tensor(shape=[1], data=b"\0" * 8), ref_logps=f64(0.0)),
        pb.KlK3Response,
        "logps.dtype: must be set",
    ),
    # more of the same spirit
    "missing tensor": Case(
        "DpoLoss", lambda: dpo(ref_chosen_logps=None), pb.DpoLossResponse, "ref_chosen_logps: required"
    ),
    "mixed float dtypes": Case(
        "DpoLoss", lambda: dpo(ref_chosen_logps=f32(1.0, 2.0)), pb.DpoLossResponse, "ref_chosen_logps.dtype"
    ),
    "shape overflow": Case(
        "Softmax",
        lambda: pb.SoftmaxRequest(logits=pb.Tensor(shape=[2**62, 2**62], dtype=pb.DTYPE_FLOAT32)),
        pb.SoftmaxResponse,
        "logits.shape",
    ),
    "scalar logits": Case(
        "LogSoftmax",
        lambda: pb.SoftmaxRequest(logits=pb.Tensor(shape=[], dtype=pb.DTYPE_FLOAT32, data=b"\0" * 4)),
        pb.SoftmaxResponse,
        "logits.shape",
    ),
    "float labels": Case(
        "CrossEntropy",
        lambda: pb.CrossEntropyRequest(logits=f64_matrix(2, 3), labels=f64(0.0, 1.0)),
        pb.CrossEntropyResponse,
        "labels.dtype",
    ),
    "label out of range": Case(
        "SelectiveLogSoftmax",
        lambda: pb.SelectiveLogSoftmaxRequest(logits=f64_matrix(2, 3), labels=i64(0, 3)),
        pb.SelectiveLogSoftmaxResponse,
        "labels: value 3",
    ),
    "int params": Case(
        "SgdStep",
        lambda: pb.SgdStepRequest(params=i64(1, 2), grads=f64(1.0, 2.0)),
        pb.SgdStepResponse,
        "params.dtype",
    ),
    "zero temperature": Case(
        "SelectiveLogSoftmax",
        lambda: pb.SelectiveLogSoftmaxRequest(logits=f64_matrix(2, 3), labels=i64(0, 1), temperature=0.0),
        pb.SelectiveLogSoftmaxResponse,
        "temperature",
    ),
    "non-positive beta": Case("DpoLoss", lambda: dpo(beta=-0.1), pb.DpoLossResponse, "beta"),
    "robust smoothing": Case(
        "DpoLoss",
        lambda: dpo(loss_types=["robust"], label_smoothing=0.5),
        pb.DpoLossResponse,
        "label_smoothing",
    ),
    "ipo without lengths": Case(
        "DpoLoss", lambda: dpo(loss_types=["ipo"]), pb.DpoLossResponse, "chosen_lengths: required"
    ),
    "grpo unknown loss": Case(
        "GrpoLoss", lambda: grpo(loss_type="cispo"), pb.GrpoLossResponse, "loss_type: unknown"
    ),
    "grpo KL without reference": Case(
        "GrpoLoss", lambda: grpo(beta=0.1), pb.GrpoLossResponse, "ref_per_token_logps: required"
    ),
    "dr_grpo without length": Case(
        "GrpoLoss", lambda: grpo(loss_type="dr_grpo"), pb.GrpoLossResponse, "max_completion_length"
    ),
    "grpo advantages shape": Case(
        "GrpoLoss", lambda: grpo(advantages=f64(1.0)), pb.GrpoLossResponse, "advantages.shape"
    ),
    "grpo mask shape": Case(
        "GrpoLoss", lambda: grpo(mask=f64_matrix(3, 2)), pb.GrpoLossResponse, "mask.shape"
    ),
    "grpo negative epsilon": Case(
        "GrpoLoss", lambda: grpo(epsilon_low=-0.1), pb.GrpoLossResponse, "epsilon_low"
    ),
    "groups do not divide": Case(
        "GroupAdvantages",
        lambda: pb.GroupAdvantagesRequest(rewards=f64(1.0, 2.0, 3.0), num_generations=2),
        pb.GroupAdvantagesResponse,
        "num_generations",
    ),
    "unknown reward scaling": Case(
        "GroupAdvantages",
        lambda: pb.GroupAdvantagesRequest(rewards=f64(1.0, 2.0), num_generations=2, scale_rewards="rank"),
        pb.GroupAdvantagesResponse,
        "scale_rewards",
    ),
    "infinite reward": Case(
        "GroupAdvantages",
        lambda: pb.GroupAdvantagesRequest(rewards=f64(1.0, float("inf")), num_generations=2),
        pb.GroupAdvantagesResponse,
        "rewards: contains infinity",
    ),
    "adamw beta2": Case(
        "AdamWStep",
        lambda: pb.AdamWStepRequest(params=f64(1.0), grads=f64(1.0), beta2=1.0),
        pb.AdamWStepResponse,
        "beta2",
    ),
    "adamw state length": Case(
        "AdamWStep",
        lambda: pb.AdamWStepRequest(params=f64(1.0, 2.0), grads=f64(1.0, 2.0), exp_avg=f64(0.0)),
        pb.AdamWStepResponse,
        "exp_avg.shape",
    ),
    "sgd nesterov": Case(
        "SgdStep",
        lambda: pb.SgdStepRequest(params=f64(1.0), grads=f64(1.0), lr=0.1, nesterov=True),
        pb.SgdStepResponse,
        "nesterov",
    ),
    "kl shapes": Case(
        "KlK3",
        lambda: pb.KlK3Request(logps=f64(1.0, 2.0), ref_logps=f64(1.0)),
        pb.KlK3Response,
        "ref_logps.shape",
    ),
}


def assert_still_serving(client: KernelClient, address: str) -> None:
    response = client.call("DpoLoss", dpo(), pb.DpoLossResponse)
    assert response.loss > 0
    assert health_status(address, service="kaizen.kernels.v1.KernelService") == SERVING


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_malformed_request_is_invalid_argument_naming_the_field(
    kernel_client: KernelClient, kernel_server: str, case: Case
) -> None:
    with pytest.raises(KernelInputError) as raised:
        kernel_client.call(case.method, case.request(), case.response)
    assert str(raised.value).startswith(case.field), str(raised.value)
    assert_still_serving(kernel_client, kernel_server)


def test_bench_is_refused_unless_enabled(kernel_client: KernelClient, kernel_server: str) -> None:
    request = pb.BenchRequest(dpo_loss=dpo(), iterations=1)
    with pytest.raises(KernelError, match="FAILED_PRECONDITION"):
        kernel_client.call("Bench", request, pb.BenchResponse)
    assert_still_serving(kernel_client, kernel_server)
