//! One optimizer step on a flat parameter buffer, state in and state out, with the exact semantics of
//! torch's single-tensor `AdamW` and `SGD` (scalars such as the bias corrections in f64, as torch
//! computes them in Python, then applied in the buffer's dtype).

use rayon::prelude::*;

use crate::multiversion;
use crate::ops::{FLAT_CHUNK as CHUNK, FLAT_PARALLEL_MIN};
use crate::simd::Real;
use crate::tensor::{expect_rank, expect_shape, OpError, OpResult, Tensor};

#[derive(Clone, Debug)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub amsgrad: bool,
    pub maximize: bool,
}

fn check_range(field: &str, value: f64, ok: bool, expected: &str) -> OpResult<()> {
    if value.is_finite() && ok {
        Ok(())
    } else {
        Err(OpError::new(field, format!("must be {expected}, got {value}")))
    }
}

impl AdamWConfig {
    pub fn validate(&self) -> OpResult<()> {
        check_range("lr", self.lr, self.lr >= 0.0, ">= 0")?;
        check_range("beta1", self.beta1, (0.0..1.0).contains(&self.beta1), "in [0, 1)")?;
        check_range("beta2", self.beta2, (0.0..1.0).contains(&self.beta2), "in [0, 1)")?;
        check_range("eps", self.eps, self.eps >= 0.0, ">= 0")?;
        check_range("weight_decay", self.weight_decay, self.weight_decay >= 0.0, ">= 0")
    }
}

#[derive(Clone, Debug)]
pub struct AdamWState<T> {
    pub exp_avg: Vec<T>,
    pub exp_avg_sq: Vec<T>,
    /// Present iff amsgrad.
    pub max_exp_avg_sq: Option<Vec<T>>,
    pub step: u64,
}

#[derive(Clone, Copy)]
struct AdamWScalars<T> {
    decay: T,
    one_minus_beta1: T,
    beta2: T,
    one_minus_beta2: T,
    bias_correction2_sqrt: T,
    eps: T,
    neg_step_size: T,
    maximize: bool,
    lerp_from_start: bool,
}

/// One element's new parameter (before the update is applied), first and second moments.
#[inline(always)]
fn adamw_moments<T: Real>(param: T, grad: T, exp_avg: T, exp_avg_sq: T, s: &AdamWScalars<T>) -> (T, T, T) {
    let g = if s.maximize { -grad } else { grad };
    // torch's lerp: start + w (end - start) when w < 0.5, else end - (end - start)(1 - w)
    let m = if s.lerp_from_start {
        exp_avg + s.one_minus_beta1 * (g - exp_avg)
    } else {
        g - (g - exp_avg) * (T::ONE - s.one_minus_beta1)
    };
    (param * s.decay, m, exp_avg_sq * s.beta2 + s.one_minus_beta2 * g * g)
}

multiversion! {
    fn adamw_chunk<T: Real>(
        params: &mut [T],
        grads: &[T],
        exp_avg: &mut [T],
        exp_avg_sq: &mut [T],
        max_exp_avg_sq: &mut [T],
        s: AdamWScalars<T>,
    ) {
        // Equal-length slices, so the loops carry no bounds checks and vectorize.
        let n = params.len();
        let (grads, exp_avg, exp_avg_sq) = (&grads[..n], &mut exp_avg[..n], &mut exp_avg_sq[..n]);
        if max_exp_avg_sq.is_empty() {
            for i in 0..n {
                let (p, m, v) = adamw_moments(params[i], grads[i], exp_avg[i], exp_avg_sq[i], &s);
                let denom = v.sqrt() / s.bias_correction2_sqrt + s.eps;
                params[i] = p + s.neg_step_size * m / denom;
                exp_avg[i] = m;
                exp_avg_sq[i] = v;
            }
        } else {
            let peaks = &mut max_exp_avg_sq[..n];
            for i in 0..n {
                let (p, m, v) = adamw_moments(params[i], grads[i], exp_avg[i], exp_avg_sq[i], &s);
                let peak = if v > peaks[i] { v } else { peaks[i] };
                let denom = peak.sqrt() / s.bias_correction2_sqrt + s.eps;
                params[i] = p + s.neg_step_size * m / denom;
                exp_avg[i] = m;
                exp_avg_sq[i] = v;
                peaks[i] = peak;
            }
        }
    }
}

fn state_or_zeros<T: Real>(field: &str, state: Option<Tensor<T>>, n: usize) -> OpResult<Vec<T>> {
    match state {
        Some(t) => {
            expect_shape(field, &t, &[n], "params")?;
            Ok(t.data)
        }
        None => Ok(vec![T::ZERO; n]),
    }
}

/// One AdamW step. Absent state tensors start at zero (the first step); `step` counts steps already taken.
#[allow(clippy::too_many_arguments)]
pub fn adamw_step<T: Real>(
    params: Tensor<T>,
    grads: &Tensor<T>,
    exp_avg: Option<Tensor<T>>,
    exp_avg_sq: Option<Tensor<T>>,
    max_exp_avg_sq: Option<Tensor<T>>,
    step: u64,
    config: &AdamWConfig,
) -> OpResult<(Tensor<T>, AdamWState<T>)> {
    config.validate()?;
    expect_rank("params", &params, 1, "a flat buffer")?;
    let n = params.len();
    expect_shape("grads", grads, &params.shape, "params")?;
    let mut exp_avg = state_or_zeros("exp_avg", exp_avg, n)?;
    let mut exp_avg_sq = state_or_zeros("exp_avg_sq", exp_avg_sq, n)?;
    let mut max_sq =
        if config.amsgrad { state_or_zeros("max_exp_avg_sq", max_exp_avg_sq, n)? } else { Vec::new() };
    let step = step.checked_add(1).ok_or_else(|| OpError::new("step", "overflows"))?;

    let step_f = step as f64;
    let bias_correction1 = 1.0 - config.beta1.powf(step_f);
    let bias_correction2 = 1.0 - config.beta2.powf(step_f);
    let one_minus_beta1 = 1.0 - config.beta1;
    let scalars = AdamWScalars {
        decay: T::from_f64(1.0 - config.lr * config.weight_decay),
        one_minus_beta1: T::from_f64(one_minus_beta1),
        beta2: T::from_f64(config.beta2),
        one_minus_beta2: T::from_f64(1.0 - config.beta2),
        bias_correction2_sqrt: T::from_f64(bias_correction2.sqrt()),
        eps: T::from_f64(config.eps),
        neg_step_size: T::from_f64(-(config.lr / bias_correction1)),
        maximize: config.maximize,
        lerp_from_start: one_minus_beta1 < 0.5,
    };
    let mut params = params;
    let (p, g) = (&mut params.data[..], &grads.data[..]);
    if n < FLAT_PARALLEL_MIN {
        adamw_chunk(p, g, &mut exp_avg, &mut exp_avg_sq, &mut max_sq, scalars);
    } else if config.amsgrad {
        p.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(exp_avg.par_chunks_mut(CHUNK))
            .zip(exp_avg_sq.par_chunks_mut(CHUNK))
            .zip(max_sq.par_chunks_mut(CHUNK))
            .for_each(|((((p, g), m), v), peak)| adamw_chunk(p, g, m, v, peak, scalars));
    } else {
        p.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(exp_avg.par_chunks_mut(CHUNK))
            .zip(exp_avg_sq.par_chunks_mut(CHUNK))
            .for_each(|(((p, g), m), v)| adamw_chunk(p, g, m, v, &mut [], scalars));
    }
    let max_exp_avg_sq = config.amsgrad.then_some(max_sq);
    Ok((params, AdamWState { exp_avg, exp_avg_sq, max_exp_avg_sq, step }))
}

#[derive(Clone, Debug)]
pub struct SgdConfig {
    pub lr: f64,
    pub momentum: f64,
    pub dampening: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
    pub maximize: bool,
}

impl SgdConfig {
    pub fn validate(&self) -> OpResult<()> {
        check_range("lr", self.lr, self.lr >= 0.0, ">= 0")?;
        check_range("momentum", self.momentum, self.momentum >= 0.0, ">= 0")?;
        check_range("dampening", self.dampening, true, "finite")?;
        check_range("weight_decay", self.weight_decay, self.weight_decay >= 0.0, ">= 0")?;
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(OpError::new("nesterov", "requires momentum > 0 and zero dampening"));
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
struct SgdScalars<T> {
    weight_decay: T,
    momentum: T,
    keep: T,
    neg_lr: T,
    nesterov: bool,
    maximize: bool,
    first_step: bool,
    use_momentum: bool,
}

multiversion! {
    fn sgd_chunk<T: Real>(params: &mut [T], grads: &[T], buffer: &mut [T], s: SgdScalars<T>) {
        // Equal-length slices, so the loops carry no bounds checks and vectorize.
        let n = params.len();
        let grads = &grads[..n];
        let decayed = |p: T, g: T| {
            let g = if s.maximize { -g } else { g };
            if s.weight_decay != T::ZERO { g + s.weight_decay * p } else { g }
        };
        if !s.use_momentum {
            for i in 0..n {
                params[i] += s.neg_lr * decayed(params[i], grads[i]);
            }
            return;
        }
        let buffer = &mut buffer[..n];
        for i in 0..n {
            let g = decayed(params[i], grads[i]);
            let b = if s.first_step { g } else { buffer[i] * s.momentum + s.keep * g };
            buffer[i] = b;
            params[i] += s.neg_lr * if s.nesterov { g + s.momentum * b } else { b };
        }
    }
}

/// One SGD step. `momentum_buffer` absent means the first step (torch clones the gradient into it);
/// the returned buffer is `None` iff momentum is 0.
pub fn sgd_step<T: Real>(
    params: Tensor<T>,
    grads: &Tensor<T>,
    momentum_buffer: Option<Tensor<T>>,
    config: &SgdConfig,
) -> OpResult<(Tensor<T>, Option<Vec<T>>)> {
    config.validate()?;
    expect_rank("params", &params, 1, "a flat buffer")?;
    let n = params.len();
    expect_shape("grads", grads, &params.shape, "params")?;
    let use_momentum = config.momentum != 0.0;
    let first_step = momentum_buffer.is_none();
    let mut buffer =
        if use_momentum { state_or_zeros("momentum_buffer", momentum_buffer, n)? } else { Vec::new() };
    let scalars = SgdScalars {
        weight_decay: T::from_f64(config.weight_decay),
        momentum: T::from_f64(config.momentum),
        keep: T::from_f64(1.0 - config.dampening),
        neg_lr: T::from_f64(-config.lr),
        nesterov: config.nesterov,
        maximize: config.maximize,
        first_step,
        use_momentum,
    };
    let mut params = params;
    let (p, g) = (&mut params.data[..], &grads.data[..]);
    if n < FLAT_PARALLEL_MIN {
        sgd_chunk(p, g, &mut buffer, scalars);
    } else if use_momentum {
        p.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(buffer.par_chunks_mut(CHUNK))
            .for_each(|((p, g), b)| sgd_chunk(p, g, b, scalars));
    } else {
        p.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)).for_each(|(p, g)| sgd_chunk(p, g, &mut [], scalars));
    }
    Ok((params, use_momentum.then_some(buffer)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adam_config() -> AdamWConfig {
        AdamWConfig {
            lr: 1e-2,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.1,
            amsgrad: false,
            maximize: false,
        }
    }

    /// torch's single-tensor AdamW written out for one element.
    fn reference_adamw(p: f64, g: f64, m: f64, v: f64, step: u64, c: &AdamWConfig) -> (f64, f64, f64) {
        let p = p * (1.0 - c.lr * c.weight_decay);
        let m = m + (1.0 - c.beta1) * (g - m);
        let v = v * c.beta2 + (1.0 - c.beta2) * g * g;
        let bc1 = 1.0 - c.beta1.powf(step as f64);
        let bc2 = 1.0 - c.beta2.powf(step as f64);
        (p - c.lr / bc1 * m / (v.sqrt() / bc2.sqrt() + c.eps), m, v)
    }

    #[test]
    fn adamw_matches_torch_for_several_steps_on_a_large_buffer() {
        let n = 300_007; // several parallel chunks and a remainder
        let mut params = Tensor::from_vec((0..n).map(|i| (i as f64 * 0.001).sin()).collect::<Vec<f64>>());
        let mut state: Option<AdamWState<f64>> = None;
        let mut want: Vec<(f64, f64, f64)> = params.data.iter().map(|&p| (p, 0.0, 0.0)).collect();
        let config = adam_config();
        for step in 0..3u64 {
            let grads = Tensor::from_vec(
                (0..n).map(|i| ((i + step as usize) as f64 * 0.37).cos()).collect::<Vec<f64>>(),
            );
            let (m, v, s) = match state.take() {
                Some(s) => (Some(Tensor::from_vec(s.exp_avg)), Some(Tensor::from_vec(s.exp_avg_sq)), s.step),
                None => (None, None, 0),
            };
            let (p, st) = adamw_step(params, &grads, m, v, None, s, &config).unwrap();
            for (w, &g) in want.iter_mut().zip(&grads.data) {
                *w = reference_adamw(w.0, g, w.1, w.2, step + 1, &config);
            }
            params = p;
            state = Some(st);
        }
        let st = state.unwrap();
        assert_eq!(st.step, 3);
        for i in (0..n).step_by(997) {
            assert!((params.data[i] - want[i].0).abs() < 1e-14);
            assert!((st.exp_avg[i] - want[i].1).abs() < 1e-14);
        }
    }

    #[test]
    fn amsgrad_keeps_the_running_max() {
        let config = AdamWConfig { amsgrad: true, ..adam_config() };
        let p = Tensor::from_vec(vec![1.0f32, 2.0]);
        let g = Tensor::from_vec(vec![0.5f32, -0.5]);
        let peak = Tensor::from_vec(vec![10.0f32, 0.0]);
        let (_, st) = adamw_step(p, &g, None, None, Some(peak), 0, &config).unwrap();
        let peak = st.max_exp_avg_sq.unwrap();
        assert_eq!(peak[0], 10.0);
        assert_eq!(peak[1], st.exp_avg_sq[1]);
    }

    #[test]
    fn sgd_matches_torch_momentum_dampening_and_nesterov() {
        let config = SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            dampening: 0.0,
            weight_decay: 0.01,
            nesterov: true,
            maximize: false,
        };
        let p = Tensor::from_vec(vec![1.0f64, -2.0]);
        let g = Tensor::from_vec(vec![0.5f64, 0.25]);
        let (p1, buf) = sgd_step(p, &g, None, &config).unwrap();
        let buf = buf.unwrap();
        let d0 = 0.5 + 0.01 * 1.0;
        assert!((buf[0] - d0).abs() < 1e-15);
        assert!((p1.data[0] - (1.0 - 0.1 * (d0 + 0.9 * d0))).abs() < 1e-15);
        let config = SgdConfig { nesterov: false, dampening: 0.5, ..config };
        let (p2, buf2) = sgd_step(p1.clone(), &g, Some(Tensor::from_vec(buf.clone())), &config).unwrap();
        let d = 0.5 + 0.01 * p1.data[0];
        let b = buf[0] * 0.9 + 0.5 * d;
        assert!((buf2.unwrap()[0] - b).abs() < 1e-15);
        assert!((p2.data[0] - (p1.data[0] - 0.1 * b)).abs() < 1e-15);
        let plain = SgdConfig {
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
            maximize: true,
            lr: 0.5,
        };
        let (p3, none) =
            sgd_step(Tensor::from_vec(vec![1.0f64]), &Tensor::from_vec(vec![2.0]), None, &plain).unwrap();
        assert!(none.is_none());
        assert_eq!(p3.data, vec![2.0]);
    }

    #[test]
    fn invalid_hyperparameters_and_state_name_their_field() {
        let p = || Tensor::from_vec(vec![1.0f64, 2.0]);
        let g = Tensor::from_vec(vec![1.0f64, 2.0]);
        let bad = AdamWConfig { beta2: 1.0, ..adam_config() };
        assert_eq!(adamw_step(p(), &g, None, None, None, 0, &bad).unwrap_err().field, "beta2");
        let short = Some(Tensor::from_vec(vec![0.0f64]));
        assert_eq!(
            adamw_step(p(), &g, short, None, None, 0, &adam_config()).unwrap_err().field,
            "exp_avg.shape"
        );
        let nesterov = SgdConfig {
            lr: 0.1,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: true,
            maximize: false,
        };
        assert_eq!(sgd_step(p(), &g, None, &nesterov).unwrap_err().field, "nesterov");
        let g3 = Tensor::from_vec(vec![1.0f64; 3]);
        assert_eq!(
            sgd_step(p(), &g3, None, &SgdConfig { nesterov: false, ..nesterov }).unwrap_err().field,
            "grads.shape"
        );
    }
}
