//! GRPO as TRL 1.x's `GRPOTrainer` computes it: group-relative advantages from summed rewards, and the
//! clipped surrogate on per-token log-probs (token-level importance sampling) with an optional k3 KL
//! penalty, aggregated the grpo / bnpo / dr_grpo / dapo way, with TRL's clip-ratio metrics.
//!
//! ```text
//! ratio  = exp(logp - old_logp)                 (1 when old_logp is not given: on-policy)
//! clipped = clamp(ratio, 1 - eps_low, 1 + eps_high);  ratio = min(ratio, delta) when delta is set
//! token_loss = -min(ratio * A, clipped * A) + beta * k3(ref_logp, logp) [* ratio with bias correction]
//! grpo:    mean_b( sum_t(token_loss * mask) / max(sum_t mask, 1) )
//! bnpo:    sum(token_loss * mask) / max(sum(mask), 1)
//! dr_grpo: sum(token_loss * mask) / (B * max_completion_length)
//! dapo:    sum(token_loss * mask) / normalizer      (default max(sum(mask), 1))
//! ```
//!
//! The gradient follows torch's autograd conventions where the math is not differentiable: `clamp`
//! passes the gradient strictly inside its bounds only (torch 2.x: zero at a bound), `minimum` splits
//! it evenly between equal operands.
//! TRL divides the grpo / bnpo / dr_grpo loss by the gradient-accumulation steps afterwards; the caller
//! does that (and folds it into `normalizer` for dapo).

use crate::multiversion;
use crate::simd::Real;
use crate::tensor::{expect_rank, expect_shape, OpError, OpResult, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleRewards {
    Group,
    Batch,
    None,
}

impl ScaleRewards {
    pub fn parse(name: &str) -> OpResult<Self> {
        match name {
            "" | "group" | "true" | "True" => Ok(ScaleRewards::Group),
            "batch" => Ok(ScaleRewards::Batch),
            "none" | "false" | "False" => Ok(ScaleRewards::None),
            other => Err(OpError::new(
                "scale_rewards",
                format!("unknown mode {other:?} (expected group, batch or none)"),
            )),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Advantages<T> {
    pub advantages: Vec<T>,
    pub group_mean: Vec<T>,
    pub std: Vec<T>,
    pub frac_reward_zero_std: f64,
}

/// NaN-ignoring mean and Bessel-corrected std (TRL's `nanmean` / `nanstd`), accumulated in f64: std is
/// NaN with fewer than two values, the mean NaN with none. When every value is the same, the mean is
/// that value exactly (and so the std exactly 0), whatever the rounding of the sum.
fn nan_mean_std(values: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let (mut count, mut sum) = (0usize, 0.0f64);
    let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.clone().filter(|v| !v.is_nan()) {
        sum += v;
        count += 1;
        low = low.min(v);
        high = high.max(v);
    }
    if count == 0 {
        return (f64::NAN, f64::NAN);
    }
    let n = count as f64;
    let mean = if low == high { low } else { sum / n };
    let squares: f64 = values.filter(|v| !v.is_nan()).map(|v| (v - mean) * (v - mean)).sum();
    if count < 2 {
        return (mean, f64::NAN);
    }
    (mean, (squares / n * (n / (n - 1.0))).sqrt())
}

/// Group-relative advantages (TRL's `sum_then_normalize`): `(r - group_mean) / (std + 1e-4)` with std per
/// group (`group`) or over the batch (`batch`), or `r - group_mean` (`none`); NaN rewards mark unscorable
/// completions, are left out of the statistics, and their advantages (like any NaN advantage) become 0.
///
/// The statistics and advantages are computed in f64 and returned in `T`, and a group whose rewards are
/// all equal gets a mean of exactly that reward. TRL's arithmetic (in the rewards' dtype, summing in
/// whatever order torch does) can leave rounding noise of about ulp(r) / 1e-4 in the advantages of such
/// a group and a std that is not quite 0; here they come out exactly 0.
pub fn group_advantages<T: Real>(
    rewards: &Tensor<T>,
    num_generations: usize,
    scale: ScaleRewards,
) -> OpResult<Advantages<T>> {
    expect_rank("rewards", rewards, 1, "one summed reward per completion")?;
    let n = rewards.len();
    if num_generations == 0 {
        return Err(OpError::new("num_generations", "must be at least 1"));
    }
    if !n.is_multiple_of(num_generations) {
        return Err(OpError::new(
            "num_generations",
            format!("{n} rewards do not split into groups of {num_generations}"),
        ));
    }
    let wide: Vec<f64> = rewards.data.iter().map(|r| r.to_f64()).collect();
    let mut group_mean = Vec::with_capacity(n);
    let mut std = Vec::with_capacity(n);
    for group in wide.chunks_exact(num_generations) {
        let (mean, group_std) = nan_mean_std(group.iter().copied());
        let group_std = if num_generations > 1 { group_std } else { 0.0 };
        for _ in group {
            group_mean.push(mean);
            std.push(group_std);
        }
    }
    if scale == ScaleRewards::Batch {
        let batch_std = if n > 1 { nan_mean_std(wide.iter().copied()).1 } else { 0.0 };
        std.iter_mut().for_each(|s| *s = batch_std);
    }
    let advantages = wide
        .iter()
        .zip(&group_mean)
        .zip(&std)
        .map(|((&r, &mean), &s)| {
            let centered = r - mean;
            let a = if scale == ScaleRewards::None { centered } else { centered / (s + 1e-4) };
            if a.is_nan() {
                T::ZERO
            } else {
                T::from_f64(a)
            }
        })
        .collect();
    // torch.isclose(std, 0): |std| <= 1e-8, NaN never; TRL averages the flags in float32.
    let zero_std = std.iter().filter(|s| s.abs() <= 1e-8).count();
    let frac_reward_zero_std = (zero_std as f32 / n as f32) as f64;
    Ok(Advantages {
        advantages,
        group_mean: group_mean.into_iter().map(T::from_f64).collect(),
        std: std.into_iter().map(T::from_f64).collect(),
        frac_reward_zero_std,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrpoLossType {
    Grpo,
    Bnpo,
    DrGrpo,
    Dapo,
}

impl GrpoLossType {
    pub fn parse(name: &str) -> OpResult<Self> {
        match name {
            "grpo" => Ok(GrpoLossType::Grpo),
            "bnpo" => Ok(GrpoLossType::Bnpo),
            "dr_grpo" => Ok(GrpoLossType::DrGrpo),
            "" | "dapo" => Ok(GrpoLossType::Dapo),
            other => Err(OpError::new(
                "loss_type",
                format!("unknown loss type {other:?} (expected grpo, bnpo, dr_grpo or dapo)"),
            )),
        }
    }
}

#[derive(Clone, Debug)]
pub struct GrpoConfig {
    pub loss_type: GrpoLossType,
    pub beta: f64,
    pub epsilon_low: f64,
    pub epsilon_high: f64,
    pub delta: Option<f64>,
    pub max_completion_length: Option<usize>,
    pub normalizer: Option<f64>,
    pub use_bias_correction_kl: bool,
}

impl GrpoConfig {
    pub fn validate(&self) -> OpResult<()> {
        let finite = |field: &str, v: f64| {
            if v.is_finite() {
                Ok(())
            } else {
                Err(OpError::new(field, format!("must be finite, got {v}")))
            }
        };
        finite("beta", self.beta)?;
        finite("epsilon_low", self.epsilon_low)?;
        finite("epsilon_high", self.epsilon_high)?;
        if self.epsilon_low < 0.0 {
            return Err(OpError::new("epsilon_low", format!("must be >= 0, got {}", self.epsilon_low)));
        }
        if self.epsilon_high < 0.0 {
            return Err(OpError::new("epsilon_high", format!("must be >= 0, got {}", self.epsilon_high)));
        }
        if let Some(delta) = self.delta {
            finite("delta", delta)?;
        }
        if self.loss_type == GrpoLossType::DrGrpo && self.max_completion_length.unwrap_or(0) == 0 {
            return Err(OpError::new("max_completion_length", "required (> 0) by the dr_grpo loss"));
        }
        if let Some(n) = self.normalizer {
            if !(n.is_finite() && n > 0.0) {
                return Err(OpError::new("normalizer", format!("must be finite and > 0, got {n}")));
            }
        }
        Ok(())
    }
}

pub struct GrpoInputs<'a, T> {
    pub per_token_logps: &'a Tensor<T>,
    /// (B,) or (B, T).
    pub advantages: &'a Tensor<T>,
    pub mask: &'a Tensor<T>,
    pub old_per_token_logps: Option<&'a Tensor<T>>,
    pub ref_per_token_logps: Option<&'a Tensor<T>>,
}

#[derive(Clone, Debug)]
pub struct GrpoOutputs<T> {
    pub loss: T,
    pub grad_per_token_logps: Tensor<T>,
    pub clip_ratio_low_mean: f64,
    pub clip_ratio_high_mean: f64,
    pub clip_ratio_region_mean: f64,
    pub clip_ratio_low_min: f64,
    pub clip_ratio_high_max: f64,
    pub kl_mean: Option<f64>,
}

/// What one token contributes: its loss, d loss / d logp, the KL term, and whether it was clipped.
struct TokenTerms<T> {
    loss: T,
    grad: T,
    kl: T,
    low: bool,
    high: bool,
}

#[derive(Clone, Copy)]
struct Clip<T> {
    low: T,
    high: T,
    delta: Option<T>,
    beta: T,
    bias_correction: bool,
}

#[inline(always)]
fn token<T: Real>(ratio: T, d_ratio: T, kl_exp: T, kl_arg: T, advantage: T, clip: &Clip<T>) -> TokenTerms<T> {
    let in_range = ratio > clip.low && ratio < clip.high;
    let clipped = if ratio < clip.low {
        clip.low
    } else if ratio > clip.high {
        clip.high
    } else {
        ratio
    };
    let (coef, d_coef) = match clip.delta {
        Some(delta) if ratio >= delta => (delta, T::ZERO),
        _ => (ratio, d_ratio),
    };
    let unclipped_term = coef * advantage;
    let clipped_term = clipped * advantage;
    let d_unclipped = d_coef * advantage;
    let d_clipped = if in_range { d_ratio * advantage } else { T::ZERO };
    let (surrogate, d_surrogate) = if unclipped_term < clipped_term {
        (unclipped_term, d_unclipped)
    } else if unclipped_term > clipped_term {
        (clipped_term, d_clipped)
    } else {
        (unclipped_term, (d_unclipped + d_clipped) * T::from_f64(0.5))
    };
    let mut loss = -surrogate;
    let mut grad = -d_surrogate;
    let mut kl = T::ZERO;
    if clip.beta != T::ZERO {
        // k3 = exp(ref - logp) - (ref - logp) - 1, d k3 / d logp = 1 - exp(ref - logp)
        kl = kl_exp - kl_arg - T::ONE;
        let mut d_kl = T::ONE - kl_exp;
        if clip.bias_correction {
            d_kl = d_kl * ratio + kl * d_ratio;
            kl *= ratio;
        }
        loss += clip.beta * kl;
        grad += clip.beta * d_kl;
    }
    TokenTerms {
        loss,
        grad,
        kl,
        low: coef < clip.low && advantage < T::ZERO,
        high: coef > clip.high && advantage > T::ZERO,
    }
}

multiversion! {
    /// exp(a - b) into `out` (ratio and KL exponentials of the whole batch in one vectorized pass).
    fn exp_diff<T: Real>(a: &[T], b: &[T], out: &mut [T]) {
        for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
            *o = (a - b).exp_lane::<FUSED>();
        }
    }
}

pub fn grpo_loss<T: Real>(inputs: &GrpoInputs<'_, T>, config: &GrpoConfig) -> OpResult<GrpoOutputs<T>> {
    config.validate()?;
    let logps = inputs.per_token_logps;
    expect_rank("per_token_logps", logps, 2, "batch, completion tokens")?;
    let (batch, tokens) = (logps.shape[0], logps.shape[1]);
    expect_shape("mask", inputs.mask, &logps.shape, "per_token_logps")?;
    let per_token_advantages = match inputs.advantages.shape.as_slice() {
        [b] if *b == batch => false,
        [b, t] if *b == batch && *t == tokens => true,
        other => {
            return Err(OpError::new(
                "advantages.shape",
                format!("{other:?} is neither [{batch}] nor [{batch}, {tokens}] (per_token_logps)"),
            ))
        }
    };
    if let Some(old) = inputs.old_per_token_logps {
        expect_shape("old_per_token_logps", old, &logps.shape, "per_token_logps")?;
    }
    let reference = match inputs.ref_per_token_logps {
        Some(r) => {
            expect_shape("ref_per_token_logps", r, &logps.shape, "per_token_logps")?;
            Some(r)
        }
        None if config.beta != 0.0 => {
            return Err(OpError::new("ref_per_token_logps", "required when beta != 0"));
        }
        None => None,
    };

    let n = logps.len();
    let ratio = match inputs.old_per_token_logps {
        Some(old) => {
            let mut ratio = vec![T::ZERO; n];
            exp_diff(&logps.data, &old.data, &mut ratio);
            ratio
        }
        None => vec![T::ONE; n],
    };
    let kl_exp = match reference {
        Some(r) if config.beta != 0.0 => {
            let mut e = vec![T::ZERO; n];
            exp_diff(&r.data, &logps.data, &mut e);
            e
        }
        _ => Vec::new(),
    };
    let clip = Clip {
        low: T::from_f64(1.0 - config.epsilon_low),
        high: T::from_f64(1.0 + config.epsilon_high),
        delta: config.delta.map(T::from_f64),
        beta: T::from_f64(config.beta),
        bias_correction: config.use_bias_correction_kl,
    };

    // Per-row weights d loss / d token_loss (before the mask) for each aggregation.
    let row_mask_sums: Vec<T> =
        inputs.mask.data.chunks_exact(tokens).map(|row| row.iter().fold(T::ZERO, |a, &b| a + b)).collect();
    let mask_total = row_mask_sums.iter().fold(T::ZERO, |a, &b| a + b);
    let at_least_one = |x: T| if x < T::ONE { T::ONE } else { x };
    let batch_t = T::from_f64(batch as f64);
    let row_weight: Vec<T> = match config.loss_type {
        GrpoLossType::Grpo => row_mask_sums.iter().map(|&s| T::ONE / (at_least_one(s) * batch_t)).collect(),
        GrpoLossType::Bnpo => vec![T::ONE / at_least_one(mask_total); batch],
        GrpoLossType::DrGrpo => {
            let length = T::from_f64(config.max_completion_length.unwrap_or(1) as f64);
            vec![T::ONE / (batch_t * length); batch]
        }
        GrpoLossType::Dapo => {
            let normalizer = config.normalizer.map(T::from_f64).unwrap_or_else(|| at_least_one(mask_total));
            vec![T::ONE / normalizer; batch]
        }
    };

    let mut grad = vec![T::ZERO; n];
    let mut loss = T::ZERO;
    let (mut low_sum, mut high_sum, mut region_sum, mut kl_sum) = (T::ZERO, T::ZERO, T::ZERO, T::ZERO);
    let (mut low_min, mut high_max) = (f64::NAN, f64::NAN);
    for b in 0..batch {
        let (mut row_loss, mut row_low, mut row_high) = (T::ZERO, T::ZERO, T::ZERO);
        for t in 0..tokens {
            let i = b * tokens + t;
            let advantage =
                if per_token_advantages { inputs.advantages.data[i] } else { inputs.advantages.data[b] };
            // d ratio / d logp = ratio; with old_per_token_logps absent TRL uses logp.detach(), so both are 1.
            let d_ratio = ratio[i];
            let (kl_e, kl_arg) = match (kl_exp.get(i), reference) {
                (Some(&e), Some(r)) => (e, r.data[i] - logps.data[i]),
                _ => (T::ONE, T::ZERO),
            };
            let terms = token(ratio[i], d_ratio, kl_e, kl_arg, advantage, &clip);
            let m = inputs.mask.data[i];
            row_loss += terms.loss * m;
            grad[i] = terms.grad * m * row_weight[b];
            if terms.low {
                row_low += m;
                region_sum += m;
            }
            if terms.high {
                row_high += m;
                region_sum += m;
            }
            kl_sum += terms.kl * m;
        }
        loss += row_loss * row_weight[b];
        low_sum += row_low;
        high_sum += row_high;
        // TRL's masked_seq_mean has no clamp: a fully masked row gives NaN, which nanmin/nanmax skip.
        let seq_low = (row_low / row_mask_sums[b]).to_f64();
        let seq_high = (row_high / row_mask_sums[b]).to_f64();
        if !seq_low.is_nan() && (low_min.is_nan() || seq_low < low_min) {
            low_min = seq_low;
        }
        if !seq_high.is_nan() && (high_max.is_nan() || seq_high > high_max) {
            high_max = seq_high;
        }
    }
    let denominator = at_least_one(mask_total);
    Ok(GrpoOutputs {
        loss,
        grad_per_token_logps: Tensor::new(logps.shape.clone(), grad),
        clip_ratio_low_mean: (low_sum / denominator).to_f64(),
        clip_ratio_high_mean: (high_sum / denominator).to_f64(),
        clip_ratio_region_mean: (region_sum / denominator).to_f64(),
        clip_ratio_low_min: low_min,
        clip_ratio_high_max: high_max,
        kl_mean: (config.beta != 0.0).then(|| (kl_sum / denominator).to_f64()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t2(b: usize, t: usize, v: Vec<f64>) -> Tensor<f64> {
        Tensor::new(vec![b, t], v)
    }

    fn config(loss_type: GrpoLossType) -> GrpoConfig {
        GrpoConfig {
            loss_type,
            beta: 0.0,
            epsilon_low: 0.2,
            epsilon_high: 0.28,
            delta: None,
            max_completion_length: Some(8),
            normalizer: None,
            use_bias_correction_kl: false,
        }
    }

    #[test]
    fn group_advantages_use_bessel_std_and_zero_unscorable() {
        let r = Tensor::from_vec(vec![1.0, 2.0, 3.0, 5.0, 5.0, f64::NAN]);
        let out = group_advantages(&r, 3, ScaleRewards::Group).unwrap();
        assert!((out.group_mean[0] - 2.0).abs() < 1e-15);
        assert!((out.std[0] - 1.0).abs() < 1e-15); // sample std of 1, 2, 3
        assert!((out.advantages[2] - 1.0 / 1.0001).abs() < 1e-15);
        assert_eq!(out.std[3], 0.0);
        assert_eq!(&out.advantages[3..], &[0.0, 0.0, 0.0]);
        assert!((out.frac_reward_zero_std - 0.5).abs() < 1e-15);
        let single = group_advantages(&Tensor::from_vec(vec![1.0, 4.0]), 1, ScaleRewards::Group).unwrap();
        assert_eq!(single.advantages, vec![0.0, 0.0]);
        assert_eq!(single.frac_reward_zero_std, 1.0);
        let batch =
            group_advantages(&Tensor::from_vec(vec![0.0, 2.0, 4.0, 6.0]), 2, ScaleRewards::Batch).unwrap();
        let std = (20.0f64 / 3.0).sqrt();
        assert!((batch.advantages[0] - -1.0 / (std + 1e-4)).abs() < 1e-14);
        let none = group_advantages(&Tensor::from_vec(vec![0.0, 2.0]), 2, ScaleRewards::None).unwrap();
        assert_eq!(none.advantages, vec![-1.0, 1.0]);
        assert_eq!(group_advantages(&r, 4, ScaleRewards::Group).unwrap_err().field, "num_generations");
        assert_eq!(ScaleRewards::parse("rank").unwrap_err().field, "scale_rewards");
    }

    fn loss_of(
        logps: &[f64],
        inputs_old: &[f64],
        adv: &[f64],
        mask: &[f64],
        reference: &[f64],
        cfg: &GrpoConfig,
    ) -> GrpoOutputs<f64> {
        let (lp, old, a, m, r) = (
            t2(2, 3, logps.to_vec()),
            t2(2, 3, inputs_old.to_vec()),
            Tensor::from_vec(adv.to_vec()),
            t2(2, 3, mask.to_vec()),
            t2(2, 3, reference.to_vec()),
        );
        grpo_loss(
            &GrpoInputs {
                per_token_logps: &lp,
                advantages: &a,
                mask: &m,
                old_per_token_logps: Some(&old),
                ref_per_token_logps: Some(&r),
            },
            cfg,
        )
        .unwrap()
    }

    #[test]
    fn gradients_match_central_differences_for_every_aggregation() {
        let logps = [-1.0, -0.5, -2.0, -0.3, -1.7, -0.9];
        let old = [-1.1, -0.2, -2.5, -0.35, -1.0, -0.95];
        let reference = [-1.2, -0.4, -1.9, -0.1, -1.5, -1.3];
        let adv = [0.7, -1.3];
        let mask = [1.0, 1.0, 0.0, 1.0, 1.0, 1.0];
        for loss_type in [GrpoLossType::Grpo, GrpoLossType::Bnpo, GrpoLossType::DrGrpo, GrpoLossType::Dapo] {
            for (beta, bias, delta) in [(0.0, false, None), (0.04, false, None), (0.04, true, Some(1.5))] {
                let cfg = GrpoConfig { beta, use_bias_correction_kl: bias, delta, ..config(loss_type) };
                let out = loss_of(&logps, &old, &adv, &mask, &reference, &cfg);
                for i in 0..6 {
                    let h = 1e-7;
                    let (mut up, mut down) = (logps, logps);
                    up[i] += h;
                    down[i] -= h;
                    let numeric = (loss_of(&up, &old, &adv, &mask, &reference, &cfg).loss
                        - loss_of(&down, &old, &adv, &mask, &reference, &cfg).loss)
                        / (2.0 * h);
                    let analytic = out.grad_per_token_logps.data[i];
                    assert!(
                        (numeric - analytic).abs() < 1e-6,
                        "{loss_type:?} {beta} {i}: {numeric} vs {analytic}"
                    );
                }
            }
        }
    }

    #[test]
    fn clip_ratios_count_masked_clipped_tokens() {
        // ratios: e^0.5 (high, A>0), e^-0.5 (low but A>0: not counted), 1; row 2: e^-0.5 (low, A<0), 1, 1
        let logps = [0.5, -0.5, 0.0, -0.5, 0.0, 0.0];
        let old = [0.0; 6];
        let out = loss_of(
            &logps,
            &old,
            &[1.0, -1.0],
            &[1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
            &[0.0; 6],
            &config(GrpoLossType::Dapo),
        );
        assert!((out.clip_ratio_high_mean - 0.2).abs() < 1e-15);
        assert!((out.clip_ratio_low_mean - 0.2).abs() < 1e-15);
        assert!((out.clip_ratio_region_mean - 0.4).abs() < 1e-15);
        assert!((out.clip_ratio_low_min - 0.0).abs() < 1e-15);
        assert!((out.clip_ratio_high_max - 1.0 / 3.0).abs() < 1e-15);
        assert!(out.kl_mean.is_none());
        let empty = loss_of(&logps, &old, &[1.0, -1.0], &[0.0; 6], &[0.0; 6], &config(GrpoLossType::Grpo));
        assert_eq!(empty.loss, 0.0);
        assert!(empty.clip_ratio_low_min.is_nan());
        assert!(empty.grad_per_token_logps.data.iter().all(|&g| g == 0.0));
    }

    #[test]
    fn on_policy_ratio_is_one_and_loss_is_minus_mean_advantage() {
        let lp = t2(2, 2, vec![-1.0, -2.0, -3.0, -4.0]);
        let a = Tensor::from_vec(vec![2.0, -1.0]);
        let m = t2(2, 2, vec![1.0; 4]);
        let out = grpo_loss(
            &GrpoInputs {
                per_token_logps: &lp,
                advantages: &a,
                mask: &m,
                old_per_token_logps: None,
                ref_per_token_logps: None,
            },
            &config(GrpoLossType::Grpo),
        )
        .unwrap();
        assert!((out.loss - -0.5).abs() < 1e-15);
        assert_eq!(out.grad_per_token_logps.data, vec![-0.5, -0.5, 0.25, 0.25]);
    }

    #[test]
    fn invalid_inputs_name_their_field() {
        let lp = t2(2, 2, vec![0.0; 4]);
        let a = Tensor::from_vec(vec![1.0, 2.0, 3.0]);
        let m = t2(2, 2, vec![1.0; 4]);
        let inputs = GrpoInputs {
            per_token_logps: &lp,
            advantages: &a,
            mask: &m,
            old_per_token_logps: None,
            ref_per_token_logps: None,
        };
        assert_eq!(grpo_loss(&inputs, &config(GrpoLossType::Dapo)).unwrap_err().field, "advantages.shape");
        let a = Tensor::from_vec(vec![1.0, 2.0]);
        let inputs = GrpoInputs { advantages: &a, ..inputs };
        let cfg = GrpoConfig { beta: 0.1, ..config(GrpoLossType::Dapo) };
        assert_eq!(grpo_loss(&inputs, &cfg).unwrap_err().field, "ref_per_token_logps");
        let cfg = GrpoConfig { max_completion_length: None, ..config(GrpoLossType::DrGrpo) };
        assert_eq!(grpo_loss(&inputs, &cfg).unwrap_err().field, "max_completion_length");
        assert_eq!(GrpoLossType::parse("cispo").unwrap_err().field, "loss_type");
    }
}
