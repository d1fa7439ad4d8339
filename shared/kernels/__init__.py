"""The trainer's loss and optimizer math behind one interface, in process (torch) or in the Rust kernel
service (grpc). Pick with ``KAIZEN_KERNELS__BACKEND``::

    from shared.kernels import make_backend

    backend = make_backend()  # KaizenSettings().kernels
    out = backend.dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=0.1)
    out.loss, out.grad_policy_chosen_logps, out.metrics()

See :mod:`shared.kernels.backend` for the contract of every op.
"""

from shared.kernels.backend import (
    AdamWResult,
    AdamWState,
    CrossEntropyResult,
    DpoLossResult,
    GroupAdvantagesResult,
    GrpoLossResult,
    KernelBackend,
    KlK3Result,
    SelectiveLogSoftmaxResult,
    SgdResult,
    SoftmaxResult,
    make_backend,
)
from shared.kernels.errors import KernelError, KernelInputError, KernelTimeoutError, KernelUnavailableError

__all__ = [
    "AdamWResult",
    "AdamWState",
    "CrossEntropyResult",
    "DpoLossResult",
    "GroupAdvantagesResult",
    "GrpoLossResult",
    "KernelBackend",
    "KernelError",
    "KernelInputError",
    "KernelTimeoutError",
    "KernelUnavailableError",
    "KlK3Result",
    "SelectiveLogSoftmaxResult",
    "SgdResult",
    "SoftmaxResult",
    "make_backend",
]
