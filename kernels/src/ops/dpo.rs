//! DPO loss on per-sequence log-probs, as TRL 1.x's `DPOTrainer` computes it (standard reverse-KL DPO):
//!
//! ```text
//! chosen_logratios   = policy_chosen - ref_chosen        rejected_logratios = policy_rejected - ref_rejected
//! delta              = chosen_logratios - rejected_logratios
//! sigmoid: -logsigmoid(beta * delta)
//! hinge:   relu(1 - beta * delta)
//! ipo:     (chosen_logratios / max(chosen_len, 1) - rejected_logratios / max(rejected_len, 1) - 1 / (2 beta))^2
//! robust:  (-(1 - ls) logsigmoid(beta * delta) + ls logsigmoid(-beta * delta)) / (1 - 2 ls)
//! loss     = sum_k weight_k * mean(per-pair loss_k)
//! ```
//!
//! TRL 1.x uses `label_smoothing` only in robust (and EXO/AOT, not offered here): sigmoid ignores it, and
//! so does this kernel. The metrics are TRL's: rewards = beta * logratios, margins, accuracies.

use crate::multiversion;
use crate::simd::Real;
use crate::tensor::{expect_rank, expect_shape, OpError, OpResult, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DpoLossType {
    Sigmoid,
    Hinge,
    Ipo,
    Robust,
}

impl DpoLossType {
    pub fn parse(name: &str) -> OpResult<Self> {
        match name {
            "sigmoid" => Ok(DpoLossType::Sigmoid),
            "hinge" => Ok(DpoLossType::Hinge),
            "ipo" => Ok(DpoLossType::Ipo),
            "robust" => Ok(DpoLossType::Robust),
            other => Err(OpError::new(
                "loss_types",
                format!("unknown loss type {other:?} (expected sigmoid, hinge, ipo or robust)"),
            )),
        }
    }
}

#[derive(Clone, Debug)]
pub struct DpoConfig {
    pub beta: f64,
    /// Loss types with their weights.
    pub losses: Vec<(DpoLossType, f64)>,
    pub label_smoothing: f64,
}

impl DpoConfig {
    /// Checks and assembles the configuration from request fields (empty `loss_types` means sigmoid).
    pub fn new(
        beta: f64,
        loss_types: &[String],
        loss_weights: &[f64],
        label_smoothing: f64,
    ) -> OpResult<Self> {
        if !(beta.is_finite() && beta > 0.0) {
            return Err(OpError::new("beta", format!("must be finite and > 0, got {beta}")));
        }
        let types: Vec<DpoLossType> = if loss_types.is_empty() {
            vec![DpoLossType::Sigmoid]
        } else {
            loss_types.iter().map(|t| DpoLossType::parse(t)).collect::<OpResult<_>>()?
        };
        let weights: Vec<f64> = if loss_weights.is_empty() {
            vec![1.0; types.len()]
        } else if loss_weights.len() != types.len() {
            return Err(OpError::new(
                "loss_weights",
                format!("{} weights for {} loss types", loss_weights.len(), types.len()),
            ));
        } else {
            loss_weights.to_vec()
        };
        if let Some(w) = weights.iter().find(|w| !w.is_finite()) {
            return Err(OpError::new("loss_weights", format!("must be finite, got {w}")));
        }
        if !label_smoothing.is_finite() {
            return Err(OpError::new("label_smoothing", format!("must be finite, got {label_smoothing}")));
        }
        if types.contains(&DpoLossType::Robust) && !(0.0..0.5).contains(&label_smoothing) {
            return Err(OpError::new(
                "label_smoothing",
                format!("must lie in [0.0, 0.5) for the robust loss, got {label_smoothing}"),
            ));
        }
        Ok(DpoConfig { beta, losses: types.into_iter().zip(weights).collect(), label_smoothing })
    }
}

pub struct DpoInputs<'a, T> {
    pub policy_chosen_logps: &'a Tensor<T>,
    pub policy_rejected_logps: &'a Tensor<T>,
    pub ref_chosen_logps: &'a Tensor<T>,
    pub ref_rejected_logps: &'a Tensor<T>,
    /// Completion token counts, required by ipo.
    pub chosen_lengths: Option<&'a Tensor<T>>,
    pub rejected_lengths: Option<&'a Tensor<T>>,
}

#[derive(Clone, Debug)]
pub struct DpoOutputs<T> {
    pub loss: T,
    pub grad_policy_chosen_logps: Vec<T>,
    pub grad_policy_rejected_logps: Vec<T>,
    pub chosen_rewards: Vec<T>,
    pub rejected_rewards: Vec<T>,
    pub margins: Vec<T>,
    pub accuracies: Vec<T>,
}

/// log sigmoid and sigmoid of `z` and of `-z`, per pair.
#[derive(Default)]
struct Logistic<T> {
    log_sig: Vec<T>,
    log_sig_neg: Vec<T>,
    sig: Vec<T>,
    sig_neg: Vec<T>,
}

multiversion! {
    /// torch's stable forms: log sigmoid(x) = min(x, 0) - log1p(exp(-|x|)); sigmoid from the same exp.
    fn logistic_terms<T: Real>(z: &[T], log_sig: &mut [T], log_sig_neg: &mut [T], sig: &mut [T], sig_neg: &mut [T]) {
        let n = z.len();
        let (log_sig, log_sig_neg, sig, sig_neg) = (&mut log_sig[..n], &mut log_sig_neg[..n], &mut sig[..n], &mut sig_neg[..n]);
        for i in 0..n {
            let z = z[i];
            let e = (-z.abs()).exp_lane::<FUSED>();
            let soft = e.ln_1p_unit::<FUSED>();
            let positive = z >= T::ZERO;
            log_sig[i] = if positive { T::ZERO } else { z } - soft;
            log_sig_neg[i] = if positive { -z } else { T::ZERO } - soft;
            let small = e / (T::ONE + e);
            let large = T::ONE / (T::ONE + e);
            sig[i] = if positive { large } else { small };
            sig_neg[i] = if positive { small } else { large };
        }
    }
}

impl<T: Real> Logistic<T> {
    fn of(z: &[T]) -> Self {
        let n = z.len();
        let mut out = Logistic {
            log_sig: vec![T::ZERO; n],
            log_sig_neg: vec![T::ZERO; n],
            sig: vec![T::ZERO; n],
            sig_neg: vec![T::ZERO; n],
        };
        logistic_terms(z, &mut out.log_sig, &mut out.log_sig_neg, &mut out.sig, &mut out.sig_neg);
        out
    }
}

fn check_lengths<T: Real>(field: &str, lengths: Option<&Tensor<T>>, n: usize) -> OpResult<Vec<T>> {
    let lengths = lengths.ok_or_else(|| OpError::new(field, "required by the ipo loss"))?;
    expect_shape(field, lengths, &[n], "policy_chosen_logps")?;
    if let Some(i) = lengths.data.iter().position(|&l| l < T::ZERO) {
        return Err(OpError::new(field, format!("negative length at index {i}")));
    }
    // TRL divides by completion_mask.sum(dim=1).clamp(min=1.0).
    Ok(lengths.data.iter().map(|&l| if l < T::ONE { T::ONE } else { l }).collect())
}

pub fn dpo_loss<T: Real>(inputs: &DpoInputs<'_, T>, config: &DpoConfig) -> OpResult<DpoOutputs<T>> {
    let pc = inputs.policy_chosen_logps;
    expect_rank("policy_chosen_logps", pc, 1, "one log-prob per pair")?;
    let n = pc.len();
    expect_shape("policy_rejected_logps", inputs.policy_rejected_logps, &pc.shape, "policy_chosen_logps")?;
    expect_shape("ref_chosen_logps", inputs.ref_chosen_logps, &pc.shape, "policy_chosen_logps")?;
    expect_shape("ref_rejected_logps", inputs.ref_rejected_logps, &pc.shape, "policy_chosen_logps")?;
    let needs_lengths = config.losses.iter().any(|(t, _)| *t == DpoLossType::Ipo);
    let (chosen_len, rejected_len) = if needs_lengths {
        (
            check_lengths("chosen_lengths", inputs.chosen_lengths, n)?,
            check_lengths("rejected_lengths", inputs.rejected_lengths, n)?,
        )
    } else {
        (Vec::new(), Vec::new())
    };

    // Scalar expressions are evaluated in f64 and then rounded to T, as torch does with TRL's Python floats.
    let beta = T::from_f64(config.beta);
    let ls = T::from_f64(config.label_smoothing);
    let keep = T::from_f64(1.0 - config.label_smoothing);
    let robust_norm = T::from_f64(1.0 - 2.0 * config.label_smoothing);
    let inv_n = T::ONE / T::from_f64(n as f64);
    let ipo_target = T::from_f64(1.0 / (2.0 * config.beta));
    let mut out = DpoOutputs {
        loss: T::ZERO,
        grad_policy_chosen_logps: vec![T::ZERO; n],
        grad_policy_rejected_logps: vec![T::ZERO; n],
        chosen_rewards: Vec::with_capacity(n),
        rejected_rewards: Vec::with_capacity(n),
        margins: Vec::with_capacity(n),
        accuracies: Vec::with_capacity(n),
    };
    let chosen: Vec<T> = pc.data.iter().zip(&inputs.ref_chosen_logps.data).map(|(&p, &r)| p - r).collect();
    let rejected: Vec<T> = inputs
        .policy_rejected_logps
        .data
        .iter()
        .zip(&inputs.ref_rejected_logps.data)
        .map(|(&p, &r)| p - r)
        .collect();
    let z: Vec<T> = chosen.iter().zip(&rejected).map(|(&c, &r)| beta * (c - r)).collect();
    let needs_logistic =
        config.losses.iter().any(|(t, _)| matches!(t, DpoLossType::Sigmoid | DpoLossType::Robust));
    let logistic = if needs_logistic { Logistic::of(&z) } else { Logistic::default() };
    for &(loss_type, weight) in &config.losses {
        let weight = T::from_f64(weight);
        let mut total = T::ZERO;
        for i in 0..n {
            // (per-pair loss, d loss / d chosen_logratio, d loss / d rejected_logratio)
            let (loss, d_chosen, d_rejected) = match loss_type {
                DpoLossType::Sigmoid => {
                    let d = -beta * logistic.sig_neg[i];
                    (-logistic.log_sig[i], d, -d)
                }
                DpoLossType::Hinge => {
                    let margin = T::ONE - z[i];
                    // relu's gradient is zero at 0, as torch's is.
                    let d = if margin > T::ZERO { -beta } else { T::ZERO };
                    (if margin > T::ZERO { margin } else { T::ZERO }, d, -d)
                }
                DpoLossType::Ipo => {
                    let gap = chosen[i] / chosen_len[i] - rejected[i] / rejected_len[i] - ipo_target;
                    let d = T::from_f64(2.0) * gap;
                    (gap * gap, d / chosen_len[i], -d / rejected_len[i])
                }
                DpoLossType::Robust => {
                    let clean = -keep * logistic.log_sig[i];
                    let flipped = -ls * logistic.log_sig_neg[i];
                    let d = beta * (-keep * logistic.sig_neg[i] - ls * logistic.sig[i]) / robust_norm;
                    ((clean - flipped) / robust_norm, d, -d)
                }
            };
            total += loss;
            out.grad_policy_chosen_logps[i] += weight * d_chosen * inv_n;
            out.grad_policy_rejected_logps[i] += weight * d_rejected * inv_n;
        }
        out.loss += total * inv_n * weight;
    }
    for i in 0..n {
        let chosen = beta * (pc.data[i] - inputs.ref_chosen_logps.data[i]);
        let rejected = beta * (inputs.policy_rejected_logps.data[i] - inputs.ref_rejected_logps.data[i]);
        out.chosen_rewards.push(chosen);
        out.rejected_rewards.push(rejected);
        out.margins.push(chosen - rejected);
        out.accuracies.push(if chosen > rejected { T::ONE } else { T::ZERO });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f64]) -> Tensor<f64> {
        Tensor::from_vec(v.to_vec())
    }

    fn run(config: &DpoConfig, pc: &[f64], pr: &[f64], rc: &[f64], rr: &[f64]) -> DpoOutputs<f64> {
        let (pc, pr, rc, rr) = (t(pc), t(pr), t(rc), t(rr));
        let lengths = t(&vec![4.0; pc.len()]);
        let inputs = DpoInputs {
            policy_chosen_logps: &pc,
            policy_rejected_logps: &pr,
            ref_chosen_logps: &rc,
            ref_rejected_logps: &rr,
            chosen_lengths: Some(&lengths),
            rejected_lengths: Some(&lengths),
        };
        dpo_loss(&inputs, config).unwrap()
    }

    fn loss_only(loss: &str, beta: f64, ls: f64, pc: &[f64], pr: &[f64]) -> f64 {
        let config = DpoConfig::new(beta, &[loss.to_string()], &[], ls).unwrap();
        let zeros = vec![0.0; pc.len()];
        run(&config, pc, pr, &zeros, &zeros).loss
    }

    #[test]
    fn sigmoid_loss_and_metrics_match_the_formula() {
        let config = DpoConfig::new(0.1, &[], &[], 0.0).unwrap();
        let out = run(&config, &[-1.0, -5.0], &[-3.0, -2.0], &[-2.0, -4.0], &[-2.5, -2.5]);
        // logratios: chosen [1, -1], rejected [-0.5, 0.5]; delta [1.5, -1.5]
        let want = (-(1.0f64 / (1.0 + (-0.15f64).exp())).ln() - (1.0 / (1.0 + 0.15f64.exp())).ln()) / 2.0;
        assert!((out.loss - want).abs() < 1e-15);
        assert_eq!(out.accuracies, vec![1.0, 0.0]);
        assert!((out.chosen_rewards[0] - 0.1).abs() < 1e-15);
        assert!((out.margins[1] - -0.15).abs() < 1e-15);
    }

    #[test]
    fn gradients_match_central_differences_for_every_loss_type() {
        let pc = [-1.0, -5.0, -2.0];
        let pr = [-3.0, -2.0, -2.2];
        for (loss, ls) in [("sigmoid", 0.0), ("hinge", 0.0), ("ipo", 0.0), ("robust", 0.2)] {
            let config = DpoConfig::new(0.7, &[loss.to_string()], &[], ls).unwrap();
            let zeros = [0.0; 3];
            let out = run(&config, &pc, &pr, &zeros, &zeros);
            for i in 0..3 {
                let h = 1e-6;
                let (mut up, mut down) = (pc, pc);
                up[i] += h;
                down[i] -= h;
                let numeric =
                    (loss_only(loss, 0.7, ls, &up, &pr) - loss_only(loss, 0.7, ls, &down, &pr)) / (2.0 * h);
                assert!((numeric - out.grad_policy_chosen_logps[i]).abs() < 1e-7, "{loss} chosen {i}");
                let (mut up, mut down) = (pr, pr);
                up[i] += h;
                down[i] -= h;
                let numeric =
                    (loss_only(loss, 0.7, ls, &pc, &up) - loss_only(loss, 0.7, ls, &pc, &down)) / (2.0 * h);
                assert!((numeric - out.grad_policy_rejected_logps[i]).abs() < 1e-7, "{loss} rejected {i}");
            }
        }
    }

    #[test]
    fn weighted_loss_types_add_up() {
        let both = DpoConfig::new(0.3, &["sigmoid".into(), "ipo".into()], &[0.5, 2.0], 0.0).unwrap();
        let out = run(&both, &[-1.0], &[-2.0], &[0.0], &[0.0]);
        let want = 0.5 * loss_only("sigmoid", 0.3, 0.0, &[-1.0], &[-2.0])
            + 2.0 * loss_only("ipo", 0.3, 0.0, &[-1.0], &[-2.0]);
        assert!((out.loss - want).abs() < 1e-14);
    }

    #[test]
    fn extreme_margins_stay_finite() {
        let config = DpoConfig::new(1.0, &[], &[], 0.0).unwrap();
        let out = run(&config, &[-1e6], &[0.0], &[0.0], &[0.0]);
        assert_eq!(out.loss, 1e6);
        assert_eq!(out.grad_policy_chosen_logps, vec![-1.0]);
        let out = run(&config, &[1e6], &[0.0], &[0.0], &[0.0]);
        assert_eq!(out.loss, 0.0);
    }

    #[test]
    fn invalid_configurations_name_their_field() {
        assert_eq!(DpoConfig::new(0.1, &["kto".into()], &[], 0.0).unwrap_err().field, "loss_types");
        assert_eq!(DpoConfig::new(0.0, &[], &[], 0.0).unwrap_err().field, "beta");
        assert_eq!(DpoConfig::new(0.1, &["robust".into()], &[], 0.5).unwrap_err().field, "label_smoothing");
        assert_eq!(DpoConfig::new(0.1, &[], &[1.0, 2.0], 0.0).unwrap_err().field, "loss_weights");
        let config = DpoConfig::new(0.1, &["ipo".into()], &[], 0.0).unwrap();
        let (a, b) = (t(&[1.0, 2.0]), t(&[1.0]));
        let inputs = DpoInputs {
            policy_chosen_logps: &a,
            policy_rejected_logps: &a,
            ref_chosen_logps: &a,
            ref_rejected_logps: &a,
            chosen_lengths: None,
            rejected_lengths: None,
        };
        assert_eq!(dpo_loss(&inputs, &config).unwrap_err().field, "chosen_lengths");
        let inputs = DpoInputs { ref_rejected_logps: &b, ..inputs };
        assert_eq!(dpo_loss(&inputs, &config).unwrap_err().field, "ref_rejected_logps.shape");
    }
}
