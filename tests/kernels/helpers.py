"""Comparison and data helpers for the kernel parity tests.

Parity means: every element of the service's result is within ``rtol * (|expected| + scale)`` of the
torch backend's, with rtol 1e-5 for float64 and 1e-4 for float32, and ``scale`` the largest magnitude
in the expected tensor (or, where the op cancels large terms, the magnitude of those terms). NaN must
match NaN.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import strategies as st

RTOL = {torch.float32: 1e-4, torch.float64: 1e-5}
DTYPES = st.sampled_from([torch.float32, torch.float64])


def assert_close(
    actual: torch.Tensor | None, expected: torch.Tensor | None, what: str, scale: float | None = None
) -> None:
    assert actual is not None and expected is not None, f"{what}: missing ({actual=}, {expected=})"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    rtol = RTOL[expected.dtype]
    a, e = actual.double(), expected.double()
    both_nan = torch.isnan(a) & torch.isnan(e)
    finite = e[~torch.isnan(e)]
    if scale is None:
        scale = finite.abs().max().item() if finite.numel() else 0.0
    error = (a - e).abs()
    bad = ~both_nan & ~(error <= rtol * (e.abs() + scale))
    if bool(bad.any()):
        index = int(torch.nonzero(bad.reshape(-1))[0])
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.numel()} elements differ, e.g. flat index {index}: "
            f"{a.reshape(-1)[index].item()!r} vs {e.reshape(-1)[index].item()!r} "
            f"(scale {scale:g}, rtol {rtol:g})"
        )


def conditioning(max_abs_logit: float, dtype: torch.dtype) -> float:
    """How much a softmax over logits of this magnitude amplifies rounding, relative to ``RTOL``.

    exp(x - logsumexp(x)) carries an absolute error of about ulp(max |x|) however it is computed, because
    logsumexp rounds at the scale of the logits (TRL's selective_log_softmax subtracts it). With float32
    logits near 1e4 that is ~1e-3, above RTOL; tolerances on probabilities are widened by this factor.
    """
    unit_roundoff = float(torch.finfo(dtype).eps) / 2
    return max(1.0, 4 * max_abs_logit * unit_roundoff / RTOL[dtype])


def assert_close_float(
    actual: float, expected: float, dtype: torch.dtype, what: str, scale: float = 0.0
) -> None:
    if math.isnan(expected):
        assert math.isnan(actual), f"{what}: {actual!r} vs NaN"
        return
    rtol = RTOL[dtype]
    assert abs(actual - expected) <= rtol * (abs(expected) + scale), f"{what}: {actual!r} vs {expected!r}"


def float_arrays(
    shape: tuple[int, ...], low: float = -1.0, high: float = 1.0
) -> st.SearchStrategy[np.ndarray]:
    """Arrays of the shape with values in [low, high] that float32 holds exactly: 0s and the bounds
    included, magnitudes below 1e-6 flushed to 0 so that no float32 result is subnormal."""
    elements = st.floats(low, high, width=32, allow_nan=False, allow_infinity=False, allow_subnormal=False)
    size = math.prod(shape)
    values = st.lists(elements.map(lambda x: 0.0 if abs(x) < 1e-6 else x), min_size=size, max_size=size)
    return values.map(lambda v: np.array(v, dtype=np.float64).reshape(shape))


def tensor(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(dtype)
