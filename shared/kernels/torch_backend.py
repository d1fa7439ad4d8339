"""The in-process kernel backend: TRL 1.x's formulas written in torch, gradients by ``torch.autograd``,
the optimizers by ``torch.optim`` itself. It is the reference the Rust service is tested against, so it
stays as close to TRL's code as the op boundaries allow.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from shared.kernels.backend import (
    GRPO_LOSS_TYPES,
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
from shared.kernels.errors import KernelInputError


def _same_shape(field: str, tensor: torch.Tensor, like: torch.Tensor, like_name: str) -> None:
    if tensor.shape != like.shape:
        raise KernelInputError(
            f"{field}.shape: {list(tensor.shape)} does not match {like_name} {list(like.shape)}"
        )


def _check_labels(labels: torch.Tensor, logits: torch.Tensor, ignore_index: int | None) -> None:
    _leading = logits.shape[:-1]
    if labels.shape != _leading:
        raise KernelInputError(
            f"labels.shape: {list(labels.shape)} does not match logits' leading dimensions {list(_leading)}"
        )
    vocab = logits.shape[-1]
    bad = (labels < 0) | (labels >= vocab)
    if ignore_index is not None:
        bad &= labels != ignore_index
    if bool(bad.any()):
        raise KernelInputError(f"labels: values outside [0, {vocab})")


def _nanmean(tensor: torch.Tensor, dim: int | None = None, keepdim: bool = False) -> torch.Tensor:
    """``torch.nanmean``, except that values all equal (NaNs aside) have exactly that value as their mean."""
    mean = torch.nanmean(tensor, dim=dim, keepdim=keepdim)
    seen = ~torch.isnan(tensor)
    low = torch.where(seen, tensor, torch.inf)
    high = torch.where(seen, tensor, -torch.inf)
    if dim is None:
        low, high = low.min(), high.max()
    else:
        low, high = low.amin(dim=dim, keepdim=keepdim), high.amax(dim=dim, keepdim=keepdim)
    return torch.where(low == high, low, mean)


def _nanstd(tensor: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """TRL's ``nanstd``: NaN-ignoring, Bessel-corrected (NaN with fewer than two values)."""
    mean = _nanmean(tensor, dim=dim, keepdim=True)
    variance = torch.nanmean((tensor - mean) ** 2, dim=dim, keepdim=True)
    count = torch.sum(~torch.isnan(tensor), dim=dim, keepdim=True)
    correction = count / (count - 1)
    correction = torch.where(count > 1, correction, torch.full_like(correction, float("nan")))
    std = torch.sqrt(variance * correction)
    return std if dim is None else std.squeeze(dim)


class TorchBackend(KernelBackend):
    """Runs every op in this process with torch."""

    name = "torch"

    def _softmax(self, logits: torch.Tensor, grad_output: torch.Tensor | None, log: bool) -> SoftmaxResult:
        fn = torch.log_softmax if log else torch.softmax
        if logits.dim() == 0:
            raise KernelInputError("logits.shape: expected at least one dimension (..., vocab)")
        if grad_output is None:
            with torch.no_grad():
                return SoftmaxResult(fn(logits, dim=-1), None)
        _same_shape("grad_output", grad_output, logits, "logits")
        with torch.enable_grad():
            x = logits.detach().requires_grad_()
            y = fn(x, dim=-1)
            (grad,) = torch.autograd.grad(y, x, grad_output)
        return SoftmaxResult(y.detach(), grad)

    def softmax(self, logits: torch.Tensor, grad_output: torch.Tensor | None = None) -> SoftmaxResult:
        return self._softmax(logits, grad_output, log=False)

    def log_softmax(self, logits: torch.Tensor, grad_output: torch.Tensor | None = None) -> SoftmaxResult:
        return self._softmax(logits, grad_output, log=True)

    def cross_entropy(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        *,
        ignore_index: int = -100,
        normalizer: float | None = None,
    ) -> CrossEntropyResult:
        _check_labels(labels, logits, ignore_index)
        if normalizer is not None and not normalizer > 0:
            raise KernelInputError(f"normalizer: must be finite and > 0, got {normalizer}")
        flat_labels = labels.reshape(-1).long()
        num_tokens = int((flat_labels != ignore_index).sum())
        denominator = normalizer if normalizer is not None else max(num_tokens, 1)
        with torch.enable_grad():
            x = logits.detach().requires_grad_()
            total = F.cross_entropy(
                x.reshape(-1, x.shape[-1]), flat_labels, ignore_index=ignore_index, reduction="sum"
            )
            loss = total / denominator
            (grad,) = torch.autograd.grad(loss, x)
        return CrossEntropyResult(loss.detach(), grad, num_tokens)

    def selective_log_softmax(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        grad_output: torch.Tensor | None = None,
        *,
        temperature: float = 1.0,
    ) -> SelectiveLogSoftmaxResult:
        _check_labels(labels, logits, None)
        if not temperature > 0:
            raise KernelInputError(f"temperature: must be finite and > 0, got {temperature}")
        if grad_output is not None:
            _same_shape("grad_output", grad_output, labels, "labels")
        with torch.enable_grad():
            x = logits.detach().requires_grad_(grad_output is not None)
            # TRL's selective_log_softmax for float32/float64
            scaled = x / temperature if temperature != 1.0 else x
            selected = torch.gather(scaled, dim=-1, index=labels.long().unsqueeze(-1)).squeeze(-1)
            logps = selected - torch.logsumexp(scaled, dim=-1)
            grad = torch.autograd.grad(logps, x, grad_output)[0] if grad_output is not None else None
        return SelectiveLogSoftmaxResult(logps.detach(), grad)

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
        if not beta > 0:
            raise KernelInputError(f"beta: must be finite and > 0, got {beta}")
        if any(t == "robust" for t, _ in losses) and not 0.0 <= label_smoothing < 0.5:
            raise KernelInputError(
                f"label_smoothing: must lie in [0.0, 0.5) for the robust loss, got {label_smoothing}"
            )
        if policy_chosen_logps.dim() != 1:
            raise KernelInputError(
                f"policy_chosen_logps.shape: expected rank 1, got {list(policy_chosen_logps.shape)}"
            )
        for field, tensor in (
            ("policy_rejected_logps", policy_rejected_logps),
            ("ref_chosen_logps", ref_chosen_logps),
            ("ref_rejected_logps", ref_rejected_logps),
        ):
            _same_shape(field, tensor, policy_chosen_logps, "policy_chosen_logps")
        dtype = policy_chosen_logps.dtype
        if any(t == "ipo" for t, _ in losses):
            if chosen_lengths is None:
                raise KernelInputError("chosen_lengths: required by the ipo loss")
            if rejected_lengths is None:
                raise KernelInputError("rejected_lengths: required by the ipo loss")
            _same_shape("chosen_lengths", chosen_lengths, policy_chosen_logps, "policy_chosen_logps")
            _same_shape("rejected_lengths", rejected_lengths, policy_chosen_logps, "policy_chosen_logps")

        with torch.enable_grad():
            chosen_logps = policy_chosen_logps.detach().requires_grad_()
            rejected_logps = policy_rejected_logps.detach().requires_grad_()
            # TRL DPOTrainer._compute_loss, f_divergence_type="reverse_kl"
            chosen_logratios = chosen_logps - ref_chosen_logps
            rejected_logratios = rejected_logps - ref_rejected_logps
            chosen_scores = chosen_logratios
            rejected_scores = rejected_logratios
            delta_score = chosen_scores - rejected_scores
            loss = torch.zeros((), dtype=dtype)
            for name, weight in losses:
                if name == "sigmoid":
                    per_sequence_loss = -F.logsigmoid(beta * delta_score)
                elif name == "hinge":
                    per_sequence_loss = torch.relu(1 - beta * delta_score)
                elif name == "ipo":
                    assert chosen_lengths is not None and rejected_lengths is not None
                    chosen_avg_score = chosen_scores / chosen_lengths.to(dtype).clamp(min=1.0)
                    rejected_avg_score = rejected_scores / rejected_lengths.to(dtype).clamp(min=1.0)
                    ipo_delta = chosen_avg_score - rejected_avg_score
                    per_sequence_loss = (ipo_delta - 1 / (2 * beta)) ** 2
                else:  # robust
                    clean_loss_term = -(1 - label_smoothing) * F.logsigmoid(beta * delta_score)
                    flipped_loss_term = -label_smoothing * F.logsigmoid(-beta * delta_score)
                    per_sequence_loss = (clean_loss_term - flipped_loss_term) / (1 - 2 * label_smoothing)
                loss = loss + per_sequence_loss.mean() * weight
            grad_chosen, grad_rejected = torch.autograd.grad(loss, (chosen_logps, rejected_logps))

        chosen_rewards = beta * chosen_logratios.detach()
        rejected_rewards = beta * rejected_logratios.detach()
        return DpoLossResult(
            loss=loss.detach(),
            grad_policy_chosen_logps=grad_chosen,
            grad_policy_rejected_logps=grad_rejected,
            chosen_rewards=chosen_rewards,
            rejected_rewards=rejected_rewards,
            margins=chosen_rewards - rejected_rewards,
            accuracies=(chosen_rewards > rejected_rewards).to(dtype),
        )

    def group_advantages(
        self,
        rewards: torch.Tensor,
        *,
        num_generations: int,
        scale_rewards: str | bool = "group",
    ) -> GroupAdvantagesResult:
        mode = scale_rewards_mode(scale_rewards)
        if rewards.dim() != 1:
            raise KernelInputError(f"rewards.shape: expected rank 1, got {list(rewards.shape)}")
        if num_generations < 1:
            raise KernelInputError("num_generations: must be at least 1")
        if rewards.numel() % num_generations != 0:
            raise KernelInputError(
                f"num_generations: {rewards.numel()} rewards do not split into groups of {num_generations}"
            )
        # TRL GRPOTrainer._generate_and_score_completions, multi_objective_aggregation="sum_then_normalize",
        # in float64 and with the exact mean of equal rewards: TRL's own arithmetic can leave rounding
        # noise of about ulp(r) / 1e-4 in the advantages of a group whose rewards are all equal.
        dtype = rewards.dtype
        rewards = rewards.double()
        mean_grouped_rewards = _nanmean(rewards.view(-1, num_generations), dim=1)
        mean_grouped_rewards = mean_grouped_rewards.repeat_interleave(num_generations, dim=0)
        if mode in ("group", "none"):
            if num_generations > 1:
                std_rewards = _nanstd(rewards.view(-1, num_generations), dim=1)
                std_rewards = std_rewards.repeat_interleave(num_generations, dim=0)
            else:
                std_rewards = torch.zeros_like(rewards)
        else:
            if rewards.numel() > 1:
                std_rewards = _nanstd(rewards).expand_as(rewards)
            else:
                std_rewards = torch.zeros_like(rewards)
        advantages = rewards - mean_grouped_rewards
        if mode != "none":
            advantages = advantages / (std_rewards + 1e-4)
        is_std_zero = torch.isclose(std_rewards, torch.zeros_like(std_rewards))
        advantages = torch.nan_to_num(advantages, nan=0.0)
        return GroupAdvantagesResult(
            advantages=advantages.to(dtype),
            group_mean=mean_grouped_rewards.to(dtype),
            std=std_rewards.to(dtype).contiguous(),
            frac_reward_zero_std=is_std_zero.float().mean().item(),
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
        if loss_type not in GRPO_LOSS_TYPES:
            raise KernelInputError(
                f"loss_type: unknown loss type {loss_type!r} (expected grpo, bnpo, dr_grpo or dapo)"
            )
        if per_token_logps.dim() != 2:
            raise KernelInputError(
                f"per_token_logps.shape: expected rank 2 (batch, completion tokens), "
                f"got {list(per_token_logps.shape)}"
            )
        _same_shape("mask", mask, per_token_logps, "per_token_logps")
        batch, tokens = per_token_logps.shape
        if advantages.shape not in ((batch,), (batch, tokens)):
            raise KernelInputError(
                f"advantages.shape: {list(advantages.shape)} is neither [{batch}] nor [{batch}, {tokens}]"
            )
        if old_per_token_logps is not None:
            _same_shape("old_per_token_logps", old_per_token_logps, per_token_logps, "per_token_logps")
        if beta != 0.0:
            if ref_per_token_logps is None:
                raise KernelInputError("ref_per_token_logps: required when beta != 0")
            _same_shape("ref_per_token_logps", ref_per_token_logps, per_token_logps, "per_token_logps")
        if loss_type == "dr_grpo" and not max_completion_length:
            raise KernelInputError("max_completion_length: required (> 0) by the dr_grpo loss")
        if normalizer is not None and not normalizer > 0:
            raise KernelInputError(f"normalizer: must be finite and > 0, got {normalizer}")
        if epsilon_low < 0:
            raise KernelInputError(f"epsilon_low: must be >= 0, got {epsilon_low}")
        epsilon_high = epsilon_low if epsilon_high is None else epsilon_high
        if epsilon_high < 0:
            raise KernelInputError(f"epsilon_high: must be >= 0, got {epsilon_high}")
        mask = mask.to(per_token_logps.dtype)

        with torch.enable_grad():
            logps = per_token_logps.detach().requires_grad_()
            # TRL GRPOTrainer._compute_loss, importance_sampling_level="token"
            if advantages.dim() == 1:
                advantages = advantages.unsqueeze(1)
            old = logps.detach() if old_per_token_logps is None else old_per_token_logps
            log_ratio = logps - old
            coef_1 = torch.exp(log_ratio)
            per_token_kl = None
            if beta != 0.0:
                assert ref_per_token_logps is not None
                per_token_kl = torch.exp(ref_per_token_logps - logps) - (ref_per_token_logps - logps) - 1
                if use_bias_correction_kl:
                    per_token_kl = per_token_kl * coef_1
            coef_2 = torch.clamp(coef_1, 1 - epsilon_low, 1 + epsilon_high)
            if delta is not None:
                coef_1 = torch.clamp(coef_1, max=delta)
            per_token_loss1 = coef_1 * advantages
            per_token_loss2 = coef_2 * advantages
            per_token_loss = -torch.min(per_token_loss1, per_token_loss2)
            if per_token_kl is not None:
                per_token_loss = per_token_loss + beta * per_token_kl
            if loss_type == "grpo":
                loss = ((per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
            elif loss_type == "bnpo":
                loss = (per_token_loss * mask).sum() / mask.sum().clamp(min=1.0)
            elif loss_type == "dr_grpo":
                assert max_completion_length is not None
                loss = (per_token_loss * mask).sum() / (per_token_loss.size(0) * max_completion_length)
            else:  # dapo
                divisor = mask.sum().clamp(min=1.0) if normalizer is None else normalizer
                loss = (per_token_loss * mask).sum() / divisor
            (grad,) = torch.autograd.grad(loss, logps)

        def global_masked_mean(x: torch.Tensor) -> float:
            return float(((x * mask).sum() / mask.sum().clamp(min=1.0)).item())

        def masked_seq_mean(x: torch.Tensor) -> torch.Tensor:
            return (x * mask).sum(-1) / mask.sum(-1)

        coef_1 = coef_1.detach()
        is_low_clipped = (coef_1 < 1 - epsilon_low) & (advantages < 0)
        is_high_clipped = (coef_1 > 1 + epsilon_high) & (advantages > 0)
        is_region_clipped = is_low_clipped | is_high_clipped
        low_per_seq = masked_seq_mean(is_low_clipped.to(mask.dtype))
        high_per_seq = masked_seq_mean(is_high_clipped.to(mask.dtype))
        low_seen = low_per_seq[~torch.isnan(low_per_seq)]
        high_seen = high_per_seq[~torch.isnan(high_per_seq)]
        return GrpoLossResult(
            loss=loss.detach(),
            grad_per_token_logps=grad,
            clip_ratio_low_mean=global_masked_mean(is_low_clipped.to(mask.dtype)),
            clip_ratio_high_mean=global_masked_mean(is_high_clipped.to(mask.dtype)),
            clip_ratio_region_mean=global_masked_mean(is_region_clipped.to(mask.dtype)),
            clip_ratio_low_min=low_seen.min().item() if low_seen.numel() else float("nan"),
            clip_ratio_high_max=high_seen.max().item() if high_seen.numel() else float("nan"),
            kl_mean=None if per_token_kl is None else global_masked_mean(per_token_kl.detach()),
        )

    def kl_k3(
        self, logps: torch.Tensor, ref_logps: torch.Tensor, grad_output: torch.Tensor | None = None
    ) -> KlK3Result:
        _same_shape("ref_logps", ref_logps, logps, "logps")
        if grad_output is not None:
            _same_shape("grad_output", grad_output, logps, "logps")
        with torch.enable_grad():
            x = logps.detach().requires_grad_(grad_output is not None)
            kl = torch.exp(ref_logps - x) - (ref_logps - x) - 1
            grad = torch.autograd.grad(kl, x, grad_output)[0] if grad_output is not None else None
        return KlK3Result(kl.detach(), grad)

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
        if params.dim() != 1:
            raise KernelInputError(f"params.shape: expected rank 1 (a flat buffer), got {list(params.shape)}")
        _same_shape("grads", grads, params, "params")
        param = torch.nn.Parameter(params.detach().clone())
        param.grad = grads.detach().clone()
        try:
            optimizer = torch.optim.AdamW(
                [param],
                lr=lr,
                betas=betas,
                eps=eps,
                weight_decay=weight_decay,
                amsgrad=amsgrad,
                maximize=maximize,
                foreach=False,
            )
        except ValueError as err:
            raise KernelInputError(f"hyperparameters: {err}") from err
        if state is not None:
            loaded: dict[str, torch.Tensor] = {
                "step": torch.tensor(float(state.step), dtype=torch.float32),
                "exp_avg": state.exp_avg.detach().clone(),
                "exp_avg_sq": state.exp_avg_sq.detach().clone(),
            }
            if amsgrad:
                peak = state.max_exp_avg_sq
                loaded["max_exp_avg_sq"] = torch.zeros_like(param) if peak is None else peak.detach().clone()
            optimizer.state[param] = loaded
        optimizer.step()
        after = optimizer.state[param]
        return AdamWResult(
            params=param.detach(),
            state=AdamWState(
                exp_avg=after["exp_avg"],
                exp_avg_sq=after["exp_avg_sq"],
                max_exp_avg_sq=after["max_exp_avg_sq"] if amsgrad else None,
                step=(state.step if state is not None else 0) + 1,
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
        if params.dim() != 1:
            raise KernelInputError(f"params.shape: expected rank 1 (a flat buffer), got {list(params.shape)}")
        _same_shape("grads", grads, params, "params")
        param = torch.nn.Parameter(params.detach().clone())
        param.grad = grads.detach().clone()
        try:
            optimizer = torch.optim.SGD(
                [param],
                lr=lr,
                momentum=momentum,
                dampening=dampening,
                weight_decay=weight_decay,
                nesterov=nesterov,
                maximize=maximize,
                foreach=False,
            )
        except ValueError as err:
            raise KernelInputError(f"hyperparameters: {err}") from err
        if momentum_buffer is not None and momentum != 0:
            optimizer.state[param] = {"momentum_buffer": momentum_buffer.detach().clone()}
        optimizer.step()
        buffer = optimizer.state[param].get("momentum_buffer") if momentum != 0 else None
        return SgdResult(params=param.detach(), momentum_buffer=buffer)
