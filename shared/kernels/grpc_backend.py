"""The kernel backend that calls the Rust kernel service over gRPC.

Inputs travel as float32/float64 (integer masks and lengths are sent in the dtype of the log-probs they
go with); results come back as CPU tensors in the request's dtype. Invalid input raises
:class:`KernelInputError` with the server's message, which starts with the field at fault.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from shared.kernels._proto import kernels_pb2 as pb
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
    dpo_loss_types,
    scale_rewards_mode,
)
from shared.kernels.client import KernelClient
from shared.kernels.tensors import from_wire, from_wire_many, to_wire
from shared.settings import KernelSettings


def _optional(value: torch.Tensor | None, field: str) -> pb.Tensor | None:
    return None if value is None else to_wire(value, field)


def _like(value: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """An integer or boolean mask or count in the float dtype of the tensor it goes with."""
    return value if value.is_floating_point() else value.to(reference.dtype)


def _optional_like(value: torch.Tensor | None, reference: torch.Tensor, field: str) -> pb.Tensor | None:
    return None if value is None else to_wire(_like(value, reference), field)


def _maybe(response: Any, field: str) -> torch.Tensor | None:
    """The tensor in an optional response field, or None when the server left it unset."""
    return from_wire(getattr(response, field)) if response.HasField(field) else None


def _scalar(value: float, like: torch.Tensor) -> torch.Tensor:
    return torch.scalar_tensor(value, dtype=like.dtype)


class GrpcBackend(KernelBackend):
    """Runs every op in the kernel service through ``client``."""

    name = "grpc"

    def __init__(self, client: KernelClient) -> None:
        self.client = client

    @classmethod
    def from_settings(cls, settings: KernelSettings) -> GrpcBackend:
        return cls(KernelClient.from_settings(settings))

    def close(self) -> None:
        self.client.close()

    def _softmax(self, method: str, logits: torch.Tensor, grad_output: torch.Tensor | None) -> SoftmaxResult:
        request = pb.SoftmaxRequest(
            logits=to_wire(logits, "logits"), grad_output=_optional(grad_output, "grad_output")
        )
        response = self.client.call(method, request, pb.SoftmaxResponse)
        return SoftmaxResult(from_wire(response.output), _maybe(response, "grad_logits"))

    def softmax(self, logits: torch.Tensor, grad_output: torch.Tensor | None = None) -> SoftmaxResult:
        return self._softmax("Softmax", logits, grad_output)

    def log_softmax(self, logits: torch.Tensor, grad_output: torch.Tensor | None = None) -> SoftmaxResult:
        return self._softmax("LogSoftmax", logits, grad_output)

    def cross_entropy(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        *,
        ignore_index: int = -100,
        normalizer: float | None = None,
    ) -> CrossEntropyResult:
        request = pb.CrossEntropyRequest(
            logits=to_wire(logits, "logits"),
            labels=to_wire(labels, "labels"),
            ignore_index=ignore_index,
            normalizer=normalizer,
        )
        response = self.client.call("CrossEntropy", request, pb.CrossEntropyResponse)
        return CrossEntropyResult(
            loss=_scalar(response.loss, logits),
            grad_logits=from_wire(response.grad_logits),
            num_tokens=int(response.num_tokens),
        )

    def selective_log_softmax(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        grad_output: torch.Tensor | None = None,
        *,
        temperature: float = 1.0,
    ) -> SelectiveLogSoftmaxResult:
        request = pb.SelectiveLogSoftmaxRequest(
            logits=to_wire(logits, "logits"),
            labels=to_wire(labels, "labels"),
            grad_output=_optional(grad_output, "grad_output"),
            temperature=temperature,
        )
        response = self.client.call("SelectiveLogSoftmax", request, pb.SelectiveLogSoftmaxResponse)
        return SelectiveLogSoftmaxResult(from_wire(response.logps), _maybe(response, "grad_logits"))

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
        losses = dpo_loss_types(loss_type, loss_weights)
        request = pb.DpoLossRequest(
            policy_chosen_logps=to_wire(policy_chosen_logps, "policy_chosen_logps"),
            policy_rejected_logps=to_wire(policy_rejected_logps, "policy_rejected_logps"),
            ref_chosen_logps=to_wire(ref_chosen_logps, "ref_chosen_logps"),
            ref_rejected_logps=to_wire(ref_rejected_logps, "ref_rejected_logps"),
            beta=beta,
            loss_types=[name for name, _ in losses],
            loss_weights=[weight for _, weight in losses],
            label_smoothing=label_smoothing,
            chosen_lengths=_optional_like(chosen_lengths, policy_chosen_logps, "chosen_lengths"),
            rejected_lengths=_optional_like(rejected_lengths, policy_chosen_logps, "rejected_lengths"),
        )
        response = self.client.call("DpoLoss", request, pb.DpoLossResponse)
        grad_chosen, grad_rejected, chosen_rewards, rejected_rewards, margins, accuracies = from_wire_many(
            [
                response.grad_policy_chosen_logps,
                response.grad_policy_rejected_logps,
                response.chosen_rewards,
                response.rejected_rewards,
                response.margins,
                response.accuracies,
            ]
        )
        return DpoLossResult(
            loss=_scalar(response.loss, policy_chosen_logps),
            grad_policy_chosen_logps=grad_chosen,
            grad_policy_rejected_logps=grad_rejected,
            chosen_rewards=chosen_rewards,
            rejected_rewards=rejected_rewards,
            margins=margins,
            accuracies=accuracies,
        )

    def group_advantages(
        self,
        rewards: torch.Tensor,
        *,
        num_generations: int,
        scale_rewards: str | bool = "group",
    ) -> GroupAdvantagesResult:
        request = pb.GroupAdvantagesRequest(
            rewards=to_wire(rewards, "rewards"),
            num_generations=max(num_generations, 0),
            scale_rewards=scale_rewards_mode(scale_rewards),
        )
        response = self.client.call("GroupAdvantages", request, pb.GroupAdvantagesResponse)
        advantages, group_mean, std = from_wire_many([response.advantages, response.group_mean, response.std])
        return GroupAdvantagesResult(
            advantages=advantages,
            group_mean=group_mean,
            std=std,
            frac_reward_zero_std=response.frac_reward_zero_std,
        )

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
        request = pb.GrpoLossRequest(
            per_token_logps=to_wire(per_token_logps, "per_token_logps"),
            advantages=to_wire(advantages, "advantages"),
            mask=to_wire(_like(mask, per_token_logps), "mask"),
            old_per_token_logps=_optional(old_per_token_logps, "old_per_token_logps"),
            ref_per_token_logps=_optional(ref_per_token_logps, "ref_per_token_logps"),
            loss_type=loss_type,
            beta=beta,
            epsilon_low=epsilon_low,
            epsilon_high=epsilon_high,
            delta=delta,
            max_completion_length=max(max_completion_length or 0, 0),
            normalizer=normalizer,
            use_bias_correction_kl=use_bias_correction_kl,
        )
        response = self.client.call("GrpoLoss", request, pb.GrpoLossResponse)
        return GrpoLossResult(
            loss=_scalar(response.loss, per_token_logps),
            grad_per_token_logps=from_wire(response.grad_per_token_logps),
            clip_ratio_low_mean=response.clip_ratio_low_mean,
            clip_ratio_high_mean=response.clip_ratio_high_mean,
            clip_ratio_region_mean=response.clip_ratio_region_mean,
            clip_ratio_low_min=response.clip_ratio_low_min,
            clip_ratio_high_max=response.clip_ratio_high_max,
            kl_mean=response.kl_mean if response.HasField("kl_mean") else None,
        )

    def kl_k3(
        self, logps: torch.Tensor, ref_logps: torch.Tensor, grad_output: torch.Tensor | None = None
    ) -> KlK3Result:
        request = pb.KlK3Request(
            logps=to_wire(logps, "logps"),
            ref_logps=to_wire(ref_logps, "ref_logps"),
            grad_output=_optional(grad_output, "grad_output"),
        )
        response = self.client.call("KlK3", request, pb.KlK3Response)
        return KlK3Result(from_wire(response.kl), _maybe(response, "grad_logps"))

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
        request = pb.AdamWStepRequest(
            params=to_wire(params, "params"),
            grads=to_wire(grads, "grads"),
            exp_avg=None if state is None else to_wire(state.exp_avg, "exp_avg"),
            exp_avg_sq=None if state is None else to_wire(state.exp_avg_sq, "exp_avg_sq"),
            max_exp_avg_sq=None if state is None else _optional(state.max_exp_avg_sq, "max_exp_avg_sq"),
            step=0 if state is None else state.step,
            lr=lr,
            beta1=betas[0],
            beta2=betas[1],
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
        )
        response = self.client.call("AdamWStep", request, pb.AdamWStepResponse)
        return AdamWResult(
            params=from_wire(response.params),
            state=AdamWState(
                exp_avg=from_wire(response.exp_avg),
                exp_avg_sq=from_wire(response.exp_avg_sq),
                max_exp_avg_sq=_maybe(response, "max_exp_avg_sq"),
                step=int(response.step),
            ),
        )

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
        request = pb.SgdStepRequest(
            params=to_wire(params, "params"),
            grads=to_wire(grads, "grads"),
            momentum_buffer=_optional(momentum_buffer, "momentum_buffer"),
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
        )
        response = self.client.call("SgdStep", request, pb.SgdStepResponse)
        return SgdResult(
            params=from_wire(response.params), momentum_buffer=_maybe(response, "momentum_buffer")
        )
