"""The kernel backend interface: the trainer's loss and optimizer math, forward values and gradients.

Two implementations, chosen by configuration (``KAIZEN_KERNELS__BACKEND``, see :func:`make_backend`):

- ``torch`` (:class:`~shared.kernels.torch_backend.TorchBackend`): in process, TRL's own formulas in
  torch, gradients by ``torch.autograd``. It is the reference the service is tested against.
- ``grpc`` (:class:`~shared.kernels.grpc_backend.GrpcBackend`): the Rust kernel service.

Every op takes and returns CPU or device torch tensors (results come back on the CPU for ``grpc``) in
the dtype of its float inputs, float32 or float64; the two backends agree to 1e-5 relative in float64
and 1e-4 in float32. Ops with a scalar loss return the loss and its gradients w.r.t. the inputs the
trainer differentiates; ops with a tensor output take an optional ``grad_output`` and then also return
its vector-Jacobian product. So a trainer wraps an op in a ``torch.autograd.Function`` like this::

    class DpoLoss(torch.autograd.Function):
        @staticmethod
        def forward(ctx, chosen, rejected, ref_chosen, ref_rejected):
            out = backend.dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=0.1)
            ctx.save_for_backward(out.grad_policy_chosen_logps, out.grad_policy_rejected_logps)
            return out.loss

        @staticmethod
        def backward(ctx, grad_loss):
            grad_chosen, grad_rejected = ctx.saved_tensors
            return grad_loss * grad_chosen, grad_loss * grad_rejected, None, None

Semantics follow TRL 1.x (``DPOTrainer``, ``GRPOTrainer``) and torch (``torch.optim.AdamW``/``SGD``);
each method documents what it computes and where it departs from them.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from shared.kernels.errors import KernelInputError
from shared.settings import KaizenSettings, KernelSettings

DPO_LOSS_TYPES = ("sigmoid", "hinge", "ipo", "robust")
GRPO_LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")
SCALE_REWARDS = ("group", "batch", "none")


@dataclass(frozen=True, slots=True)
class SoftmaxResult:
    output: torch.Tensor
    """softmax or log_softmax of the logits over the last dimension."""
    grad_logits: torch.Tensor | None
    """grad_output's vector-Jacobian product w.r.t. the logits; None without grad_output."""


@dataclass(frozen=True, slots=True)
class CrossEntropyResult:
    loss: torch.Tensor
    """0-dim: summed token losses / normalizer (default: the number of non-ignored labels, at least 1)."""
    grad_logits: torch.Tensor
    num_tokens: int
    """Labels that are not ignore_index."""


@dataclass(frozen=True, slots=True)
class SelectiveLogSoftmaxResult:
    logps: torch.Tensor
    """log_softmax(logits / temperature) at each label; the shape of labels."""
    grad_logits: torch.Tensor | None


@dataclass(frozen=True, slots=True)
class DpoLossResult:
    loss: torch.Tensor
    grad_policy_chosen_logps: torch.Tensor
    grad_policy_rejected_logps: torch.Tensor
    chosen_rewards: torch.Tensor
    """beta * (policy_chosen - ref_chosen), per pair."""
    rejected_rewards: torch.Tensor
    margins: torch.Tensor
    accuracies: torch.Tensor
    """1.0 where chosen_rewards > rejected_rewards."""

    def metrics(self) -> dict[str, float]:
        """The reward metrics as TRL's DPOTrainer logs them (means over the pairs)."""
        return {
            "rewards/chosen": self.chosen_rewards.mean().item(),
            "rewards/rejected": self.rejected_rewards.mean().item(),
            "rewards/accuracies": self.accuracies.mean().item(),
            "rewards/margins": self.margins.mean().item(),
        }


@dataclass(frozen=True, slots=True)
class GroupAdvantagesResult:
    advantages: torch.Tensor
    group_mean: torch.Tensor
    """Each completion's group nan-mean reward."""
    std: torch.Tensor
    """The std each advantage was scaled by (before + 1e-4); 0 where TRL uses none."""
    frac_reward_zero_std: float


@dataclass(frozen=True, slots=True)
class GrpoLossResult:
    loss: torch.Tensor
    grad_per_token_logps: torch.Tensor
    clip_ratio_low_mean: float
    clip_ratio_high_mean: float
    clip_ratio_region_mean: float
    clip_ratio_low_min: float
    """NaN when every completion is masked out (TRL's nanmin of per-sequence means)."""
    clip_ratio_high_max: float
    kl_mean: float | None
    """Masked mean of the (bias-corrected) k3 KL; None when beta is 0."""

    def metrics(self) -> dict[str, float]:
        """The clip (and KL) metrics under the names TRL's GRPOTrainer logs."""
        metrics = {
            "clip_ratio/low_mean": self.clip_ratio_low_mean,
            "clip_ratio/high_mean": self.clip_ratio_high_mean,
            "clip_ratio/region_mean": self.clip_ratio_region_mean,
            "clip_ratio/low_min": self.clip_ratio_low_min,
            "clip_ratio/high_max": self.clip_ratio_high_max,
        }
        if self.kl_mean is not None:
            metrics["kl"] = self.kl_mean
        return metrics


@dataclass(frozen=True, slots=True)
class KlK3Result:
    kl: torch.Tensor
    """exp(ref - logp) - (ref - logp) - 1 per element."""
    grad_logps: torch.Tensor | None


@dataclass(frozen=True, slots=True)
class AdamWState:
    exp_avg: torch.Tensor
    exp_avg_sq: torch.Tensor
    max_exp_avg_sq: torch.Tensor | None
    """Only with amsgrad."""
    step: int
    """Steps taken so far."""


@dataclass(frozen=True, slots=True)
class AdamWResult:
    params: torch.Tensor
    state: AdamWState


@dataclass(frozen=True, slots=True)
class SgdResult:
    params: torch.Tensor
    momentum_buffer: torch.Tensor | None
    """None when momentum is 0."""


class KernelBackend(abc.ABC):
    """Where the trainer's loss and optimizer math runs. See the module docstring for the contract."""

    name: str

    @abc.abstractmethod
    def softmax(self, logits: torch.Tensor, grad_output: torch.Tensor | None = None) -> SoftmaxResult:
        """softmax over the last dimension."""

    @abc.abstractmethod
    def log_softmax(self, logits: torch.Tensor, grad_output: torch.Tensor | None = None) -> SoftmaxResult:
        """log_softmax over the last dimension."""

    @abc.abstractmethod
    def cross_entropy(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        *,
        ignore_index: int = -100,
        normalizer: float | None = None,
    ) -> CrossEntropyResult:
        """Token cross-entropy of ``logits`` (..., V) against ``labels`` (...), and d loss / d logits.

        The summed losses of the labels that are not ``ignore_index`` are divided by ``normalizer``
        (transformers' ``num_items_in_batch``) or, when it is None, by their count; an all-ignored
        batch gives 0 (torch's ``reduction="mean"`` would give NaN). Labels are not shifted here.
        """

    @abc.abstractmethod
    def selective_log_softmax(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        grad_output: torch.Tensor | None = None,
        *,
        temperature: float = 1.0,
    ) -> SelectiveLogSoftmaxResult:
        """TRL's ``selective_log_softmax``: log_softmax(logits / temperature) gathered at ``labels``."""

    @abc.abstractmethod
    def dpo_loss(
        self,
        policy_chosen_logps: torch.Tensor,
        policy_rejected_logps: torch.Tensor,
        ref_chosen_logps: torch.Tensor,
        ref_rejected_logps: torch.Tensor,
        *,
        beta: float = 0.1,
        loss_type: str | Sequence[str] = "sigmoid",
        loss_weights: Sequence[float] | None = None,
        label_smoothing: float = 0.0,
        chosen_lengths: torch.Tensor | None = None,
        rejected_lengths: torch.Tensor | None = None,
    ) -> DpoLossResult:
        """TRL's DPO loss (reverse KL) on summed completion log-probs, shape (N,) each.

        ``loss_type`` is one of sigmoid, hinge, ipo, robust or a list of them combined with
        ``loss_weights`` as TRL does (``sum_k w_k * mean(loss_k)``). As in TRL 1.x, ``label_smoothing``
        only affects robust (where it must lie in [0, 0.5)); ipo needs the completion token counts
        (TRL's ``completion_mask.sum(1)``), divides the log-ratios by them (at least 1) and targets
        ``1 / (2 beta)``. Gradients are w.r.t. the policy log-probs.
        """

    @abc.abstractmethod
    def group_advantages(
        self,
        rewards: torch.Tensor,
        *,
        num_generations: int,
        scale_rewards: str | bool = "group",
    ) -> GroupAdvantagesResult:
        """TRL's GRPO advantages from summed rewards (N,), N a multiple of ``num_generations``.

        ``(r - group mean) / (std + 1e-4)`` with the Bessel-corrected std of the group (``group``, or
        True) or of the batch (``batch``), or ``r - group mean`` (``none``, or False). NaN rewards mark
        unscorable completions: left out of the statistics, and every NaN advantage becomes 0. The
        arithmetic is float64 whatever the rewards' dtype, and a group of equal rewards has exactly that
        mean, so its advantages and std are exactly 0 (TRL's arithmetic can leave noise of about
        ulp(r) / 1e-4 there).
        """

    @abc.abstractmethod
    def grpo_loss(
        self,
        per_token_logps: torch.Tensor,
        advantages: torch.Tensor,
        mask: torch.Tensor,
        *,
        old_per_token_logps: torch.Tensor | None = None,
        ref_per_token_logps: torch.Tensor | None = None,
        loss_type: str = "dapo",
        beta: float = 0.0,
        epsilon_low: float = 0.2,
        epsilon_high: float | None = None,
        delta: float | None = None,
        max_completion_length: int | None = None,
        normalizer: float | None = None,
        use_bias_correction_kl: bool = False,
    ) -> GrpoLossResult:
        """TRL's GRPO loss (token-level importance sampling) and d loss / d per_token_logps.

        ``per_token_logps``, ``mask`` and the optional old/ref log-probs are (B, T); ``advantages`` is
        (B,) or (B, T). Without ``old_per_token_logps`` the ratio is 1 (on-policy, TRL's
        ``per_token_logps.detach()``). ``beta`` != 0 adds the k3 KL to ``ref_per_token_logps``.
        Aggregations: grpo, bnpo, dr_grpo (needs ``max_completion_length``) and dapo (divides by
        ``normalizer``, default ``max(mask.sum(), 1)``; TRL's is ``num_items_in_batch / num_processes *
        grad_accum / steps_per_generation``). TRL then divides grpo/bnpo/dr_grpo by the gradient
        accumulation steps: the caller does that.
        """

    @abc.abstractmethod
    def kl_k3(
        self, logps: torch.Tensor, ref_logps: torch.Tensor, grad_output: torch.Tensor | None = None
    ) -> KlK3Result:
        """The per-element k3 KL estimate ``exp(ref - logp) - (ref - logp) - 1``."""

    @abc.abstractmethod
    def adamw_step(
        self,
        params: torch.Tensor,
        grads: torch.Tensor,
        state: AdamWState | None = None,
        *,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        maximize: bool = False,
    ) -> AdamWResult:
        """One ``torch.optim.AdamW`` step on a flat buffer; ``state`` None means the first step."""

    @abc.abstractmethod
    def sgd_step(
        self,
        params: torch.Tensor,
        grads: torch.Tensor,
        momentum_buffer: torch.Tensor | None = None,
        *,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        maximize: bool = False,
    ) -> SgdResult:
        """One ``torch.optim.SGD`` step on a flat buffer; ``momentum_buffer`` None means the first step."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Releases what the backend holds (a channel)."""


def dpo_loss_types(
    loss_type: str | Sequence[str], loss_weights: Sequence[float] | None
) -> list[tuple[str, float]]:
    """Normalizes DPO loss types and weights, refusing unknown types as INVALID_ARGUMENT would."""
    types = [loss_type] if isinstance(loss_type, str) else list(loss_type)
    if not types:
        types = ["sigmoid"]
    for name in types:
        if name not in DPO_LOSS_TYPES:
            raise KernelInputError(
                f"loss_types: unknown loss type {name!r} (expected sigmoid, hinge, ipo or robust)"
            )
    weights = [1.0] * len(types) if loss_weights is None else [float(w) for w in loss_weights]
    if len(weights) != len(types):
        raise KernelInputError(f"loss_weights: {len(weights)} weights for {len(types)} loss types")
    return list(zip(types, weights, strict=True))


def scale_rewards_mode(scale_rewards: str | bool) -> str:
    """TRL maps True to group and False to none."""
    if scale_rewards is True:
        return "group"
    if scale_rewards is False:
        return "none"
    if scale_rewards not in SCALE_REWARDS:
        raise KernelInputError(
            f"scale_rewards: unknown mode {scale_rewards!r} (expected group, batch or none)"
        )
    return scale_rewards


def make_backend(settings: KernelSettings | None = None) -> KernelBackend:
    """The backend the configuration names (``KAIZEN_KERNELS__BACKEND``: torch or grpc)."""
    settings = settings if settings is not None else KaizenSettings().kernels
    if settings.backend == "grpc":
        from shared.kernels.grpc_backend import GrpcBackend

        return GrpcBackend.from_settings(settings)
    from shared.kernels.torch_backend import TorchBackend

    return TorchBackend()
