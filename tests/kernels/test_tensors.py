"""Wire conversion of tensors and arrays: dtypes, byte order, shapes, refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shared.kernels._proto import kernels_pb2 as pb
from shared.kernels.errors import KernelError, KernelInputError
from shared.kernels.tensors import from_wire, from_wire_many, to_numpy, to_wire


@pytest.mark.parametrize(
    ("dtype", "wire"),
    [(torch.float32, pb.DTYPE_FLOAT32), (torch.float64, pb.DTYPE_FLOAT64), (torch.int64, pb.DTYPE_INT64)],
)
def test_torch_tensors_round_trip(dtype: torch.dtype, wire: int) -> None:
    value = (torch.arange(24, dtype=torch.float64).reshape(2, 3, 4) - 7.5).to(dtype)
    message = to_wire(value, "x")
    assert message.dtype == wire
    assert list(message.shape) == [2, 3, 4]
    assert len(message.data) == 24 * value.element_size()
    back = from_wire(message)
    assert back.dtype == dtype and torch.equal(back, value)
    back.add_(1)  # writable, and not aliasing the message
    assert torch.equal(from_wire(message), value)


def test_non_contiguous_views_and_gradients_travel_as_values() -> None:
    base = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    view = base.t()[1:3]
    assert torch.equal(from_wire(to_wire(view, "x")), view.detach())


def test_numpy_arrays_of_either_byte_order_arrive_little_endian() -> None:
    big: np.ndarray = np.arange(5, dtype=">f8")
    message = to_wire(big, "x")
    assert message.data == np.arange(5, dtype="<f8").tobytes()
    assert to_numpy(message).dtype == np.dtype("float64")


def test_narrow_integers_are_widened_to_int64() -> None:
    mask = torch.tensor([[1, 0], [0, 1]], dtype=torch.int32)
    assert from_wire(to_wire(mask, "mask")).dtype == torch.int64
    assert from_wire(to_wire(torch.tensor([True, False]), "mask")).tolist() == [1, 0]
    assert to_wire(np.array([3, 4], dtype=np.int16), "labels").dtype == pb.DTYPE_INT64


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.complex64])
def test_other_dtypes_are_refused_naming_the_field(dtype: torch.dtype) -> None:
    with pytest.raises(KernelInputError, match=r"^logits\.dtype"):
        to_wire(torch.zeros(2, dtype=dtype), "logits")


def test_scalars_keep_an_empty_shape() -> None:
    message = to_wire(torch.tensor(2.5, dtype=torch.float64), "x")
    assert list(message.shape) == []
    assert from_wire(message).item() == 2.5


def test_many_small_tensors_decode_at_once_and_stay_independent() -> None:
    values = [
        torch.arange(6, dtype=torch.float32).reshape(2, 3),
        torch.tensor([1.5, -2.0]),
        torch.tensor(7.0),
    ]
    decoded = from_wire_many([to_wire(value, "x") for value in values])
    for got, want in zip(decoded, values, strict=True):
        assert got.shape == want.shape and torch.equal(got, want)
    decoded[1].fill_(0)
    assert torch.equal(decoded[0], values[0]) and decoded[2].item() == 7.0
    mixed = from_wire_many([to_wire(torch.ones(2, dtype=torch.float64), "a"), to_wire(torch.ones(2), "b")])
    assert [t.dtype for t in mixed] == [torch.float64, torch.float32]


def test_a_byte_length_that_does_not_fit_the_shape_is_an_error() -> None:
    bad = pb.Tensor(shape=[3], dtype=pb.DTYPE_FLOAT32, data=b"\0" * 8)
    with pytest.raises(KernelError):
        from_wire(bad)
    with pytest.raises(KernelError):
        from_wire_many([bad, to_wire(torch.ones(2), "x")])
