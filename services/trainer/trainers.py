"""TRL's DPO, GRPO and SFT trainers with their loss math sent to a kernel backend.

Each class overrides one method of the TRL 1.16 trainer, narrowly: the forward passes, the reference,
batching, logging, checkpointing and everything else stay TRL's. The override runs the same forward (and,
for DPO, the same reference forward: the base with the adapter disabled, or the frozen reference copy
with full fine-tuning), then computes the loss through ``services.trainer.losses`` (the backend returns
the loss and its gradient w.r.t. the log-probs) and logs TRL's metrics from what the backend returned.

Why override instead of configure: TRL computes its losses inline in ``_compute_loss`` (DPO, GRPO) and
``compute_loss`` (SFT), with no hook between the log-probs and the loss. The overrides support the
options Kaizen configures (``services.trainer.config``) and refuse, at construction, the TRL options whose
math the kernel service does not implement (f-divergences, LD-DPO, WPO weighting, sequence-level
importance sampling, entropy masks and bonuses, vLLM importance sampling, MoE auxiliary losses).

Every loss is checked: a non-finite loss stops the job at once as ``NonFiniteLoss`` (reason nan_loss).
"""

from __future__ import annotations

from typing import Any

import torch
from accelerate.utils import is_peft_model
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.dpo_trainer import DPOTrainer
from trl.trainer.grpo_trainer import GRPOTrainer
from trl.trainer.sft_trainer import SFTTrainer
from trl.trainer.utils import add_fused_lm_head, use_adapter

from services.trainer import losses
from services.trainer.errors import NonFiniteLoss
from shared.kernels.backend import KernelBackend
from shared.settings import KernelSettings

_NON_MODEL_KEYS = frozenset({"completion_mask", "ref_chosen_logps", "ref_rejected_logps"})


def _check_finite(trainer: Any, loss: torch.Tensor, what: str) -> None:
    if not bool(torch.isfinite(loss.detach()).all()):
        step = int(trainer.state.global_step)
        raise NonFiniteLoss(
            f"the {what} loss was {loss.detach().float().item()} at step {step + 1}", step=step
        )


class _BackendMixin:
    """Holds the kernel backend and the message size bound of the service."""

    backend: KernelBackend
    max_message_bytes: int

    def _set_backend(self, backend: KernelBackend, kernels: KernelSettings | None) -> None:
        self.backend = backend
        self.max_message_bytes = (kernels or KernelSettings()).max_message_bytes  # type: ignore[call-arg]

    def _training(self) -> bool:
        model: Any = self.model  # type: ignore[attr-defined]
        return bool(model.training)

    def _across_ranks(self, value: float) -> float:
        """The mean of a per-rank scalar over every rank (NaN-ignoring, as TRL's metrics are)."""
        accelerator = self.accelerator  # type: ignore[attr-defined]
        if accelerator.num_processes == 1:
            return value
        gathered = accelerator.gather(torch.tensor([value], device=accelerator.device, dtype=torch.float32))
        return float(torch.nanmean(gathered).item())


class KaizenDPOTrainer(_BackendMixin, DPOTrainer):  # type: ignore[misc]
    """``trl.DPOTrainer`` whose DPO loss (sigmoid, ipo, hinge, robust) runs in the kernel backend.

    Metrics: TRL's rewards (chosen, rejected, margins, accuracies) and log-probs, from the backend's
    result, plus ``kl`` (the policy's per-token k3 KL to the reference on the completion tokens, computed
    by the backend). TRL's entropy, mean logits and token accuracy are not computed (see ``__init__``).
    """

    def __init__(
        self, *args: Any, backend: KernelBackend, kernels: KernelSettings | None = None, **kwargs: Any
    ):
        super().__init__(*args, **kwargs)
        self._set_backend(backend, kernels)
        # TRL's fused head also computes entropy, mean logits and top-1 hits on every forward (reference
        # included) for metrics Kaizen does not log; each is one more pass over (tokens x vocab) values.
        # Re-patch it to compute the per-token log-probs alone.
        policy: Any = self.model
        add_fused_lm_head(
            policy.get_base_model() if is_peft_model(policy) else policy, outputs=("log_probs",)
        )
        if self.ref_model is not None:
            add_fused_lm_head(self.ref_model)
        unsupported = {
            "ld_alpha": self.ld_alpha is not None,
            "f_divergence_type": self.f_divergence_type != "reverse_kl",
            "use_weighting": self.use_weighting,
            "router aux loss": self.aux_loss_enabled,
        }
        if used := [name for name, on in unsupported.items() if on]:
            raise ValueError(f"the kernel DPO loss does not implement {used}")

    def _reference_per_token_logps(self, model_kwargs: dict[str, Any], labels: torch.Tensor) -> torch.Tensor:
        """TRL's reference forward: the base with the adapter disabled (LoRA), else the frozen copy."""
        policy: Any = self.model
        reference: Any = self.ref_model
        args: Any = self.args
        with torch.no_grad(), disable_gradient_checkpointing(policy, args.gradient_checkpointing_kwargs):
            if is_peft_model(policy) and reference is None:
                unwrapped = self.accelerator.unwrap_model(policy)
                adapter = "ref" if "ref" in unwrapped.peft_config else None
                with use_adapter(unwrapped, adapter_name=adapter):
                    outputs = policy(**model_kwargs, labels=labels, fused_lm_head=True)
            else:
                outputs = reference(**model_kwargs, labels=labels, fused_lm_head=True)
        log_probs: torch.Tensor = outputs.log_probs
        return log_probs

    def _compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool) -> Any:
        mode = "train" if self._training() else "eval"
        model_kwargs = {k: v for k, v in inputs.items() if k not in _NON_MODEL_KEYS}
        model_kwargs["use_cache"] = False
        completion_mask = inputs["completion_mask"]
        shift_completion_mask = completion_mask[..., 1:]
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)
        seq_len = shift_completion_mask.size(1)
        per_token_logps = outputs.log_probs[:, -seq_len:]
        chosen_logps, rejected_logps = per_token_logps.sum(dim=1).chunk(
            2, dim=0
        )  # batch is [chosen, rejected]

        ref_per_token_logps: torch.Tensor | None = None
        if self.precompute_ref_logps:
            ref_chosen_logps, ref_rejected_logps = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        else:
            ref_per_token_logps = self._reference_per_token_logps(model_kwargs, labels)[:, -seq_len:]
            ref_chosen_logps, ref_rejected_logps = ref_per_token_logps.sum(dim=1).chunk(2, dim=0)

        chosen_lengths, rejected_lengths = completion_mask.sum(dim=1).chunk(2, dim=0)
        loss, result = losses.dpo_loss(
            self.backend,
            chosen_logps,
            rejected_logps,
            ref_chosen_logps,
            ref_rejected_logps,
            beta=self.beta,
            loss_type=self.loss_types,
            loss_weights=self.loss_weights,
            label_smoothing=self.label_smoothing,
            chosen_lengths=chosen_lengths,
            rejected_lengths=rejected_lengths,
        )
        _check_finite(self, loss, "DPO")

        # TRL's metrics, from what the backend returned
        metrics = self._metrics[mode]
        for name, value in result.metrics().items():
            metrics[name].append(self._across_ranks(value))
        metrics["logps/chosen"].append(self._across_ranks(chosen_logps.detach().float().mean().item()))
        metrics["logps/rejected"].append(self._across_ranks(rejected_logps.detach().float().mean().item()))
        mask = shift_completion_mask.to(per_token_logps.dtype)
        tokens = mask.sum().clamp(min=1.0)
        if ref_per_token_logps is not None:
            # KL of the policy to the reference on the dataset's completion tokens (k3 estimate, per token)
            kl = self.backend.kl_k3(per_token_logps.detach().float(), ref_per_token_logps.float()).kl
            metrics["kl"].append(self._across_ranks(float((kl.to(mask.device) * mask).sum() / tokens)))
        if mode == "train":
            num_tokens = self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
            self._total_train_tokens += num_tokens // self._tp_size
        metrics["num_tokens"] = [self._total_train_tokens]

        if return_outputs:
            with torch.no_grad():
                outputs = model(**model_kwargs)
            return loss, outputs
        return loss


class KaizenGRPOTrainer(_BackendMixin, GRPOTrainer):  # type: ignore[misc]
    """``trl.GRPOTrainer`` whose clipped surrogate (grpo, bnpo, dr_grpo, dapo; optional k3 KL) runs in the
    kernel backend. Generation, rewards and advantages stay TRL's: they live in the same TRL method as the
    sampling loop, which Kaizen does not fork."""

    def __init__(
        self, *args: Any, backend: KernelBackend, kernels: KernelSettings | None = None, **kwargs: Any
    ):
        super().__init__(*args, **kwargs)
        self._set_backend(backend, kernels)
        unsupported = {
            "loss_type": self.loss_type not in ("grpo", "bnpo", "dr_grpo", "dapo"),
            "importance_sampling_level": self.importance_sampling_level != "token",
            "off_policy_mask_threshold": self.off_policy_mask_threshold is not None,
            "top_entropy_quantile": self.top_entropy_quantile < 1.0,
            "entropy bonus": self._entropy_bonus_enabled,
            "use_vllm": self.use_vllm,
            "router aux loss": self.aux_loss_enabled,
        }
        if used := [name for name, on in unsupported.items() if on]:
            raise ValueError(f"the kernel GRPO loss does not implement {used}")

    def _compute_loss(self, model: Any, inputs: dict[str, Any]) -> torch.Tensor:
        prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]
        completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
        logits_to_keep = completion_ids.size(1)
        mask = completion_mask if "tool_mask" not in inputs else completion_mask * inputs["tool_mask"]
        per_token_logps, entropies, _ = self._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, logits_to_keep, compute_entropy=True
        )

        mode = "train" if self._training() else "eval"
        args: Any = self.args
        normalizer: float | None = None
        if self.loss_type == "dapo":
            # TRL: `num_items_in_batch` spans the generation batch, so rescale it to one accumulation window
            scaled = inputs["num_items_in_batch"].clamp(min=1.0) / self.accelerator.num_processes
            if mode == "train":
                scaled = scaled * self.current_gradient_accumulation_steps / args.steps_per_generation
            normalizer = float(scaled)
        loss, result = losses.grpo_loss(
            self.backend,
            per_token_logps,
            inputs["advantages"],
            mask,
            old_per_token_logps=inputs.get("old_per_token_logps"),
            ref_per_token_logps=inputs.get("ref_per_token_logps") if self.beta != 0.0 else None,
            loss_type=self.loss_type,
            beta=self.beta,
            epsilon_low=self.epsilon_low,
            epsilon_high=self.epsilon_high,
            delta=args.delta,
            max_completion_length=self.max_completion_length,
            normalizer=normalizer,
            use_bias_correction_kl=args.use_bias_correction_kl,
        )
        if self.loss_type != "dapo" and mode == "train":
            loss = loss / self.current_gradient_accumulation_steps  # TRL's scaling for gradient accumulation
        _check_finite(self, loss, "GRPO")

        metrics = self._metrics[mode]
        for name, value in result.metrics().items():
            metrics[name].append(self._across_ranks(value))
        float_mask = mask.to(entropies.dtype)
        entropy = (entropies.detach() * float_mask).sum() / float_mask.sum().clamp(min=1.0)
        metrics["entropy"].append(self._across_ranks(entropy.item()))
        return loss


class KaizenSFTTrainer(_BackendMixin, SFTTrainer):  # type: ignore[misc]
    """``trl.SFTTrainer`` whose token cross-entropy runs in the kernel backend.

    The kernel's cross-entropy takes logits, so this forward builds them (the model's own forward, as
    transformers' default loss does) where TRL's fused head would not; the rows travel to the backend in
    chunks that fit the service's message size. The normalizer is TRL's: ``num_items_in_batch`` (the
    tokens of the whole accumulation window) when the Trainer passes it, else this micro-batch's tokens.
    """

    def __init__(
        self, *args: Any, backend: KernelBackend, kernels: KernelSettings | None = None, **kwargs: Any
    ):
        super().__init__(*args, **kwargs)
        self._set_backend(backend, kernels)
        config: Any = self.args
        if self.aux_loss_enabled or config.loss_type != "nll" or self.label_smoother is not None:
            raise ValueError("the kernel SFT loss implements the plain nll loss only")

    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        mode = "train" if self._training() else "eval"
        model_inputs = {k: v for k, v in inputs.items() if k not in ("labels", "completion_mask")}
        model_inputs["use_cache"] = False
        outputs = model(**model_inputs)
        logits = outputs.logits[:, :-1, :]
        labels = inputs["labels"][:, 1:].to(logits.device)
        flat_logits = logits.reshape(-1, logits.size(-1))
        flat_labels = labels.reshape(-1)
        valid = flat_labels != -100
        num_tokens = num_items_in_batch if num_items_in_batch is not None else valid.sum()
        normalizer = float(torch.as_tensor(num_tokens).clamp(min=1).item())
        loss = losses.cross_entropy(
            self.backend,
            flat_logits,
            flat_labels,
            normalizer=normalizer,
            max_message_bytes=self.max_message_bytes,
        )
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        _check_finite(self, loss, "SFT")

        with torch.no_grad():  # TRL's entropy and token accuracy, a few rows at a time
            scored_logits, scored_labels = flat_logits[valid], flat_labels[valid]
            count = max(int(valid.sum()), 1)
            entropy_sum, correct = 0.0, 0.0
            for start in range(0, scored_logits.size(0), 256):
                rows = scored_logits[start : start + 256].float()
                log_probs = torch.log_softmax(rows, dim=-1)
                entropy_sum += float(-(log_probs.exp() * log_probs).sum())
                correct += float((rows.argmax(-1) == scored_labels[start : start + 256]).sum())
            entropy, accuracy = torch.tensor(entropy_sum / count), torch.tensor(correct / count)
        metrics = self._metrics[mode]
        metrics["entropy"].append(self._across_ranks(entropy.item()))
        metrics["mean_token_accuracy"].append(self._across_ranks(accuracy.item()))
        if mode == "train":
            seen = self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
            self._total_train_tokens += seen // self._tp_size
        metrics["num_tokens"] = [self._total_train_tokens]
        return (loss, outputs) if return_outputs else loss
