from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Dtype(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[Dtype]
    DTYPE_FLOAT32: _ClassVar[Dtype]
    DTYPE_FLOAT64: _ClassVar[Dtype]
    DTYPE_INT64: _ClassVar[Dtype]
DTYPE_UNSPECIFIED: Dtype
DTYPE_FLOAT32: Dtype
DTYPE_FLOAT64: Dtype
DTYPE_INT64: Dtype

class Tensor(_message.Message):
    __slots__ = ("shape", "dtype", "data")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: Dtype
    data: bytes
    def __init__(self, shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[_Union[Dtype, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

class SoftmaxRequest(_message.Message):
    __slots__ = ("logits", "grad_output")
    LOGITS_FIELD_NUMBER: _ClassVar[int]
    GRAD_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    logits: Tensor
    grad_output: Tensor
    def __init__(self, logits: _Optional[_Union[Tensor, _Mapping]] = ..., grad_output: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class SoftmaxResponse(_message.Message):
    __slots__ = ("output", "grad_logits")
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    GRAD_LOGITS_FIELD_NUMBER: _ClassVar[int]
    output: Tensor
    grad_logits: Tensor
    def __init__(self, output: _Optional[_Union[Tensor, _Mapping]] = ..., grad_logits: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class CrossEntropyRequest(_message.Message):
    __slots__ = ("logits", "labels", "ignore_index", "normalizer")
    LOGITS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    IGNORE_INDEX_FIELD_NUMBER: _ClassVar[int]
    NORMALIZER_FIELD_NUMBER: _ClassVar[int]
    logits: Tensor
    labels: Tensor
    ignore_index: int
    normalizer: float
    def __init__(self, logits: _Optional[_Union[Tensor, _Mapping]] = ..., labels: _Optional[_Union[Tensor, _Mapping]] = ..., ignore_index: _Optional[int] = ..., normalizer: _Optional[float] = ...) -> None: ...

class CrossEntropyResponse(_message.Message):
    __slots__ = ("loss", "grad_logits", "num_tokens")
    LOSS_FIELD_NUMBER: _ClassVar[int]
    GRAD_LOGITS_FIELD_NUMBER: _ClassVar[int]
    NUM_TOKENS_FIELD_NUMBER: _ClassVar[int]
    loss: float
    grad_logits: Tensor
    num_tokens: int
    def __init__(self, loss: _Optional[float] = ..., grad_logits: _Optional[_Union[Tensor, _Mapping]] = ..., num_tokens: _Optional[int] = ...) -> None: ...

class SelectiveLogSoftmaxRequest(_message.Message):
    __slots__ = ("logits", "labels", "grad_output", "temperature")
    LOGITS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    GRAD_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    logits: Tensor
    labels: Tensor
    grad_output: Tensor
    temperature: float
    def __init__(self, logits: _Optional[_Union[Tensor, _Mapping]] = ..., labels: _Optional[_Union[Tensor, _Mapping]] = ..., grad_output: _Optional[_Union[Tensor, _Mapping]] = ..., temperature: _Optional[float] = ...) -> None: ...

class SelectiveLogSoftmaxResponse(_message.Message):
    __slots__ = ("logps", "grad_logits")
    LOGPS_FIELD_NUMBER: _ClassVar[int]
    GRAD_LOGITS_FIELD_NUMBER: _ClassVar[int]
    logps: Tensor
    grad_logits: Tensor
    def __init__(self, logps: _Optional[_Union[Tensor, _Mapping]] = ..., grad_logits: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class DpoLossRequest(_message.Message):
    __slots__ = ("policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps", "beta", "loss_types", "loss_weights", "label_smoothing", "chosen_lengths", "rejected_lengths")
    POLICY_CHOSEN_LOGPS_FIELD_NUMBER: _ClassVar[int]
    POLICY_REJECTED_LOGPS_FIELD_NUMBER: _ClassVar[int]
    REF_CHOSEN_LOGPS_FIELD_NUMBER: _ClassVar[int]
    REF_REJECTED_LOGPS_FIELD_NUMBER: _ClassVar[int]
    BETA_FIELD_NUMBER: _ClassVar[int]
    LOSS_TYPES_FIELD_NUMBER: _ClassVar[int]
    LOSS_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    LABEL_SMOOTHING_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_LENGTHS_FIELD_NUMBER: _ClassVar[int]
    REJECTED_LENGTHS_FIELD_NUMBER: _ClassVar[int]
    policy_chosen_logps: Tensor
    policy_rejected_logps: Tensor
    ref_chosen_logps: Tensor
    ref_rejected_logps: Tensor
    beta: float
    loss_types: _containers.RepeatedScalarFieldContainer[str]
    loss_weights: _containers.RepeatedScalarFieldContainer[float]
    label_smoothing: float
    chosen_lengths: Tensor
    rejected_lengths: Tensor
    def __init__(self, policy_chosen_logps: _Optional[_Union[Tensor, _Mapping]] = ..., policy_rejected_logps: _Optional[_Union[Tensor, _Mapping]] = ..., ref_chosen_logps: _Optional[_Union[Tensor, _Mapping]] = ..., ref_rejected_logps: _Optional[_Union[Tensor, _Mapping]] = ..., beta: _Optional[float] = ..., loss_types: _Optional[_Iterable[str]] = ..., loss_weights: _Optional[_Iterable[float]] = ..., label_smoothing: _Optional[float] = ..., chosen_lengths: _Optional[_Union[Tensor, _Mapping]] = ..., rejected_lengths: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class DpoLossResponse(_message.Message):
    __slots__ = ("loss", "grad_policy_chosen_logps", "grad_policy_rejected_logps", "chosen_rewards", "rejected_rewards", "margins", "accuracies")
    LOSS_FIELD_NUMBER: _ClassVar[int]
    GRAD_POLICY_CHOSEN_LOGPS_FIELD_NUMBER: _ClassVar[int]
    GRAD_POLICY_REJECTED_LOGPS_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_REWARDS_FIELD_NUMBER: _ClassVar[int]
    REJECTED_REWARDS_FIELD_NUMBER: _ClassVar[int]
    MARGINS_FIELD_NUMBER: _ClassVar[int]
    ACCURACIES_FIELD_NUMBER: _ClassVar[int]
    loss: float
    grad_policy_chosen_logps: Tensor
    grad_policy_rejected_logps: Tensor
    chosen_rewards: Tensor
    rejected_rewards: Tensor
    margins: Tensor
    accuracies: Tensor
    def __init__(self, loss: _Optional[float] = ..., grad_policy_chosen_logps: _Optional[_Union[Tensor, _Mapping]] = ..., grad_policy_rejected_logps: _Optional[_Union[Tensor, _Mapping]] = ..., chosen_rewards: _Optional[_Union[Tensor, _Mapping]] = ..., rejected_rewards: _Optional[_Union[Tensor, _Mapping]] = ..., margins: _Optional[_Union[Tensor, _Mapping]] = ..., accuracies: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class GroupAdvantagesRequest(_message.Message):
    __slots__ = ("rewards", "num_generations", "scale_rewards")
    REWARDS_FIELD_NUMBER: _ClassVar[int]
    NUM_GENERATIONS_FIELD_NUMBER: _ClassVar[int]
    SCALE_REWARDS_FIELD_NUMBER: _ClassVar[int]
    rewards: Tensor
    num_generations: int
    scale_rewards: str
    def __init__(self, rewards: _Optional[_Union[Tensor, _Mapping]] = ..., num_generations: _Optional[int] = ..., scale_rewards: _Optional[str] = ...) -> None: ...

class GroupAdvantagesResponse(_message.Message):
    __slots__ = ("advantages", "group_mean", "std", "frac_reward_zero_std")
    ADVANTAGES_FIELD_NUMBER: _ClassVar[int]
    GROUP_MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    FRAC_REWARD_ZERO_STD_FIELD_NUMBER: _ClassVar[int]
    advantages: Tensor
    group_mean: Tensor
    std: Tensor
    frac_reward_zero_std: float
    def __init__(self, advantages: _Optional[_Union[Tensor, _Mapping]] = ..., group_mean: _Optional[_Union[Tensor, _Mapping]] = ..., std: _Optional[_Union[Tensor, _Mapping]] = ..., frac_reward_zero_std: _Optional[float] = ...) -> None: ...

class GrpoLossRequest(_message.Message):
    __slots__ = ("per_token_logps", "advantages", "mask", "old_per_token_logps", "ref_per_token_logps", "loss_type", "beta", "epsilon_low", "epsilon_high", "delta", "max_completion_length", "normalizer", "use_bias_correction_kl")
    PER_TOKEN_LOGPS_FIELD_NUMBER: _ClassVar[int]
    ADVANTAGES_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    OLD_PER_TOKEN_LOGPS_FIELD_NUMBER: _ClassVar[int]
    REF_PER_TOKEN_LOGPS_FIELD_NUMBER: _ClassVar[int]
    LOSS_TYPE_FIELD_NUMBER: _ClassVar[int]
    BETA_FIELD_NUMBER: _ClassVar[int]
    EPSILON_LOW_FIELD_NUMBER: _ClassVar[int]
    EPSILON_HIGH_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    MAX_COMPLETION_LENGTH_FIELD_NUMBER: _ClassVar[int]
    NORMALIZER_FIELD_NUMBER: _ClassVar[int]
    USE_BIAS_CORRECTION_KL_FIELD_NUMBER: _ClassVar[int]
    per_token_logps: Tensor
    advantages: Tensor
    mask: Tensor
    old_per_token_logps: Tensor
    ref_per_token_logps: Tensor
    loss_type: str
    beta: float
    epsilon_low: float
    epsilon_high: float
    delta: float
    max_completion_length: int
    normalizer: float
    use_bias_correction_kl: bool
    def __init__(self, per_token_logps: _Optional[_Union[Tensor, _Mapping]] = ..., advantages: _Optional[_Union[Tensor, _Mapping]] = ..., mask: _Optional[_Union[Tensor, _Mapping]] = ..., old_per_token_logps: _Optional[_Union[Tensor, _Mapping]] = ..., ref_per_token_logps: _Optional[_Union[Tensor, _Mapping]] = ..., loss_type: _Optional[str] = ..., beta: _Optional[float] = ..., epsilon_low: _Optional[float] = ..., epsilon_high: _Optional[float] = ..., delta: _Optional[float] = ..., max_completion_length: _Optional[int] = ..., normalizer: _Optional[float] = ..., use_bias_correction_kl: _Optional[bool] = ...) -> None: ...

class GrpoLossResponse(_message.Message):
    __slots__ = ("loss", "grad_per_token_logps", "clip_ratio_low_mean", "clip_ratio_high_mean", "clip_ratio_region_mean", "clip_ratio_low_min", "clip_ratio_high_max", "kl_mean")
    LOSS_FIELD_NUMBER: _ClassVar[int]
    GRAD_PER_TOKEN_LOGPS_FIELD_NUMBER: _ClassVar[int]
    CLIP_RATIO_LOW_MEAN_FIELD_NUMBER: _ClassVar[int]
    CLIP_RATIO_HIGH_MEAN_FIELD_NUMBER: _ClassVar[int]
    CLIP_RATIO_REGION_MEAN_FIELD_NUMBER: _ClassVar[int]
    CLIP_RATIO_LOW_MIN_FIELD_NUMBER: _ClassVar[int]
    CLIP_RATIO_HIGH_MAX_FIELD_NUMBER: _ClassVar[int]
    KL_MEAN_FIELD_NUMBER: _ClassVar[int]
    loss: float
    grad_per_token_logps: Tensor
    clip_ratio_low_mean: float
    clip_ratio_high_mean: float
    clip_ratio_region_mean: float
    clip_ratio_low_min: float
    clip_ratio_high_max: float
    kl_mean: float
    def __init__(self, loss: _Optional[float] = ..., grad_per_token_logps: _Optional[_Union[Tensor, _Mapping]] = ..., clip_ratio_low_mean: _Optional[float] = ..., clip_ratio_high_mean: _Optional[float] = ..., clip_ratio_region_mean: _Optional[float] = ..., clip_ratio_low_min: _Optional[float] = ..., clip_ratio_high_max: _Optional[float] = ..., kl_mean: _Optional[float] = ...) -> None: ...

class KlK3Request(_message.Message):
    __slots__ = ("logps", "ref_logps", "grad_output")
    LOGPS_FIELD_NUMBER: _ClassVar[int]
    REF_LOGPS_FIELD_NUMBER: _ClassVar[int]
    GRAD_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    logps: Tensor
    ref_logps: Tensor
    grad_output: Tensor
    def __init__(self, logps: _Optional[_Union[Tensor, _Mapping]] = ..., ref_logps: _Optional[_Union[Tensor, _Mapping]] = ..., grad_output: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class KlK3Response(_message.Message):
    __slots__ = ("kl", "grad_logps")
    KL_FIELD_NUMBER: _ClassVar[int]
    GRAD_LOGPS_FIELD_NUMBER: _ClassVar[int]
    kl: Tensor
    grad_logps: Tensor
    def __init__(self, kl: _Optional[_Union[Tensor, _Mapping]] = ..., grad_logps: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class AdamWStepRequest(_message.Message):
    __slots__ = ("params", "grads", "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "step", "lr", "beta1", "beta2", "eps", "weight_decay", "amsgrad", "maximize")
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    GRADS_FIELD_NUMBER: _ClassVar[int]
    EXP_AVG_FIELD_NUMBER: _ClassVar[int]
    EXP_AVG_SQ_FIELD_NUMBER: _ClassVar[int]
    MAX_EXP_AVG_SQ_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    LR_FIELD_NUMBER: _ClassVar[int]
    BETA1_FIELD_NUMBER: _ClassVar[int]
    BETA2_FIELD_NUMBER: _ClassVar[int]
    EPS_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_DECAY_FIELD_NUMBER: _ClassVar[int]
    AMSGRAD_FIELD_NUMBER: _ClassVar[int]
    MAXIMIZE_FIELD_NUMBER: _ClassVar[int]
    params: Tensor
    grads: Tensor
    exp_avg: Tensor
    exp_avg_sq: Tensor
    max_exp_avg_sq: Tensor
    step: int
    lr: float
    beta1: float
    beta2: float
    eps: float
    weight_decay: float
    amsgrad: bool
    maximize: bool
    def __init__(self, params: _Optional[_Union[Tensor, _Mapping]] = ..., grads: _Optional[_Union[Tensor, _Mapping]] = ..., exp_avg: _Optional[_Union[Tensor, _Mapping]] = ..., exp_avg_sq: _Optional[_Union[Tensor, _Mapping]] = ..., max_exp_avg_sq: _Optional[_Union[Tensor, _Mapping]] = ..., step: _Optional[int] = ..., lr: _Optional[float] = ..., beta1: _Optional[float] = ..., beta2: _Optional[float] = ..., eps: _Optional[float] = ..., weight_decay: _Optional[float] = ..., amsgrad: _Optional[bool] = ..., maximize: _Optional[bool] = ...) -> None: ...

class AdamWStepResponse(_message.Message):
    __slots__ = ("params", "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "step")
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    EXP_AVG_FIELD_NUMBER: _ClassVar[int]
    EXP_AVG_SQ_FIELD_NUMBER: _ClassVar[int]
    MAX_EXP_AVG_SQ_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    params: Tensor
    exp_avg: Tensor
    exp_avg_sq: Tensor
    max_exp_avg_sq: Tensor
    step: int
    def __init__(self, params: _Optional[_Union[Tensor, _Mapping]] = ..., exp_avg: _Optional[_Union[Tensor, _Mapping]] = ..., exp_avg_sq: _Optional[_Union[Tensor, _Mapping]] = ..., max_exp_avg_sq: _Optional[_Union[Tensor, _Mapping]] = ..., step: _Optional[int] = ...) -> None: ...

class SgdStepRequest(_message.Message):
    __slots__ = ("params", "grads", "momentum_buffer", "lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize")
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    GRADS_FIELD_NUMBER: _ClassVar[int]
    MOMENTUM_BUFFER_FIELD_NUMBER: _ClassVar[int]
    LR_FIELD_NUMBER: _ClassVar[int]
    MOMENTUM_FIELD_NUMBER: _ClassVar[int]
    DAMPENING_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_DECAY_FIELD_NUMBER: _ClassVar[int]
    NESTEROV_FIELD_NUMBER: _ClassVar[int]
    MAXIMIZE_FIELD_NUMBER: _ClassVar[int]
    params: Tensor
    grads: Tensor
    momentum_buffer: Tensor
    lr: float
    momentum: float
    dampening: float
    weight_decay: float
    nesterov: bool
    maximize: bool
    def __init__(self, params: _Optional[_Union[Tensor, _Mapping]] = ..., grads: _Optional[_Union[Tensor, _Mapping]] = ..., momentum_buffer: _Optional[_Union[Tensor, _Mapping]] = ..., lr: _Optional[float] = ..., momentum: _Optional[float] = ..., dampening: _Optional[float] = ..., weight_decay: _Optional[float] = ..., nesterov: _Optional[bool] = ..., maximize: _Optional[bool] = ...) -> None: ...

class SgdStepResponse(_message.Message):
    __slots__ = ("params", "momentum_buffer")
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    MOMENTUM_BUFFER_FIELD_NUMBER: _ClassVar[int]
    params: Tensor
    momentum_buffer: Tensor
    def __init__(self, params: _Optional[_Union[Tensor, _Mapping]] = ..., momentum_buffer: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class BenchRequest(_message.Message):
    __slots__ = ("softmax", "log_softmax", "cross_entropy", "selective_log_softmax", "dpo_loss", "group_advantages", "grpo_loss", "kl_k3", "adamw_step", "sgd_step", "iterations", "warmup")
    SOFTMAX_FIELD_NUMBER: _ClassVar[int]
    LOG_SOFTMAX_FIELD_NUMBER: _ClassVar[int]
    CROSS_ENTROPY_FIELD_NUMBER: _ClassVar[int]
    SELECTIVE_LOG_SOFTMAX_FIELD_NUMBER: _ClassVar[int]
    DPO_LOSS_FIELD_NUMBER: _ClassVar[int]
    GROUP_ADVANTAGES_FIELD_NUMBER: _ClassVar[int]
    GRPO_LOSS_FIELD_NUMBER: _ClassVar[int]
    KL_K3_FIELD_NUMBER: _ClassVar[int]
    ADAMW_STEP_FIELD_NUMBER: _ClassVar[int]
    SGD_STEP_FIELD_NUMBER: _ClassVar[int]
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    WARMUP_FIELD_NUMBER: _ClassVar[int]
    softmax: SoftmaxRequest
    log_softmax: SoftmaxRequest
    cross_entropy: CrossEntropyRequest
    selective_log_softmax: SelectiveLogSoftmaxRequest
    dpo_loss: DpoLossRequest
    group_advantages: GroupAdvantagesRequest
    grpo_loss: GrpoLossRequest
    kl_k3: KlK3Request
    adamw_step: AdamWStepRequest
    sgd_step: SgdStepRequest
    iterations: int
    warmup: int
    def __init__(self, softmax: _Optional[_Union[SoftmaxRequest, _Mapping]] = ..., log_softmax: _Optional[_Union[SoftmaxRequest, _Mapping]] = ..., cross_entropy: _Optional[_Union[CrossEntropyRequest, _Mapping]] = ..., selective_log_softmax: _Optional[_Union[SelectiveLogSoftmaxRequest, _Mapping]] = ..., dpo_loss: _Optional[_Union[DpoLossRequest, _Mapping]] = ..., group_advantages: _Optional[_Union[GroupAdvantagesRequest, _Mapping]] = ..., grpo_loss: _Optional[_Union[GrpoLossRequest, _Mapping]] = ..., kl_k3: _Optional[_Union[KlK3Request, _Mapping]] = ..., adamw_step: _Optional[_Union[AdamWStepRequest, _Mapping]] = ..., sgd_step: _Optional[_Union[SgdStepRequest, _Mapping]] = ..., iterations: _Optional[int] = ..., warmup: _Optional[int] = ...) -> None: ...

class BenchResponse(_message.Message):
    __slots__ = ("seconds", "threads", "simd")
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    THREADS_FIELD_NUMBER: _ClassVar[int]
    SIMD_FIELD_NUMBER: _ClassVar[int]
    seconds: _containers.RepeatedScalarFieldContainer[float]
    threads: int
    simd: str
    def __init__(self, seconds: _Optional[_Iterable[float]] = ..., threads: _Optional[int] = ..., simd: _Optional[str] = ...) -> None: ...
