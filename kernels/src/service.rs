//! The gRPC service: decodes each request into a typed job (validating every field), runs the op, and
//! encodes the response. Small jobs run on the async worker that received them; large ones on the rayon
//! pool, so the runtime keeps serving while they compute. A panic in an op would be a bug: it becomes
//! INTERNAL for that request only and the server carries on.

use std::hint::black_box;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use prost::Message;
use tonic::{Request, Response, Status};
use tracing::{debug, error};

use crate::ops::{dpo, grpo, kl, optim, softmax, PARALLEL_MIN_WORK};
use crate::pb::{self, bench_request::Op as BenchOp, kernel_service_server::KernelService};
use crate::simd::{self, Real};
use crate::tensor::{
    decode_float, decode_i64, decode_optional, encode, finite_param, float_kind, required, FloatKind,
    OpError, OpResult, Tensor, Values,
};

/// A request decoded into typed tensors, ready to run. Benchmarks clone it before each timed run.
pub trait Job: Sized + Clone + Send + 'static {
    type Request: Message + Send + 'static;
    type Output: Send + 'static;
    type Response: Send + 'static;
    /// The float dtype of the request, from its first tensor.
    fn kind(request: &Self::Request) -> OpResult<FloatKind>;
    fn decode(request: &Self::Request) -> OpResult<Self>;
    fn run(self) -> OpResult<Self::Output>;
    fn encode(output: Self::Output) -> Self::Response;
}

/// Encoded requests at least this large are decoded, computed and encoded on the rayon pool.
const OFFLOAD_MIN_BYTES: usize = PARALLEL_MIN_WORK * 4;

fn invalid(op: &str, err: OpError) -> Status {
    debug!(op, error = %err, "invalid request");
    Status::from(err)
}

/// Runs `f`, turning a panic (a bug) into INTERNAL instead of losing the worker.
fn guarded<R>(op: &'static str, f: impl FnOnce() -> OpResult<R>) -> Result<R, Status> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(result)) => Ok(result),
        Ok(Err(err)) => Err(invalid(op, err)),
        Err(_) => {
            error!(op, "kernel panicked");
            Err(Status::internal(format!("{op}: the kernel failed unexpectedly")))
        }
    }
}

/// Runs `f` on the rayon pool and waits for it without blocking the async runtime.
async fn on_pool<R: Send + 'static>(
    op: &'static str,
    f: impl FnOnce() -> OpResult<R> + Send + 'static,
) -> Result<R, Status> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        // The receiver is gone only when the client went away; nothing is left to tell.
        let _ = tx.send(guarded(op, f));
    });
    rx.await.map_err(|_| Status::internal(format!("{op}: the kernel task ended without a result")))?
}

fn decode_run_encode<J: Job>(request: &J::Request) -> OpResult<J::Response> {
    let job = J::decode(request)?;
    Ok(J::encode(job.run()?))
}

/// Serves one request of the op whose float32 and float64 jobs are `J32` and `J64`.
async fn execute<J32, J64>(
    op: &'static str,
    request: Request<J32::Request>,
) -> Result<Response<J32::Response>, Status>
where
    J32: Job,
    J64: Job<Request = J32::Request, Response = J32::Response>,
{
    let request = request.into_inner();
    let kind = J32::kind(&request).map_err(|e| invalid(op, e))?;
    let offload = request.encoded_len() >= OFFLOAD_MIN_BYTES;
    let work = move || match kind {
        FloatKind::F32 => decode_run_encode::<J32>(&request),
        FloatKind::F64 => decode_run_encode::<J64>(&request),
    };
    let response = if offload { on_pool(op, work).await? } else { guarded(op, work)? };
    Ok(Response::new(response))
}

fn kind_of(field: &str, tensor: &Option<pb::Tensor>) -> OpResult<FloatKind> {
    float_kind(field, required(field, tensor)?)
}

fn float<T: Real>(field: &str, tensor: &Option<pb::Tensor>, values: Values) -> OpResult<Tensor<T>> {
    decode_float(field, required(field, tensor)?, values)
}

fn encode_vec<T: Real>(data: Vec<T>) -> Option<pb::Tensor> {
    Some(encode(&Tensor::from_vec(data)))
}

// ---------------------------------------------------------------------------------------------------
// softmax / log_softmax

#[derive(Clone)]
pub struct SoftmaxJob<T, const LOG: bool> {
    logits: Tensor<T>,
    grad_output: Option<Tensor<T>>,
}

impl<T: Real, const LOG: bool> Job for SoftmaxJob<T, LOG> {
    type Request = pb::SoftmaxRequest;
    type Output = (Tensor<T>, Option<Tensor<T>>);
    type Response = pb::SoftmaxResponse;

    fn kind(r: &Self::Request) -> OpResult<FloatKind> {
        kind_of("logits", &r.logits)
    }
    fn decode(r: &Self::Request) -> OpResult<Self> {
        Ok(SoftmaxJob {
            logits: float("logits", &r.logits, Values::Finite)?,
            grad_output: decode_optional("grad_output", &r.grad_output, Values::Finite)?,
        })
    }
    fn run(self) -> OpResult<Self::Output> {
        if LOG {
            softmax::log_softmax(&self.logits, self.grad_output.as_ref())
        } else {
            softmax::softmax(&self.logits, self.grad_output.as_ref())
        }
    }
    fn encode((output, grad): Self::Output) -> Self::Response {
        pb::SoftmaxResponse { output: Some(encode(&output)), grad_logits: grad.as_ref().map(encode) }
    }
}

// ---------------------------------------------------------------------------------------------------
// cross-entropy

#[derive(Clone)]
pub struct CrossEntropyJob<T> {
    logits: Tensor<T>,
    labels: Tensor<i64>,
    ignore_index: i64,
    normalizer: Option<f64>,
}

impl<T: Real> Job for CrossEntropyJob<T> {
    type Request = pb::CrossEntropyRequest;
    type Output = softmax::CrossEntropy<T>;
    type Response = pb::CrossEntropyResponse;

    fn kind(r: &Self::Request) -> OpResult<FloatKind> {
        kind_of("logits", &r.logits)
    }
    fn decode(r: &Self::Request) -> OpResult<Self> {
        Ok(CrossEntropyJob {
            logits: float("logits", &r.logits, Values::Finite)?,
            labels: decode_i64("labels", required("labels", &r.labels)?)?,
            ignore_index: r.ignore_index.unwrap_or(-100),
            normalizer: r.normalizer,
        })
    }
    fn run(self) -> OpResult<Self::Output> {
        softmax::cross_entropy(&self.logits, &self.labels, self.ignore_index, self.normalizer)
    }
    fn encode(out: Self::Output) -> Self::Response {
        pb::CrossEntropyResponse {
            loss: out.loss.to_f64(),
            grad_logits: Some(encode(&out.grad_logits)),
            num_tokens: out.num_tokens,
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// selective log-softmax

#[derive(Clone)]
pub struct SelectiveJob<T> {
    logits: Tensor<T>,
    labels: Tensor<i64>,
    grad_output: Option<Tensor<T>>,
    temperature: f64,
}

impl<T: Real> Job for SelectiveJob<T> {
    type Request = pb::SelectiveLogSoftmaxRequest;
    type Output = (Tensor<T>, Option<Tensor<T>>);
    type Response = pb::SelectiveLogSoftmaxResponse;

    fn kind(r: &Self::Request) -> OpResult<FloatKind> {
        kind_of("logits", &r.logits)
    }
    fn decode(r: &Self::Request) -> OpResult<Self> {
        Ok(SelectiveJob {
            logits: float("logits", &r.logits, Values::Finite)?,
            labels: decode_i64("labels", required("labels", &r.labels)?)?,
            grad_output: decode_optional("grad_output", &r.grad_output, Values::Finite)?,
            temperature: r.temperature.unwrap_or(1.0),
        })
    }
    fn run(self) -> OpResult<Self::Output> {
        softmax::selective_log_softmax(
            &self.logits,
            &self.labels,
            self.grad_output.as_ref(),
            self.temperature,
        )
    }
    fn encode((logps, grad): Self::Output) -> Self::Response {
        pb::SelectiveLogSoftmaxResponse {
            logps: Some(encode(&logps)),
            grad_logits: grad.as_ref().map(encode),
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// DPO

#[derive(Clone)]
pub struct DpoJob<T> {
    policy_chosen: Tensor<T>,
    policy_rejected: Tensor<T>,
    ref_chosen: Tensor<T>,
    ref_rejected: Tensor<T>,
    chosen_lengths: Option<Tensor<T>>,
    rejected_lengths: Option<Tensor<T>>,
    config: dpo::DpoConfig,
}

impl<T: Real> Job for DpoJob<T> {
    type Request = pb::DpoLossRequest;
    type Output = dpo::DpoOutputs<T>;
    type Response = pb::DpoLossResponse;

    fn kind(r: &Self::Request) -> OpResult<FloatKind> {
        kind_of("policy_chosen_logps", &r.policy_chosen_logps)
    }
    fn decode(r: &Self::Request) -> OpResult<Self> {
        let config =
            dpo::DpoConfig::new(r.beta.unwrap_or(0.1), &r.loss_types, &r.loss_weights, r.label_smoothing)?;
        Ok(DpoJob {
            policy_chosen: float("policy_chosen_logps", &r.policy_chosen_logps, Values::Finite)?,
            policy_rejected: float("policy_rejected_logps", &r.policy_rejected_logps, Values::Finite)?,
            ref_chosen: float("ref_chosen_logps", &r.ref_chosen_logps, Values::Finite)?,
            ref_rejected: float("ref_rejected_logps", &r.ref_rejected_logps, Values::Finite)?,
            chosen_lengths: decode_optional("chosen_lengths", &r.chosen_lengths, Values::Finite)?,
            rejected_lengths: decode_optional("rejected_lengths", &r.rejected_lengths, Values::Finite)?,
            config,
        })
    }
    fn run(self) -> OpResult<Self::Output> {
        let inputs = dpo::DpoInputs {
            policy_chosen_logps: &self.policy_chosen,
            policy_rejected_logps: &self.policy_rejected,
            ref_chosen_logps: &self.ref_chosen,
            ref_rejected_logps: &self.ref_rejected,
            chosen_lengths: self.chosen_lengths.as_ref(),
            rejected_lengths: self.rejected_lengths.as_ref(),
        };
        dpo::dpo_loss(&inputs, &self.config)
    }
    fn encode(out: Self::Output) -> Self::Response {
        pb::DpoLossResponse {
            loss: out.loss.to_f64(),
            grad_policy_chosen_logps: encode_vec(out.grad_policy_chosen_logps),
            grad_policy_rejected_logps: encode_vec(out.grad_policy_rejected_logps),
            chosen_rewards: encode_vec(out.chosen_rewards),
            rejected_rewards: encode_vec(out.rejected_rewards),
            margins: encode_vec(out.margins),
            accuracies: encode_vec(out.accuracies),
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// GRPO

#[derive(Clone)]
pub struct AdvantagesJob<T> {
    rewards: Tensor<T>,
    num_generations: usize,
    scale: grpo::ScaleRewards,
}

impl<T: Real> Job for AdvantagesJob<T> {
    type Request = pb::GroupAdvantagesRequest;
    type Output = grpo::Advantages<T>;
    type Response = pb::GroupAdvantagesResponse;

    fn kind(r: &Self::Request) -> OpResult<FloatKind> {
        kind_of("rewards", &r.rewards)
    }
    fn decode(r: &Self::Request) -> OpResult<Self> {
        let num_generations = usize::try_from(r.num_generations)
            .map_err(|_| OpError::new("num_generations", format!("{} is too large", r.num_generations)))?;
        Ok(AdvantagesJob {
            rewards: float("rewards", &r.rewards, Values::NanAllowed)?,
            num_generations,
            scale: grpo::ScaleRewards::parse(&r.scale_rewards)?,
        })
    }
    fn run(self) -> OpResult<Self::Output> {
        grpo::group_advantages(&self.rewards, self.num_generations, self.scale)
    }
    fn encode(out: Self::Output) -> Self::Response {
        pb::GroupAdvantagesResponse {
            advantages: encode_vec(out.advantages),
            group_mean: encode_vec(out.group_mean),
            std: encode_vec(out.std),
            frac_reward_zero_std: out.frac_reward_zero_std,
        }
    }
}

#[derive(Clone)]
pub struct GrpoJob<T> {
    per_token_logps: Tensor<T>,
    advantages: Tensor<T>,
    mask: Tensor<T>,
    old_per_token_logps: Option<Tensor<T>>,
    ref_per_token_logps: Option<Tensor<T>>,
    config: grpo::GrpoConfig,
}

impl<T: Real> Job for GrpoJob<T> {
    type Request = pb::GrpoLossRequest;
    type Output = grpo::GrpoOutputs<T>;
    type Response = pb::GrpoLossResponse;

    fn kind(r: &Self::Request) -> OpResult<FloatKind> {
        kind_of("per_token_logps", &r.per_token_logps)
    }
    fn decode(r: &Self::Request) -> OpResult<Self> {
        let epsilon_low = finite_param("epsilon_low", r.epsilon_low.unwrap_or(0.2))?;
        let max_completion_length = match r.max_completion_length {
            0 => None,
            n => Some(usize::try_from(n).map_err(|_| OpError::new("max_completion_length", "is too large"))?),
        };
        let config = grpo::GrpoConfig {
            loss_type: grpo::GrpoLossType::parse(&r.loss_type)?,
            beta: r.beta,
            epsilon_low,
            epsilon_high: r.epsilon_high.unwrap_or(epsilon_low),
            delta: r.delta,
            max_completion_length,
            normalizer: r.normalizer,
            use_bias_correction_kl: r.use_bias_correction_kl,
        };
        config.validate()?;
        Ok(GrpoJob {
            per_token_logps: float("per_token_logps", &r.per_token_logps, Values::Finite)?,
            advantages: float("advantages", &r.advantages, Values::Finite)?,
            mask: float("mask", &r.mask, Values::Finite)?,
            old_per_token_logps: decode_optional(
                "old_per_token_logps",
                &r.old_per_token_logps,
                Values::Finite,
            )?,
            ref_per_token_logps: decode_optional(
                "ref_per_token_logps",
                &r.ref_per_token_logps,
                Values::Finite,
            )?,
            config,
        })
    }
    fn run(self) -> OpResult<Self::Output> {
        let inputs = grpo::GrpoInputs {
            per_token_logps: &self.per_token_logps,
            advantages: &self.advantages,
            mask: &self.mask,
            old_per_token_logps: self.old_per_token_logps.as_ref(),
            ref_per_token_logps: self.ref_per_token_logps.as_ref(),
        };
        grpo::grpo_loss(&inputs, &self.config)
    }
    fn encode(out: Self::Output) -> Self::Response {
        pb::GrpoLossResponse {
            loss: out.loss.to_f64(),
            grad_per_token_logps: Some(encode(&out.grad_per_token_logps)),
            clip_ratio_low_mean: out.clip_ratio_low_mean,
            clip_ratio_high_mean: out.clip_ratio_high_mean,
            clip_ratio_region_mean: out.clip_ratio_region_mean,
            clip_ratio_low_min: out.clip_ratio_low_min,
            clip_ratio_high_max: out.clip_ratio_high_max,
            kl_mean: out.kl_mean,
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// k3 KL

#[derive(Clone)]
pub struct KlJob<T> {
    logps: Tensor<T>,
    ref_logps: Tensor<T>,
    grad_output: Option<Tensor<T>>,
}

impl<T: Real> Job for KlJob<T> {
    type Request = pb::KlK3Request;
    type Output = (Tensor<T>, Option<Tensor<T>>);
    type Response = pb::KlK3Response;

    fn kind(r: &Self::Request) -> OpResult<FloatKind> {
        kind_of("logps", &r.logps)
    }
    fn decode(r: &Self::Request) -> OpResult<Self> {
        Ok(KlJob {
            logps: float("logps", &r.logps, Values::Finite)?,
            ref_logps: float("ref_logps", &r.ref_logps, Values::Finite)?,
            grad_output: decode_optional("grad_output", &r.grad_output, Values::Finite)?,
        })
    }
    fn run(self) -> OpResult<Self::Output> {
        kl::kl_k3(&self.logps, &self.ref_logps, self.grad_output.as_ref())
    }
    fn encode((kl, grad): Self::Output) -> Self::Response {
        pb::KlK3Response { kl: Some(encode(&kl)), grad_logps: grad.as_ref().map(encode) }
    }
}

// ---------------------------------------------------------------------------------------------------
// optimizers

#[derive(Clone)]
pub struct AdamWJob<T> {
    params: Tensor<T>,
    grads: Tensor<T>,
    exp_avg: Option<Tensor<T>>,
    exp_avg_sq: Option<Tensor<T>>,
    max_exp_avg_sq: Option<Tensor<T>>,
    step: u64,
    config: optim::AdamWConfig,
}

impl<T: Real> Job for AdamWJob<T> {
    type Request = pb::AdamWStepRequest;
    type Output = (Tensor<T>, optim::AdamWState<T>);
    type Response = pb::AdamWStepResponse;

    fn kind(r: &Self::Request) -> OpResult<FloatKind> {
        kind_of("params", &r.params)
    }
    fn decode(r: &Self::Request) -> OpResult<Self> {
        let config = optim::AdamWConfig {
            lr: r.lr.unwrap_or(1e-3),
            beta1: r.beta1.unwrap_or(0.9),
            beta2: r.beta2.unwrap_or(0.999),
            eps: r.eps.unwrap_or(1e-8),
            weight_decay: r.weight_decay.unwrap_or(1e-2),
            amsgrad: r.amsgrad,
            maximize: r.maximize,
        };
        config.validate()?;
        Ok(AdamWJob {
            params: float("params", &r.params, Values::Finite)?,
            grads: float("grads", &r.grads, Values::Finite)?,
            exp_avg: decode_optional("exp_avg", &r.exp_avg, Values::Finite)?,
            exp_avg_sq: decode_optional("exp_avg_sq", &r.exp_avg_sq, Values::Finite)?,
            max_exp_avg_sq: decode_optional("max_exp_avg_sq", &r.max_exp_avg_sq, Values::Finite)?,
            step: r.step,
            config,
        })
    }
    fn run(self) -> OpResult<Self::Output> {
        optim::adamw_step(
            self.params,
            &self.grads,
            self.exp_avg,
            self.exp_avg_sq,
            self.max_exp_avg_sq,
            self.step,
            &self.config,
        )
    }
    fn encode((params, state): Self::Output) -> Self::Response {
        pb::AdamWStepResponse {
            params: Some(encode(&params)),
            exp_avg: encode_vec(state.exp_avg),
            exp_avg_sq: encode_vec(state.exp_avg_sq),
            max_exp_avg_sq: state.max_exp_avg_sq.and_then(encode_vec),
            step: state.step,
        }
    }
}

#[derive(Clone)]
pub struct SgdJob<T> {
    params: Tensor<T>,
    grads: Tensor<T>,
    momentum_buffer: Option<Tensor<T>>,
    config: optim::SgdConfig,
}

impl<T: Real> Job for SgdJob<T> {
    type Request = pb::SgdStepRequest;
    type Output = (Tensor<T>, Option<Vec<T>>);
    type Response = pb::SgdStepResponse;

    fn kind(r: &Self::Request) -> OpResult<FloatKind> {
        kind_of("params", &r.params)
    }
    fn decode(r: &Self::Request) -> OpResult<Self> {
        let config = optim::SgdConfig {
            lr: r.lr.unwrap_or(1e-3),
            momentum: r.momentum,
            dampening: r.dampening,
            weight_decay: r.weight_decay,
            nesterov: r.nesterov,
            maximize: r.maximize,
        };
        config.validate()?;
        Ok(SgdJob {
            params: float("params", &r.params, Values::Finite)?,
            grads: float("grads", &r.grads, Values::Finite)?,
            momentum_buffer: decode_optional("momentum_buffer", &r.momentum_buffer, Values::Finite)?,
            config,
        })
    }
    fn run(self) -> OpResult<Self::Output> {
        optim::sgd_step(self.params, &self.grads, self.momentum_buffer, &self.config)
    }
    fn encode((params, buffer): Self::Output) -> Self::Response {
        pb::SgdStepResponse { params: Some(encode(&params)), momentum_buffer: buffer.and_then(encode_vec) }
    }
}

// ---------------------------------------------------------------------------------------------------
// benchmarks

/// Most timed runs one Bench call may ask for.
const MAX_BENCH_RUNS: u32 = 100_000;

fn time_job<J: Job>(request: &J::Request, warmup: u32, iterations: u32) -> OpResult<Vec<f64>> {
    let job = J::decode(request)?;
    for _ in 0..warmup {
        black_box(job.clone().run()?);
    }
    let mut seconds = Vec::with_capacity(iterations as usize);
    for _ in 0..iterations {
        let input = job.clone(); // untimed: the service moves the decoded request into the op
        let start = Instant::now();
        black_box(input.run()?); // the output is dropped inside the timed region
        seconds.push(start.elapsed().as_secs_f64());
    }
    Ok(seconds)
}

fn time_op<J32, J64>(request: &J32::Request, warmup: u32, iterations: u32) -> OpResult<Vec<f64>>
where
    J32: Job,
    J64: Job<Request = J32::Request>,
{
    match J32::kind(request)? {
        FloatKind::F32 => time_job::<J32>(request, warmup, iterations),
        FloatKind::F64 => time_job::<J64>(request, warmup, iterations),
    }
}

fn time_bench_op(op: &BenchOp, warmup: u32, iterations: u32) -> OpResult<Vec<f64>> {
    match op {
        BenchOp::Softmax(r) => {
            time_op::<SoftmaxJob<f32, false>, SoftmaxJob<f64, false>>(r, warmup, iterations)
        }
        BenchOp::LogSoftmax(r) => {
            time_op::<SoftmaxJob<f32, true>, SoftmaxJob<f64, true>>(r, warmup, iterations)
        }
        BenchOp::CrossEntropy(r) => {
            time_op::<CrossEntropyJob<f32>, CrossEntropyJob<f64>>(r, warmup, iterations)
        }
        BenchOp::SelectiveLogSoftmax(r) => {
            time_op::<SelectiveJob<f32>, SelectiveJob<f64>>(r, warmup, iterations)
        }
        BenchOp::DpoLoss(r) => time_op::<DpoJob<f32>, DpoJob<f64>>(r, warmup, iterations),
        BenchOp::GroupAdvantages(r) => {
            time_op::<AdvantagesJob<f32>, AdvantagesJob<f64>>(r, warmup, iterations)
        }
        BenchOp::GrpoLoss(r) => time_op::<GrpoJob<f32>, GrpoJob<f64>>(r, warmup, iterations),
        BenchOp::KlK3(r) => time_op::<KlJob<f32>, KlJob<f64>>(r, warmup, iterations),
        BenchOp::AdamwStep(r) => time_op::<AdamWJob<f32>, AdamWJob<f64>>(r, warmup, iterations),
        BenchOp::SgdStep(r) => time_op::<SgdJob<f32>, SgdJob<f64>>(r, warmup, iterations),
    }
}

// ---------------------------------------------------------------------------------------------------

/// The kernel service. `bench_enabled` turns on the Bench RPC (off in production: it burns CPU on demand).
#[derive(Clone, Debug, Default)]
pub struct KernelsService {
    bench_enabled: bool,
}

impl KernelsService {
    pub fn new(bench_enabled: bool) -> Self {
        KernelsService { bench_enabled }
    }
}

#[tonic::async_trait]
impl KernelService for KernelsService {
    async fn softmax(&self, r: Request<pb::SoftmaxRequest>) -> Result<Response<pb::SoftmaxResponse>, Status> {
        execute::<SoftmaxJob<f32, false>, SoftmaxJob<f64, false>>("softmax", r).await
    }

    async fn log_softmax(
        &self,
        r: Request<pb::SoftmaxRequest>,
    ) -> Result<Response<pb::SoftmaxResponse>, Status> {
        execute::<SoftmaxJob<f32, true>, SoftmaxJob<f64, true>>("log_softmax", r).await
    }

    async fn cross_entropy(
        &self,
        r: Request<pb::CrossEntropyRequest>,
    ) -> Result<Response<pb::CrossEntropyResponse>, Status> {
        execute::<CrossEntropyJob<f32>, CrossEntropyJob<f64>>("cross_entropy", r).await
    }

    async fn selective_log_softmax(
        &self,
        r: Request<pb::SelectiveLogSoftmaxRequest>,
    ) -> Result<Response<pb::SelectiveLogSoftmaxResponse>, Status> {
        execute::<SelectiveJob<f32>, SelectiveJob<f64>>("selective_log_softmax", r).await
    }

    async fn dpo_loss(
        &self,
        r: Request<pb::DpoLossRequest>,
    ) -> Result<Response<pb::DpoLossResponse>, Status> {
        execute::<DpoJob<f32>, DpoJob<f64>>("dpo_loss", r).await
    }

    async fn group_advantages(
        &self,
        r: Request<pb::GroupAdvantagesRequest>,
    ) -> Result<Response<pb::GroupAdvantagesResponse>, Status> {
        execute::<AdvantagesJob<f32>, AdvantagesJob<f64>>("group_advantages", r).await
    }

    async fn grpo_loss(
        &self,
        r: Request<pb::GrpoLossRequest>,
    ) -> Result<Response<pb::GrpoLossResponse>, Status> {
        execute::<GrpoJob<f32>, GrpoJob<f64>>("grpo_loss", r).await
    }

    async fn kl_k3(&self, r: Request<pb::KlK3Request>) -> Result<Response<pb::KlK3Response>, Status> {
        execute::<KlJob<f32>, KlJob<f64>>("kl_k3", r).await
    }

    async fn adam_w_step(
        &self,
        r: Request<pb::AdamWStepRequest>,
    ) -> Result<Response<pb::AdamWStepResponse>, Status> {
        execute::<AdamWJob<f32>, AdamWJob<f64>>("adamw_step", r).await
    }

    async fn sgd_step(
        &self,
        r: Request<pb::SgdStepRequest>,
    ) -> Result<Response<pb::SgdStepResponse>, Status> {
        execute::<SgdJob<f32>, SgdJob<f64>>("sgd_step", r).await
    }

    async fn bench(&self, r: Request<pb::BenchRequest>) -> Result<Response<pb::BenchResponse>, Status> {
        if !self.bench_enabled {
            return Err(Status::failed_precondition("bench: the server runs without --enable-bench"));
        }
        let request = r.into_inner();
        let (warmup, iterations) = (request.warmup, request.iterations);
        if !(1..=MAX_BENCH_RUNS).contains(&iterations) {
            return Err(invalid(
                "bench",
                OpError::new("iterations", format!("must be in 1..={MAX_BENCH_RUNS}")),
            ));
        }
        if warmup > MAX_BENCH_RUNS {
            return Err(invalid(
                "bench",
                OpError::new("warmup", format!("must be at most {MAX_BENCH_RUNS}")),
            ));
        }
        let op = request.op.ok_or_else(|| invalid("bench", OpError::new("op", "required")))?;
        let seconds = on_pool("bench", move || time_bench_op(&op, warmup, iterations)).await?;
        Ok(Response::new(pb::BenchResponse {
            seconds,
            threads: rayon::current_num_threads() as u32,
            simd: simd::level().name().to_string(),
        }))
    }
}
