"""Tensors on the wire: ``{shape, dtype, little-endian bytes}`` to and from torch tensors and numpy arrays.

Only float32, float64 and int64 travel; integer tensors of other widths (labels, masks) are widened to
int64, anything else is refused with a :class:`KernelInputError` naming the field.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch

from shared.kernels._proto import kernels_pb2 as pb
from shared.kernels.errors import KernelError, KernelInputError

_WIRE_DTYPES: dict[np.dtype[np.generic], pb.Dtype] = {
    np.dtype("<f4"): pb.DTYPE_FLOAT32,
    np.dtype("<f8"): pb.DTYPE_FLOAT64,
    np.dtype("<i8"): pb.DTYPE_INT64,
}
_NUMPY_DTYPES: dict[int, np.dtype[np.generic]] = {int(code): dtype for dtype, code in _WIRE_DTYPES.items()}
_TORCH_WIRE: dict[torch.dtype, pb.Dtype] = {
    torch.float32: pb.DTYPE_FLOAT32,
    torch.float64: pb.DTYPE_FLOAT64,
    torch.int64: pb.DTYPE_INT64,
}
_WIRE_TORCH: dict[int, torch.dtype] = {int(code): dtype for dtype, code in _TORCH_WIRE.items()}
_LITTLE_ENDIAN = sys.byteorder == "little"


def _as_wire_array(value: torch.Tensor | npt.NDArray[np.generic], field: str) -> npt.NDArray[np.generic]:
    if isinstance(value, torch.Tensor):
        if value.dtype not in (torch.float32, torch.float64) and value.is_floating_point():
            raise KernelInputError(f"{field}.dtype: {value.dtype} is not supported (float32 or float64)")
        if value.dtype in (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32):
            value = value.to(torch.int64)
        array: npt.NDArray[np.generic] = value.detach().cpu().contiguous().numpy()
    else:
        array = np.asarray(value)
        if array.dtype.kind in "biu" and array.dtype != np.int64:
            array = array.astype(np.int64)
    little = array.dtype.newbyteorder("<")
    if little not in _WIRE_DTYPES:
        raise KernelInputError(f"{field}.dtype: {array.dtype} is not supported (float32, float64 or int64)")
    array = array.astype(little, copy=False)
    # not np.ascontiguousarray: it turns a 0-d array into shape (1,)
    return array if array.flags.c_contiguous else array.copy(order="C")


def to_wire(value: torch.Tensor | npt.NDArray[np.generic], field: str) -> pb.Tensor:
    """The wire form of a tensor or array; ``field`` names it in errors."""
    if _LITTLE_ENDIAN and isinstance(value, torch.Tensor) and value.dtype in _TORCH_WIRE:
        # The common case, kept to the fewest torch calls: it is on the path of every kernel call.
        tensor = value.detach() if value.requires_grad else value
        if tensor.device.type != "cpu":
            tensor = tensor.cpu()
        if not tensor.is_contiguous():
            tensor = tensor.contiguous()
        return pb.Tensor(shape=tensor.shape, dtype=_TORCH_WIRE[tensor.dtype], data=tensor.numpy().tobytes())
    array = _as_wire_array(value, field)
    return pb.Tensor(shape=array.shape, dtype=_WIRE_DTYPES[array.dtype], data=array.tobytes())


def to_numpy(tensor: pb.Tensor) -> npt.NDArray[np.generic]:
    """A native-endian, writable numpy array holding a wire tensor."""
    dtype = _NUMPY_DTYPES.get(tensor.dtype)
    if dtype is None:
        raise KernelInputError(f"dtype: unknown wire dtype {tensor.dtype}")
    flat = np.frombuffer(tensor.data, dtype=dtype)
    native: npt.NDArray[np.generic] = flat.astype(dtype.newbyteorder("="))  # a copy: writable, native order
    return native.reshape(tuple(tensor.shape))


def from_wire(tensor: pb.Tensor) -> torch.Tensor:
    """A CPU torch tensor holding a wire tensor."""
    dtype = _WIRE_TORCH.get(tensor.dtype)
    shape = tuple(tensor.shape)
    if _LITTLE_ENDIAN and dtype is not None and tensor.data:
        if len(tensor.data) != math.prod(shape) * dtype.itemsize:
            raise KernelError(f"a {len(tensor.data)}-byte wire tensor cannot have shape {list(shape)}")
        flat = torch.frombuffer(bytearray(tensor.data), dtype=dtype)
        return flat if len(shape) == 1 else flat.reshape(shape)
    return torch.from_numpy(to_numpy(tensor))


_BATCH_MAX_BYTES = 1 << 16


def from_wire_many(tensors: Sequence[pb.Tensor]) -> list[torch.Tensor]:
    """:func:`from_wire` of each; small tensors of one dtype are decoded in one go (fewer torch calls,
    which is most of the cost of a small response), as views of one buffer."""
    dtypes = {tensor.dtype for tensor in tensors}
    total = sum(len(tensor.data) for tensor in tensors)
    dtype = _WIRE_TORCH.get(next(iter(dtypes))) if len(dtypes) == 1 else None
    if not _LITTLE_ENDIAN or dtype is None or total > _BATCH_MAX_BYTES or len(tensors) < 2:
        return [from_wire(tensor) for tensor in tensors]
    shapes = [tuple(tensor.shape) for tensor in tensors]
    sizes = [math.prod(shape) for shape in shapes]
    for tensor, size in zip(tensors, sizes, strict=True):
        if len(tensor.data) != size * dtype.itemsize:
            raise KernelError(f"a {len(tensor.data)}-byte wire tensor cannot have shape {list(tensor.shape)}")
    flat = torch.frombuffer(bytearray(b"".join(tensor.data for tensor in tensors)), dtype=dtype)
    parts = flat.split(sizes)
    return [
        part if len(shape) == 1 else part.reshape(shape) for part, shape in zip(parts, shapes, strict=True)
    ]
