"""Parity of the Rust kernel service with the torch backend (TRL's formulas, gradients by torch.autograd).

Hypothesis draws shapes and values, including extreme logits, masks with empty rows, groups whose
rewards are all equal, single-element groups and unscorable (NaN) rewards; every forward value, gradient
and metric must agree to 1e-5 relative in float64 and 1e-4 in float32 (see helpers.assert_close).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.kernels.backend import AdamWState, CrossEntropyResult
from shared.kernels.grpc_backend import GrpcBackend
from shared.kernels.torch_backend import TorchBackend
from tests.kernels.helpers import DTYPES, assert_close, assert_close_float, conditioning, float_arrays, tensor

# KAIZEN_KERNEL_EXAMPLES raises the examples per test for a deeper local run.
EXAMPLES = settings(max_examples=int(os.environ.get("KAIZEN_KERNEL_EXAMPLES", "60")), deadline=None)

LOGIT_SCALES = st.sampled_from([1.0, 30.0, 1e4])


@EXAMPLES
@given(data=st.data())
def test_softmax_and_log_softmax(
    grpc_backend: GrpcBackend, torch_backend: TorchBackend, data: st.DataObject
) -> None:
    dtype = data.draw(DTYPES, label="dtype")
    leading = data.draw(st.lists(st.integers(1, 5), max_size=2), label="leading")
    shape = (*leading, data.draw(st.integers(1, 40), label="vocab"))
    logits = tensor(data.draw(float_arrays(shape)) * data.draw(LOGIT_SCALES, label="scale"), dtype)
    grad_output = (
        tensor(data.draw(float_arrays(shape, -3, 3)), dtype)
        if data.draw(st.booleans(), label="grad")
        else None
    )
    for op in ("softmax", "log_softmax"):
        got = getattr(grpc_backend, op)(logits, grad_output)
        want = getattr(torch_backend, op)(logits, grad_output)
        assert_close(got.output, want.output, f"{op} output")
        if grad_output is None:
            assert got.grad_logits is None and want.grad_logits is None
            continue
        probs = torch.softmax(logits.double(), -1)
        cancel = (probs * grad_output.double().sum(-1, keepdim=True).abs()).max().item()
        assert_close(
            got.grad_logits, want.grad_logits, f"{op} grad", scale=grad_output.abs().max().item() + cancel
        )


@EXAMPLES
@given(data=st.data())
def test_cross_entropy(grpc_backend: GrpcBackend, torch_backend: TorchBackend, data: st.DataObject) -> None:
    dtype = data.draw(DTYPES, label="dtype")
    leading = tuple(data.draw(st.lists(st.integers(1, 6), min_size=1, max_size=2), label="leading"))
    vocab = data.draw(st.integers(1, 40), label="vocab")
    logits = tensor(
        data.draw(float_arrays((*leading, vocab))) * data.draw(LOGIT_SCALES, label="scale"), dtype
    )
    ignore_index = data.draw(st.sampled_from([-100, -1]), label="ignore_index")
    labels = data.draw(float_arrays(leading, 0, 1), label="labels")
    ignored = data.draw(float_arrays(leading, 0, 1), label="ignored") < data.draw(
        st.sampled_from([0.0, 0.3, 1.0])
    )
    labels = np.where(ignored, ignore_index, np.minimum((labels * vocab).astype(np.int64), vocab - 1))
    labels_t = torch.from_numpy(labels.astype(np.int64))
    normalizer = data.draw(st.one_of(st.none(), st.floats(0.5, 50.0)), label="normalizer")
    got = grpc_backend.cross_entropy(logits, labels_t, ignore_index=ignore_index, normalizer=normalizer)
    want = torch_backend.cross_entropy(logits, labels_t, ignore_index=ignore_index, normalizer=normalizer)
    assert got.num_tokens == want.num_tokens == int((labels != ignore_index).sum())
    assert_close(got.loss, want.loss, "loss")
    assert_close(
        got.grad_logits, want.grad_logits, "grad_logits", scale=cross_entropy_grad_scale(want, normalizer)
    )


def cross_entropy_grad_scale(result: CrossEntropyResult, normalizer: float | None) -> float:
    """The scale cross-entropy's gradient rounds at: ``(softmax - one_hot) / normalizer`` cancels a
    one-hot term of ``1 / normalizer`` where the label takes almost all the probability, so an element
    of ~1e-5 carries float32 rounding of that term, whatever the backend (helpers' rule for cancelling ops).
    """
    largest = float(result.grad_logits.abs().max().item()) if result.grad_logits.numel() else 0.0
    if not result.num_tokens:
        return largest
    return max(largest, 1.0 / (normalizer if normalizer is not None else result.num_tokens))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cross_entropy_where_the_label_takes_almost_all_the_probability(
    grpc_backend: GrpcBackend, torch_backend: TorchBackend, dtype: torch.dtype
) -> None:
    """Hypothesis found this case: logits 30 and 18.75, label 0. The true gradient is -/+ p/1.5 with
    p = 1.3e-5; in float32 softmax - 1 loses about 3 digits of it in both backends, differently.

    Each backend stays within float32 rounding of the one-hot term of the exact (float64) gradient,
    and the two agree at that scale.
    """
    logits = torch.tensor([[30.0, 18.75]], dtype=dtype)
    labels = torch.tensor([0])
    got = grpc_backend.cross_entropy(logits, labels, normalizer=1.5)
    want = torch_backend.cross_entropy(logits, labels, normalizer=1.5)
    p = 1.0 / (1.0 + math.exp(11.25))
    exact = torch.tensor([[-p / 1.5, p / 1.5]], dtype=torch.float64)
    bound = 8 * torch.finfo(dtype).eps / 1.5
    for result in (got, want):
        assert result.grad_logits is not None
        assert (result.grad_logits.double() - exact).abs().max().item() <= bound
    assert_close(got.grad_logits, want.grad_logits, "grad_logits", scale=cross_entropy_grad_scale(want, 1.5))
    assert_close(got.loss, want.loss, "loss")


@EXAMPLES
@given(data=st.data())
def test_selective_log_softmax(
    grpc_backend: GrpcBackend, torch_backend: TorchBackend, data: st.DataObject
) -> None:
    dtype = data.draw(DTYPES, label="dtype")
    leading = tuple(data.draw(st.lists(st.integers(1, 5), min_size=1, max_size=2), label="leading"))
    vocab = data.draw(st.integers(1, 40), label="vocab")
    logits = tensor(
        data.draw(float_arrays((*leading, vocab))) * data.draw(LOGIT_SCALES, label="scale"), dtype
    )
    labels = torch.from_numpy(
        np.minimum((data.draw(float_arrays(leading, 0, 1)) * vocab).astype(np.int64), vocab - 1)
    )
    grad_output = (
        tensor(data.draw(float_arrays(leading, -3, 3)), dtype)
        if data.draw(st.booleans(), label="grad")
        else None
    )
    temperature = data.draw(st.sampled_from([1.0, 0.7, 2.0]), label="temperature")
    got = grpc_backend.selective_log_softmax(logits, labels, grad_output, temperature=temperature)
    want = torch_backend.selective_log_softmax(logits, labels, grad_output, temperature=temperature)
    # TRL's x - logsumexp(x) rounds at the scale of the logits, not of the log-probs.
    assert_close(got.logps, want.logps, "logps", scale=logits.abs().max().item() / temperature)
    if grad_output is None:
        assert got.grad_logits is None and want.grad_logits is None
    else:
        scale = grad_output.abs().max().item() / temperature
        scale *= conditioning(logits.abs().max().item() / temperature, dtype)
        assert_close(got.grad_logits, want.grad_logits, "grad_logits", scale=scale)


DPO_LOSSES = st.one_of(
    st.sampled_from(["sigmoid", "hinge", "ipo", "robust"]),
    st.lists(st.sampled_from(["sigmoid", "hinge", "ipo", "robust"]), min_size=1, max_size=3),
)


@EXAMPLES
@given(data=st.data())
def test_dpo_loss(grpc_backend: GrpcBackend, torch_backend: TorchBackend, data: st.DataObject) -> None:
    dtype = data.draw(DTYPES, label="dtype")
    n = data.draw(st.integers(1, 16), label="pairs")
    scale = data.draw(st.sampled_from([1.0, 50.0, 1e3]), label="scale")
    pc, pr, rc, rr = (tensor(data.draw(float_arrays((n,), -1, 0)) * scale, dtype) for _ in range(4))
    loss_type = data.draw(DPO_LOSSES, label="loss_type")
    types = [loss_type] if isinstance(loss_type, str) else loss_type
    weights = data.draw(
        st.lists(st.floats(0.1, 2.0), min_size=len(types), max_size=len(types)), label="weights"
    )
    beta = data.draw(st.floats(0.01, 2.0), label="beta")
    label_smoothing = data.draw(st.floats(0.0, 0.49), label="label_smoothing")
    chosen_lengths = torch.tensor(data.draw(st.lists(st.integers(0, 40), min_size=n, max_size=n)))
    rejected_lengths = torch.tensor(data.draw(st.lists(st.integers(0, 40), min_size=n, max_size=n)))
    kwargs = {
        "beta": beta,
        "loss_type": loss_type,
        "loss_weights": weights,
        "label_smoothing": label_smoothing,
        "chosen_lengths": chosen_lengths,
        "rejected_lengths": rejected_lengths,
    }
    got = grpc_backend.dpo_loss(pc, pr, rc, rr, **kwargs)  # type: ignore[arg-type]
    want = torch_backend.dpo_loss(pc, pr, rc, rr, **kwargs)  # type: ignore[arg-type]

    # Bounds on the per-pair terms and their gradients, the scale at which their rounding shows.
    z = (beta * ((pc - rc) - (pr - rr))).double().abs().max().item()
    ipo_gap = (
        ((pc - rc).double().abs() / chosen_lengths.clamp(min=1)).max().item()
        + ((pr - rr).double().abs() / rejected_lengths.clamp(min=1)).max().item()
        + 1 / (2 * beta)
    )
    term = {
        "sigmoid": z + 1,
        "hinge": z + 1,
        "ipo": ipo_gap**2,
        "robust": (z + 1) / (1 - 2 * label_smoothing),
    }
    slope = {"sigmoid": beta, "hinge": beta, "ipo": 2 * ipo_gap, "robust": beta / (1 - 2 * label_smoothing)}
    loss_scale = sum(w * term[t] for t, w in zip(types, weights, strict=True))
    grad_scale = sum(w * slope[t] for t, w in zip(types, weights, strict=True)) / n
    assert_close(got.loss, want.loss, "loss", scale=loss_scale)
    assert_close(got.grad_policy_chosen_logps, want.grad_policy_chosen_logps, "grad chosen", scale=grad_scale)
    assert_close(
        got.grad_policy_rejected_logps, want.grad_policy_rejected_logps, "grad rejected", scale=grad_scale
    )
    assert_close(got.chosen_rewards, want.chosen_rewards, "chosen_rewards")
    assert_close(got.rejected_rewards, want.rejected_rewards, "rejected_rewards")
    assert_close(got.margins, want.margins, "margins", scale=beta * scale)
    assert torch.equal(got.accuracies, want.accuracies)
    assert got.metrics().keys() == want.metrics().keys()


@EXAMPLES
@given(data=st.data())
def test_group_advantages(
    grpc_backend: GrpcBackend, torch_backend: TorchBackend, data: st.DataObject
) -> None:
    dtype = data.draw(DTYPES, label="dtype")
    group_size = data.draw(st.integers(1, 8), label="num_generations")
    groups = data.draw(st.integers(1, 6), label="groups")
    rewards = data.draw(float_arrays((groups, group_size), -5, 5), label="rewards")
    equal = data.draw(st.lists(st.booleans(), min_size=groups, max_size=groups), label="equal groups")
    rewards[np.array(equal)] = rewards[np.array(equal)][:, :1]
    unscorable = data.draw(float_arrays((groups, group_size), 0, 1), label="unscorable") < data.draw(
        st.sampled_from([0.0, 0.2, 1.0]), label="unscorable rate"
    )
    rewards[unscorable] = np.nan
    mode: str | bool = data.draw(  # type: ignore[assignment]
        st.sampled_from(["group", "batch", "none", True, False]), label="scale_rewards"
    )
    r = tensor(rewards.reshape(-1), dtype)
    got = grpc_backend.group_advantages(r, num_generations=group_size, scale_rewards=mode)
    want = torch_backend.group_advantages(r, num_generations=group_size, scale_rewards=mode)
    assert_close(got.advantages, want.advantages, "advantages")
    assert_close(got.group_mean, want.group_mean, "group_mean")
    assert_close(got.std, want.std, "std")
    assert got.frac_reward_zero_std == want.frac_reward_zero_std
    for row, is_equal in zip(got.advantages.view(groups, group_size), equal, strict=True):
        if is_equal:
            assert bool((row == 0).all()), f"a group of equal rewards got advantages {row.tolist()}"


@EXAMPLES
@given(data=st.data())
def test_grpo_loss(grpc_backend: GrpcBackend, torch_backend: TorchBackend, data: st.DataObject) -> None:
    dtype = data.draw(DTYPES, label="dtype")
    batch = data.draw(st.integers(1, 5), label="batch")
    tokens = data.draw(st.integers(1, 12), label="tokens")
    logps_np = data.draw(float_arrays((batch, tokens), -5, 0), label="logps")
    logps = tensor(logps_np, dtype)
    spread = data.draw(st.sampled_from([0.0, 0.05, 0.5]), label="old spread")
    old = (
        tensor(logps_np + data.draw(float_arrays((batch, tokens), -1, 1)) * spread, dtype)
        if data.draw(st.booleans(), label="off-policy")
        else None
    )
    ref = tensor(logps_np + data.draw(float_arrays((batch, tokens), -1, 1)) * 0.5, dtype)
    per_token = data.draw(st.booleans(), label="per-token advantages")
    advantages = tensor(data.draw(float_arrays((batch, tokens) if per_token else (batch,), -3, 3)), dtype)
    mask = data.draw(float_arrays((batch, tokens), 0, 1), label="mask") < data.draw(
        st.sampled_from([0.0, 0.5, 1.0]), label="keep rate"
    )
    empty_rows = data.draw(st.lists(st.booleans(), min_size=batch, max_size=batch), label="empty rows")
    mask[np.array(empty_rows)] = False
    mask_t = torch.from_numpy(mask.astype(np.int64))
    loss_type = data.draw(st.sampled_from(["grpo", "bnpo", "dr_grpo", "dapo"]), label="loss_type")
    beta = data.draw(st.sampled_from([0.0, 0.04, 0.5]), label="beta")
    epsilon_low = data.draw(st.floats(0.0, 0.5), label="epsilon_low")
    epsilon_high = data.draw(st.one_of(st.none(), st.floats(0.0, 0.5)), label="epsilon_high")
    delta = data.draw(st.one_of(st.none(), st.floats(1.0, 3.0)), label="delta")
    normalizer = data.draw(st.one_of(st.none(), st.floats(1.0, 100.0)), label="normalizer")
    bias = data.draw(st.booleans(), label="use_bias_correction_kl")
    kwargs = {
        "old_per_token_logps": old,
        "ref_per_token_logps": ref,
        "loss_type": loss_type,
        "beta": beta,
        "epsilon_low": epsilon_low,
        "epsilon_high": epsilon_high,
        "delta": delta,
        "max_completion_length": tokens + data.draw(st.integers(0, 4), label="extra length"),
        "normalizer": normalizer,
        "use_bias_correction_kl": bias,
    }
    got = grpc_backend.grpo_loss(logps, advantages, mask_t, **kwargs)  # type: ignore[arg-type]
    want = torch_backend.grpo_loss(logps, advantages, mask_t, **kwargs)  # type: ignore[arg-type]

    ratio = 1.0 if old is None else torch.exp(logps - old).double().max().item()
    gap = (ref - logps).double()
    kl = (torch.exp(gap) - gap - 1).abs().max().item()
    high = 1 + (epsilon_low if epsilon_high is None else epsilon_high)
    term = advantages.abs().max().item() * max(ratio, high) + beta * kl * (max(ratio, 1.0) if bias else 1.0)
    slope = advantages.abs().max().item() * ratio + beta * (1 + torch.exp(gap).max().item() + kl) * max(
        ratio, 1.0
    )
    weight = max(1.0, float(mask.sum()) / normalizer) if loss_type == "dapo" and normalizer else 1.0
    assert_close(got.loss, want.loss, "loss", scale=term * weight)
    assert_close(got.grad_per_token_logps, want.grad_per_token_logps, "grad", scale=slope * weight)
    for name in ("clip_ratio_low_mean", "clip_ratio_high_mean", "clip_ratio_region_mean"):
        assert_close_float(getattr(got, name), getattr(want, name), dtype, name)
    assert_close_float(got.clip_ratio_low_min, want.clip_ratio_low_min, dtype, "clip_ratio_low_min")
    assert_close_float(got.clip_ratio_high_max, want.clip_ratio_high_max, dtype, "clip_ratio_high_max")
    if beta == 0.0:
        assert got.kl_mean is None and want.kl_mean is None
    else:
        assert got.kl_mean is not None and want.kl_mean is not None
        assert_close_float(got.kl_mean, want.kl_mean, dtype, "kl_mean", scale=kl * max(ratio, 1.0))
    if all(empty_rows):
        assert float(got.loss) == 0.0 and math.isnan(got.clip_ratio_low_min)


@EXAMPLES
@given(data=st.data())
def test_kl_k3(grpc_backend: GrpcBackend, torch_backend: TorchBackend, data: st.DataObject) -> None:
    dtype = data.draw(DTYPES, label="dtype")
    shape = tuple(data.draw(st.lists(st.integers(1, 8), min_size=1, max_size=3), label="shape"))
    logps = tensor(data.draw(float_arrays(shape, -10, 0)), dtype)
    ref = tensor(data.draw(float_arrays(shape, -10, 0)), dtype)
    grad_output = tensor(data.draw(float_arrays(shape, -3, 3)), dtype) if data.draw(st.booleans()) else None
    got = grpc_backend.kl_k3(logps, ref, grad_output)
    want = torch_backend.kl_k3(logps, ref, grad_output)
    gap = (ref - logps).double()
    assert_close(got.kl, want.kl, "kl", scale=(torch.exp(gap) + gap.abs() + 1).max().item())
    if grad_output is None:
        assert got.grad_logps is None and want.grad_logps is None
    else:
        scale = (grad_output.double().abs() * (1 + torch.exp(gap))).max().item()
        assert_close(got.grad_logps, want.grad_logps, "grad_logps", scale=scale)


@EXAMPLES
@given(data=st.data())
def test_adamw_steps(grpc_backend: GrpcBackend, torch_backend: TorchBackend, data: st.DataObject) -> None:
    dtype = data.draw(DTYPES, label="dtype")
    size = data.draw(st.integers(1, 300), label="params")
    params = tensor(data.draw(float_arrays((size,), -2, 2)), dtype)
    grad_scale = data.draw(st.sampled_from([1e-3, 1.0, 100.0]), label="grad scale")
    lr = data.draw(st.floats(1e-4, 0.1), label="lr")
    beta1 = data.draw(st.floats(0.0, 0.99), label="beta1")
    hyper = {
        "lr": lr,
        "betas": (
            beta1,
            data.draw(st.floats(0.5, 0.9999), label="beta2"),
        ),
        "eps": data.draw(st.sampled_from([1e-8, 1e-6]), label="eps"),
        "weight_decay": data.draw(st.floats(0.0, 0.1), label="weight_decay"),
        "amsgrad": data.draw(st.booleans(), label="amsgrad"),
        "maximize": data.draw(st.booleans(), label="maximize"),
    }
    got_params, want_params = params, params
    got_state: AdamWState | None = None
    want_state: AdamWState | None = None
    for step in range(data.draw(st.integers(1, 3), label="steps")):
        grads = tensor(data.draw(float_arrays((size,)), label=f"grads {step}") * grad_scale, dtype)
        got = grpc_backend.adamw_step(got_params, grads, got_state, **hyper)  # type: ignore[arg-type]
        want = torch_backend.adamw_step(want_params, grads, want_state, **hyper)  # type: ignore[arg-type]
        bound = 2.0 + lr * (step + 1) / (1 - beta1) * 10
        assert_close(got.params, want.params, f"params after step {step + 1}", scale=bound)
        assert_close(got.state.exp_avg, want.state.exp_avg, "exp_avg")
        assert_close(got.state.exp_avg_sq, want.state.exp_avg_sq, "exp_avg_sq")
        if hyper["amsgrad"]:
            assert_close(got.state.max_exp_avg_sq, want.state.max_exp_avg_sq, "max_exp_avg_sq")
        else:
            assert got.state.max_exp_avg_sq is None and want.state.max_exp_avg_sq is None
        assert got.state.step == want.state.step == step + 1
        got_params, got_state, want_params, want_state = got.params, got.state, want.params, want.state


@EXAMPLES
@given(data=st.data())
def test_sgd_steps(grpc_backend: GrpcBackend, torch_backend: TorchBackend, data: st.DataObject) -> None:
    dtype = data.draw(DTYPES, label="dtype")
    size = data.draw(st.integers(1, 300), label="params")
    params = tensor(data.draw(float_arrays((size,), -2, 2)), dtype)
    momentum = data.draw(st.sampled_from([0.0, 0.5, 0.9]), label="momentum")
    nesterov = momentum > 0 and data.draw(st.booleans(), label="nesterov")
    hyper = {
        "lr": data.draw(st.floats(1e-4, 0.5), label="lr"),
        "momentum": momentum,
        "dampening": 0.0 if nesterov else data.draw(st.sampled_from([0.0, 0.1, 0.5]), label="dampening"),
        "weight_decay": data.draw(st.floats(0.0, 0.1), label="weight_decay"),
        "nesterov": nesterov,
        "maximize": data.draw(st.booleans(), label="maximize"),
    }
    got_params, want_params = params, params
    got_buffer: torch.Tensor | None = None
    want_buffer: torch.Tensor | None = None
    for step in range(data.draw(st.integers(1, 3), label="steps")):
        grads = tensor(data.draw(float_arrays((size,)), label=f"grads {step}"), dtype)
        got = grpc_backend.sgd_step(got_params, grads, got_buffer, **hyper)  # type: ignore[arg-type]
        want = torch_backend.sgd_step(want_params, grads, want_buffer, **hyper)  # type: ignore[arg-type]
        assert_close(got.params, want.params, f"params after step {step + 1}", scale=3.0)
        if momentum:
            assert_close(got.momentum_buffer, want.momentum_buffer, "momentum_buffer", scale=3.0)
        else:
            assert got.momentum_buffer is None and want.momentum_buffer is None
        got_params, got_buffer, want_params, want_buffer = (
            got.params,
            got.momentum_buffer,
            want.params,
            want.momentum_buffer,
        )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_large_inputs_take_the_parallel_paths(
    grpc_backend: GrpcBackend, torch_backend: TorchBackend, dtype: torch.dtype
) -> None:
    generator = torch.Generator().manual_seed(7)
    logits = (torch.randn(8, 49152, generator=generator, dtype=torch.float64) * 4).to(dtype)
    grad_output = torch.randn(8, 49152, generator=generator, dtype=torch.float64).to(dtype)
    for op in ("softmax", "log_softmax"):
        got, want = (
            getattr(grpc_backend, op)(logits, grad_output),
            getattr(torch_backend, op)(logits, grad_output),
        )
        assert_close(got.output, want.output, f"{op} output")
        cancel = (
            (torch.softmax(logits.double(), -1) * grad_output.double().sum(-1, keepdim=True).abs())
            .max()
            .item()
        )
        assert_close(
            got.grad_logits, want.grad_logits, f"{op} grad", scale=grad_output.abs().max().item() + cancel
        )
    labels = torch.randint(0, 49152, (8,), generator=generator)
    labels[3] = -100
    got_ce, want_ce = grpc_backend.cross_entropy(logits, labels), torch_backend.cross_entropy(logits, labels)
    assert_close(got_ce.loss, want_ce.loss, "cross_entropy loss")
    assert_close(got_ce.grad_logits, want_ce.grad_logits, "cross_entropy grad")
    labels[3] = 0
    got_sel = grpc_backend.selective_log_softmax(logits, labels, grad_output[:, 0])
    want_sel = torch_backend.selective_log_softmax(logits, labels, grad_output[:, 0])
    assert_close(got_sel.logps, want_sel.logps, "selective logps", scale=logits.abs().max().item())
    assert_close(got_sel.grad_logits, want_sel.grad_logits, "selective grad")

    params = torch.randn(300_000, generator=generator, dtype=torch.float64).to(dtype)
    grads = torch.randn(300_000, generator=generator, dtype=torch.float64).to(dtype)
    got_adam = grpc_backend.adamw_step(params, grads, amsgrad=True)
    want_adam = torch_backend.adamw_step(params, grads, amsgrad=True)
    got_adam = grpc_backend.adamw_step(got_adam.params, grads, got_adam.state, amsgrad=True)
    want_adam = torch_backend.adamw_step(want_adam.params, grads, want_adam.state, amsgrad=True)
    assert_close(got_adam.params, want_adam.params, "adamw params")
    assert_close(got_adam.state.exp_avg_sq, want_adam.state.exp_avg_sq, "adamw exp_avg_sq")
    ref = params + grads * 0.1
    got_kl = grpc_backend.kl_k3(params, ref, grads)
    want_kl = torch_backend.kl_k3(params, ref, grads)
    assert_close(got_kl.kl, want_kl.kl, "kl_k3", scale=1.0)
    assert_close(got_kl.grad_logps, want_kl.grad_logps, "kl_k3 grad", scale=grads.abs().max().item())
    got_sgd = grpc_backend.sgd_step(params, grads, momentum=0.9)
    want_sgd = torch_backend.sgd_step(params, grads, momentum=0.9)
    assert_close(got_sgd.params, want_sgd.params, "sgd params")

    logps = -torch.rand(64, 512, generator=generator, dtype=torch.float64).to(dtype) * 4
    old = logps + torch.randn(64, 512, generator=generator, dtype=torch.float64).to(dtype) * 0.2
    ref = logps + torch.randn(64, 512, generator=generator, dtype=torch.float64).to(dtype) * 0.2
    advantages = torch.randn(64, generator=generator, dtype=torch.float64).to(dtype)
    mask = (torch.rand(64, 512, generator=generator) < 0.8).long()
    kwargs = {"old_per_token_logps": old, "ref_per_token_logps": ref, "beta": 0.04, "epsilon_high": 0.28}
    got_grpo = grpc_backend.grpo_loss(logps, advantages, mask, **kwargs)  # type: ignore[arg-type]
    want_grpo = torch_backend.grpo_loss(logps, advantages, mask, **kwargs)  # type: ignore[arg-type]
    assert_close(got_grpo.loss, want_grpo.loss, "grpo loss", scale=10.0)
    assert_close(got_grpo.grad_per_token_logps, want_grpo.grad_per_token_logps, "grpo grad")
