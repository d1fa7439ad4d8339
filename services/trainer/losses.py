"""The bridge from autograd to the kernel backend: the loss math runs in the backend, not in torch.

TRL computes its losses with torch ops on the policy's log-probs and lets autograd differentiate them.
Kaizen sends those log-probs to a :class:`~shared.kernels.backend.KernelBackend` instead (``torch`` in
process, or ``grpc`` to the Rust kernel service), which returns the loss *and* its gradient w.r.t. the
log-probs. Each op is wrapped in a ``torch.autograd.Function`` whose forward calls the backend and whose
backward hands those gradients to autograd, which carries them on through the model (the LoRA weights).

This is the part TRL does not do; everything around it (the forward passes, the reference, the metrics'
names) stays TRL's. The backend works in float32 or float64: log-probs in another dtype (bfloat16 under
autocast) are sent as float32 and their gradients come back in the log-probs' own dtype, on their device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from shared.kernels.backend import CrossEntropyResult, DpoLossResult, GrpoLossResult, KernelBackend

_WIRE_DTYPES = (torch.float32, torch.float64)


def _wire(tensor: torch.Tensor | None) -> torch.Tensor | None:
    """A detached copy the backend accepts: float32 unless already float32/float64."""
    if tensor is None:
        return None
    tensor = tensor.detach()
    if tensor.is_floating_point() and tensor.dtype not in _WIRE_DTYPES:
        tensor = tensor.float()
    return tensor


def _like(grad: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    return grad.to(device=reference.device, dtype=reference.dtype)


class _DpoLoss(torch.autograd.Function):  # type: ignore[misc]
    """loss = backend.dpo_loss(policy log-probs, reference log-probs); d loss / d policy log-probs from it."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        policy_chosen_logps: torch.Tensor,
        policy_rejected_logps: torch.Tensor,
        ref_chosen_logps: torch.Tensor,
        ref_rejected_logps: torch.Tensor,
        backend: KernelBackend,
        options: dict[str, Any],
        results: list[DpoLossResult],
    ) -> torch.Tensor:
        result = backend.dpo_loss(
            _wire(policy_chosen_logps),  # type: ignore[arg-type]
            _wire(policy_rejected_logps),  # type: ignore[arg-type]
            _wire(ref_chosen_logps.to(policy_chosen_logps.dtype)),  # type: ignore[arg-type]
            _wire(ref_rejected_logps.to(policy_rejected_logps.dtype)),  # type: ignore[arg-type]
            **options,
        )
        results.append(result)
        ctx.save_for_backward(
            _like(result.grad_policy_chosen_logps, policy_chosen_logps),
            _like(result.grad_policy_rejected_logps, policy_rejected_logps),
        )
        return result.loss.detach().to(device=policy_chosen_logps.device, dtype=torch.float32)

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        grad_chosen, grad_rejected = ctx.saved_tensors
        scale = grad_loss.to(grad_chosen.dtype)
        return scale * grad_chosen, scale * grad_rejected, None, None, None, None, None


def dpo_loss(
    backend: KernelBackend,
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float,
    loss_type: Sequence[str],
    loss_weights: Sequence[float] | None = None,
    label_smoothing: float = 0.0,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
) -> tuple[torch.Tensor, DpoLossResult]:
    """TRL's DPO loss on summed completion log-probs (N,), computed by ``backend``, differentiable.

    Returns the loss (a 0-dim float32 tensor on the log-probs' device) and the backend's result, whose
    rewards, margins and accuracies are what TRL logs.
    """
    options: dict[str, Any] = {
        "beta": beta,
        "loss_type": list(loss_type),
        "loss_weights": list(loss_weights) if loss_weights is not None else None,
        "label_smoothing": label_smoothing,
        "chosen_lengths": _wire(chosen_lengths.float()) if chosen_lengths is not None else None,
        "rejected_lengths": _wire(rejected_lengths.float()) if rejected_lengths is not None else None,
    }
    results: list[DpoLossResult] = []
    loss = _DpoLoss.apply(
        policy_chosen_logps,
        policy_rejected_logps,
        ref_chosen_logps.detach(),
        ref_rejected_logps.detach(),
        backend,
        options,
        results,
    )
    return loss, results[0]


class _GrpoLoss(torch.autograd.Function):  # type: ignore[misc]
    """loss = backend.grpo_loss(per-token log-probs, advantages, ...); d loss / d log-probs from it."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        per_token_logps: torch.Tensor,
        advantages: torch.Tensor,
        mask: torch.Tensor,
        backend: KernelBackend,
        options: dict[str, Any],
        results: list[GrpoLossResult],
    ) -> torch.Tensor:
        wire_dtype = _wire(per_token_logps).dtype  # type: ignore[union-attr]
        result = backend.grpo_loss(
            _wire(per_token_logps),  # type: ignore[arg-type]
            advantages.detach().to(wire_dtype),
            mask.detach().to(wire_dtype),
            **options,
        )
        results.append(result)
        ctx.save_for_backward(_like(result.grad_per_token_logps, per_token_logps))
        return result.loss.detach().to(device=per_token_logps.device, dtype=torch.float32)

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        (grad_logps,) = ctx.saved_tensors
        return grad_loss.to(grad_logps.dtype) * grad_logps, None, None, None, None, None


def grpo_loss(
    backend: KernelBackend,
    per_token_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    old_per_token_logps: torch.Tensor | None,
    ref_per_token_logps: torch.Tensor | None,
    loss_type: str,
    beta: float,
    epsilon_low: float,
    epsilon_high: float,
    delta: float | None,
    max_completion_length: int | None,
    normalizer: float | None,
    use_bias_correction_kl: bool,
) -> tuple[torch.Tensor, GrpoLossResult]:
    """TRL's GRPO loss on per-token log-probs (B, T), computed by ``backend``, differentiable.

    The grpo, bnpo and dr_grpo aggregations are *not* divided by the gradient accumulation steps here:
    the caller does that, as TRL does after its aggregation.
    """
    dtype = _wire(per_token_logps).dtype  # type: ignore[union-attr]
    options: dict[str, Any] = {
        "old_per_token_logps": _wire(old_per_token_logps.to(dtype))
        if old_per_token_logps is not None
        else None,
        "ref_per_token_logps": _wire(ref_per_token_logps.to(dtype))
        if ref_per_token_logps is not None
        else None,
        "loss_type": loss_type,
        "beta": beta,
        "epsilon_low": epsilon_low,
        "epsilon_high": epsilon_high,
        "delta": delta,
        "max_completion_length": max_completion_length,
        "normalizer": normalizer,
        "use_bias_correction_kl": use_bias_correction_kl,
    }
    results: list[GrpoLossResult] = []
    loss = _GrpoLoss.apply(per_token_logps, advantages, mask, backend, options, results)
    return loss, results[0]


class _CrossEntropy(torch.autograd.Function):  # type: ignore[misc]
    """Token cross-entropy of logits (N, V) computed by ``backend`` in chunks that fit one message."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        logits: torch.Tensor,
        labels: torch.Tensor,
        backend: KernelBackend,
        normalizer: float,
        max_rows: int,
        results: list[CrossEntropyResult],
    ) -> torch.Tensor:
        wire = _wire(logits)
        assert wire is not None
        total = torch.zeros((), dtype=torch.float64)
        grads = []
        for start in range(0, wire.size(0), max_rows):
            part = backend.cross_entropy(
                wire[start : start + max_rows], labels[start : start + max_rows], normalizer=normalizer
            )
            results.append(part)
            total += part.loss.detach().double().cpu()
            grads.append(_like(part.grad_logits, logits))
        ctx.save_for_backward(torch.cat(grads) if grads else torch.zeros_like(logits))
        return total.to(device=logits.device, dtype=torch.float32)

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        (grad_logits,) = ctx.saved_tensors
        return grad_loss.to(grad_logits.dtype) * grad_logits, None, None, None, None, None


def cross_entropy(
    backend: KernelBackend,
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    normalizer: float,
    max_message_bytes: int,
) -> torch.Tensor:
    """Summed token cross-entropy of ``logits`` (N, V) at ``labels`` (N,, -100 ignored) / ``normalizer``.

    The rows go to the backend in chunks small enough for one message each way (the kernel service's
    ``max_message_bytes``); every chunk is divided by the same normalizer, so the chunks' losses add up.
    """
    itemsize = 8 if logits.dtype == torch.float64 else 4  # what travels: float32 unless float64
    max_rows = max(1, int(max_message_bytes * 0.9) // (logits.size(-1) * itemsize))
    results: list[CrossEntropyResult] = []
    loss: torch.Tensor = _CrossEntropy.apply(
        logits, labels.detach().to(torch.int64), backend, float(normalizer), max_rows, results
    )
    return loss
