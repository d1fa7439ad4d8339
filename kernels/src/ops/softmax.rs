//! softmax, log_softmax, token cross-entropy and selective log-softmax over the last dimension, with
//! their gradients w.r.t. the logits. Rows are independent, so large inputs are split by rows across
//! the rayon pool; each row is three vectorized passes (max, sum of exp, write).

use crate::multiversion;
use crate::ops::par_row_blocks;
use crate::simd::{dot, max_of, sum_exp, sum_of, Real};
use crate::tensor::{expect_shape, OpError, OpResult, Tensor};

fn check_logits<T>(logits: &Tensor<T>) -> OpResult<usize> {
    if logits.shape.is_empty() {
        return Err(OpError::new("logits.shape", "expected at least one dimension (..., vocab)"));
    }
    Ok(logits.last_dim())
}

fn check_grad_output<T>(grad_output: Option<&Tensor<T>>, shape: &[usize], of: &str) -> OpResult<()> {
    match grad_output {
        Some(g) => expect_shape("grad_output", g, shape, of),
        None => Ok(()),
    }
}

multiversion! {
    fn softmax_rows<T: Real>(x: &[T], out: &mut [T], v: usize) {
        for (row, y) in x.chunks_exact(v).zip(out.chunks_exact_mut(v)) {
            let m = max_of(row);
            let s = sum_exp::<T, FUSED>(row, T::ONE, m, Some(&mut *y));
            let inv = T::ONE / s;
            for e in y.iter_mut() {
                *e *= inv;
            }
        }
    }
}

multiversion! {
    fn softmax_vjp_rows<T: Real>(y: &[T], g: &[T], out: &mut [T], v: usize) {
        for ((y, g), o) in y.chunks_exact(v).zip(g.chunks_exact(v)).zip(out.chunks_exact_mut(v)) {
            let d = dot(g, y);
            for ((o, &y), &g) in o.iter_mut().zip(y).zip(g) {
                *o = y * (g - d);
            }
        }
    }
}

multiversion! {
    fn log_softmax_rows<T: Real>(x: &[T], out: &mut [T], v: usize) {
        for (row, o) in x.chunks_exact(v).zip(out.chunks_exact_mut(v)) {
            let m = max_of(row);
            let log_sum = sum_exp::<T, FUSED>(row, T::ONE, m, None).ln();
            for (o, &x) in o.iter_mut().zip(row) {
                *o = (x - m) - log_sum;
            }
        }
    }
}

multiversion! {
    fn log_softmax_vjp_rows<T: Real>(logp: &[T], g: &[T], out: &mut [T], v: usize) {
        for ((lp, g), o) in logp.chunks_exact(v).zip(g.chunks_exact(v)).zip(out.chunks_exact_mut(v)) {
            let total = sum_of(g);
            for ((o, &lp), &g) in o.iter_mut().zip(lp).zip(g) {
                *o = g - lp.exp_lane::<FUSED>() * total;
            }
        }
    }
}

/// Applies a row kernel `kernel(input_rows, output_rows, v)` over all rows, in parallel when large.
fn map_rows<T: Real>(
    inputs: &[&[T]],
    v: usize,
    kernel: impl Fn(&[&[T]], &mut [T], usize) + Sync + Send,
) -> Vec<T> {
    let rows = inputs[0].len() / v;
    let mut out = vec![T::ZERO; rows * v];
    par_row_blocks(rows, v, &mut out, v, |range, chunk| {
        let parts: Vec<&[T]> = inputs.iter().map(|x| &x[range.start * v..range.end * v]).collect();
        kernel(&parts, chunk, v)
    });
    out
}

/// softmax over the last dimension, and `grad_output`'s vector-Jacobian product when given.
pub fn softmax<T: Real>(
    logits: &Tensor<T>,
    grad_output: Option<&Tensor<T>>,
) -> OpResult<(Tensor<T>, Option<Tensor<T>>)> {
    let v = check_logits(logits)?;
    check_grad_output(grad_output, &logits.shape, "logits")?;
    let probs = map_rows(&[&logits.data], v, |x, out, v| softmax_rows(x[0], out, v));
    let grad = grad_output.map(|g| {
        let data = map_rows(&[&probs, &g.data], v, |x, out, v| softmax_vjp_rows(x[0], x[1], out, v));
        Tensor::new(logits.shape.clone(), data)
    });
    Ok((Tensor::new(logits.shape.clone(), probs), grad))
}

/// log_softmax over the last dimension, and `grad_output`'s vector-Jacobian product when given.
pub fn log_softmax<T: Real>(
    logits: &Tensor<T>,
    grad_output: Option<&Tensor<T>>,
) -> OpResult<(Tensor<T>, Option<Tensor<T>>)> {
    let v = check_logits(logits)?;
    check_grad_output(grad_output, &logits.shape, "logits")?;
    let logps = map_rows(&[&logits.data], v, |x, out, v| log_softmax_rows(x[0], out, v));
    let grad = grad_output.map(|g| {
        let data = map_rows(&[&logps, &g.data], v, |x, out, v| log_softmax_vjp_rows(x[0], x[1], out, v));
        Tensor::new(logits.shape.clone(), data)
    });
    Ok((Tensor::new(logits.shape.clone(), logps), grad))
}

fn check_labels(
    labels: &Tensor<i64>,
    logits_leading: &[usize],
    v: usize,
    ignore: Option<i64>,
) -> OpResult<()> {
    expect_shape("labels", labels, logits_leading, "logits' leading dimensions")?;
    let vocab = v as i64;
    if let Some(index) = labels.data.iter().position(|&l| Some(l) != ignore && !(0..vocab).contains(&l)) {
        let ignored = ignore.map(|i| format!(" and is not ignore_index {i}")).unwrap_or_default();
        return Err(OpError::new(
            "labels",
            format!("value {} at flat index {index} is outside [0, {vocab}){ignored}", labels.data[index]),
        ));
    }
    Ok(())
}

multiversion! {
    /// Rows of token cross-entropy: writes the scaled gradient rows, returns the block's summed loss.
    fn cross_entropy_rows<T: Real>(
        x: &[T],
        labels: &[i64],
        ignore_index: i64,
        scale: T,
        grad: &mut [T],
        v: usize,
    ) -> T {
        let mut loss = T::ZERO;
        for ((row, &label), g) in x.chunks_exact(v).zip(labels).zip(grad.chunks_exact_mut(v)) {
            if label == ignore_index {
                continue; // the gradient row stays zero
            }
            let m = max_of(row);
            let s = sum_exp::<T, FUSED>(row, T::ONE, m, Some(&mut *g));
            let label = label as usize;
            loss += s.ln() - (row[label] - m);
            let factor = scale / s;
            for e in g.iter_mut() {
                *e *= factor;
            }
            g[label] -= scale;
        }
        loss
    }
}

/// Token cross-entropy and its gradient.
#[derive(Clone, Debug)]
pub struct CrossEntropy<T> {
    pub loss: T,
    pub grad_logits: Tensor<T>,
    pub num_tokens: u64,
}

/// Cross-entropy of `logits` (..., V) against int64 `labels` (...): the summed token losses divided by
/// `normalizer`, or when it is `None` by the number of labels that are not `ignore_index` (at least 1,
/// so an all-ignored batch gives 0 where torch's `reduction="mean"` gives NaN).
pub fn cross_entropy<T: Real>(
    logits: &Tensor<T>,
    labels: &Tensor<i64>,
    ignore_index: i64,
    normalizer: Option<f64>,
) -> OpResult<CrossEntropy<T>> {
    let v = check_logits(logits)?;
    check_labels(labels, logits.leading_shape(), v, Some(ignore_index))?;
    let num_tokens = labels.data.iter().filter(|&&l| l != ignore_index).count();
    let denominator = match normalizer {
        Some(n) if n.is_finite() && n > 0.0 => T::from_f64(n),
        Some(n) => return Err(OpError::new("normalizer", format!("must be finite and > 0, got {n}"))),
        None => T::from_f64(num_tokens.max(1) as f64),
    };
    let scale = T::ONE / denominator;
    let rows = labels.data.len();
    let mut grad = vec![T::ZERO; rows * v];
    let partial = par_row_blocks(rows, v, &mut grad, v, |range, g| {
        let x = &logits.data[range.start * v..range.end * v];
        cross_entropy_rows(x, &labels.data[range], ignore_index, scale, g, v)
    });
    let total = partial.into_iter().fold(T::ZERO, |a, b| a + b);
    Ok(CrossEntropy {
        loss: total / denominator,
        grad_logits: Tensor::new(logits.shape.clone(), grad),
        num_tokens: num_tokens as u64,
    })
}

multiversion! {
    /// Rows of selective log-softmax; with `g`, also writes g * d logp / d logits. The logits are divided
    /// by the temperature (as TRL does, not multiplied by its inverse) unless it is 1.
    fn selective_rows<T: Real>(
        x: &[T],
        labels: &[i64],
        temperature: T,
        g: &[T],
        logps: &mut [T],
        grad: &mut [T],
        v: usize,
    ) {
        let with_grad = !g.is_empty();
        let mut scaled: Vec<T> = Vec::new();
        for (i, (raw, &label)) in x.chunks_exact(v).zip(labels).enumerate() {
            let row: &[T] = if temperature == T::ONE {
                raw
            } else {
                scaled.clear();
                scaled.extend(raw.iter().map(|&x| x / temperature));
                &scaled
            };
            let m = max_of(row);
            let label = label as usize;
            let s = if with_grad {
                sum_exp::<T, FUSED>(row, T::ONE, m, Some(&mut grad[i * v..(i + 1) * v]))
            } else {
                sum_exp::<T, FUSED>(row, T::ONE, m, None)
            };
            logps[i] = (row[label] - m) - s.ln();
            if with_grad {
                let upstream = g[i] / temperature;
                let factor = -upstream / s;
                let out = &mut grad[i * v..(i + 1) * v];
                for e in out.iter_mut() {
                    *e *= factor;
                }
                out[label] += upstream;
            }
        }
    }
}

/// `log_softmax(logits / temperature)` gathered at `labels` (TRL's `selective_log_softmax`), and when
/// `grad_output` is given its vector-Jacobian product w.r.t. the (unscaled) logits.
pub fn selective_log_softmax<T: Real>(
    logits: &Tensor<T>,
    labels: &Tensor<i64>,
    grad_output: Option<&Tensor<T>>,
    temperature: f64,
) -> OpResult<(Tensor<T>, Option<Tensor<T>>)> {
    let v = check_logits(logits)?;
    check_labels(labels, logits.leading_shape(), v, None)?;
    check_grad_output(grad_output, &labels.shape, "labels")?;
    if !(temperature.is_finite() && temperature > 0.0) {
        return Err(OpError::new("temperature", format!("must be finite and > 0, got {temperature}")));
    }
    let temperature = T::from_f64(temperature);
    let rows = labels.data.len();
    let mut logps = vec![T::ZERO; rows];
    match grad_output {
        None => {
            par_row_blocks(rows, v, &mut logps, 1, |range, out| {
                let x = &logits.data[range.start * v..range.end * v];
                selective_rows(x, &labels.data[range], temperature, &[], out, &mut [], v)
            });
            Ok((Tensor::new(labels.shape.clone(), logps), None))
        }
        Some(g) => {
            let mut grad = vec![T::ZERO; rows * v];
            let blocks = par_row_blocks(rows, v, &mut grad, v, |range, grad| {
                let x = &logits.data[range.start * v..range.end * v];
                let mut out = vec![T::ZERO; range.len()];
                let g = &g.data[range.clone()];
                selective_rows(x, &labels.data[range], temperature, g, &mut out, grad, v);
                out
            });
            for (dst, src) in logps.chunks_mut(1).zip(blocks.into_iter().flatten()) {
                dst[0] = src;
            }
            Ok((Tensor::new(labels.shape.clone(), logps), Some(Tensor::new(logits.shape.clone(), grad))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_log_softmax(row: &[f64]) -> Vec<f64> {
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = row.iter().map(|x| (x - m).exp()).sum();
        row.iter().map(|x| x - m - s.ln()).collect()
    }

    fn logits(rows: usize, v: usize) -> Tensor<f64> {
        let data = (0..rows * v).map(|i| ((i * 7919 % 1013) as f64 - 500.0) / 37.0).collect();
        Tensor::new(vec![rows, v], data)
    }

    fn close(a: &[f64], b: &[f64], tol: f64) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{x} vs {y}");
        }
    }

    #[test]
    fn log_softmax_and_softmax_match_naive_rows_and_vjps() {
        for (rows, v) in [(1, 1), (3, 5), (4, 33), (40, 2048)] {
            let x = logits(rows, v);
            let g = Tensor::new(x.shape.clone(), x.data.iter().map(|a| (a * 3.0).sin()).collect());
            let (logp, grad) = log_softmax(&x, Some(&g)).unwrap();
            let (p, pgrad) = softmax(&x, Some(&g)).unwrap();
            let (grad, pgrad) = (grad.unwrap(), pgrad.unwrap());
            for r in 0..rows {
                let row = &x.data[r * v..(r + 1) * v];
                let gr = &g.data[r * v..(r + 1) * v];
                let want = naive_log_softmax(row);
                close(&logp.data[r * v..(r + 1) * v], &want, 1e-13);
                let probs: Vec<f64> = want.iter().map(|l| l.exp()).collect();
                close(&p.data[r * v..(r + 1) * v], &probs, 1e-13);
                let gsum: f64 = gr.iter().sum();
                let want_grad: Vec<f64> = gr.iter().zip(&probs).map(|(g, p)| g - p * gsum).collect();
                close(&grad.data[r * v..(r + 1) * v], &want_grad, 1e-12);
                let gdot: f64 = gr.iter().zip(&probs).map(|(g, p)| g * p).sum();
                let want_pgrad: Vec<f64> = gr.iter().zip(&probs).map(|(g, p)| p * (g - gdot)).collect();
                close(&pgrad.data[r * v..(r + 1) * v], &want_pgrad, 1e-12);
            }
        }
    }

    #[test]
    fn extreme_logits_stay_finite_and_exact_at_the_max() {
        let x = Tensor::new(vec![1, 3], vec![1e30f64, -1e30, 0.0]);
        let (logp, _) = log_softmax(&x, None).unwrap();
        assert_eq!(logp.data, vec![0.0, -2e30, -1e30]);
        let x = Tensor::new(vec![1, 2], vec![1e4f32, 1e4 - 1.0]);
        let (logp, _) = log_softmax(&x, None).unwrap();
        assert!((logp.data[0] - -(1.0f32 + (-1.0f32).exp()).ln()).abs() < 1e-6);
    }

    #[test]
    fn cross_entropy_matches_mean_nll_and_skips_ignored_rows() {
        let x = logits(5, 7);
        let labels = Tensor::new(vec![5], vec![0, -100, 6, 3, -100]);
        let ce = cross_entropy(&x, &labels, -100, None).unwrap();
        assert_eq!(ce.num_tokens, 3);
        let mut want = 0.0;
        for (r, &l) in labels.data.iter().enumerate() {
            let lp = naive_log_softmax(&x.data[r * 7..(r + 1) * 7]);
            if l >= 0 {
                want -= lp[l as usize];
                let g = &ce.grad_logits.data[r * 7..(r + 1) * 7];
                for (j, gj) in g.iter().enumerate() {
                    let onehot = if j as i64 == l { 1.0 } else { 0.0 };
                    assert!((gj - (lp[j].exp() - onehot) / 3.0).abs() < 1e-14);
                }
            } else {
                assert!(ce.grad_logits.data[r * 7..(r + 1) * 7].iter().all(|&g| g == 0.0));
            }
        }
        assert!((ce.loss - want / 3.0).abs() < 1e-13);
        let summed = cross_entropy(&x, &labels, -100, Some(2.0)).unwrap();
        assert!((summed.loss - want / 2.0).abs() < 1e-13);
        let none = Tensor::new(vec![5], vec![-100; 5]);
        let ce = cross_entropy(&x, &none, -100, None).unwrap();
        assert_eq!((ce.loss, ce.num_tokens), (0.0, 0));
    }

    #[test]
    fn selective_log_softmax_gathers_and_differentiates_with_temperature() {
        let x = logits(6, 11);
        let labels = Tensor::new(vec![2, 3], vec![0, 10, 5, 5, 1, 2]);
        let x = Tensor::new(vec![2, 3, 11], x.data);
        let g = Tensor::new(vec![2, 3], vec![1.0, -2.0, 0.5, 0.0, 3.0, 1.5]);
        let t = 0.7;
        let (lp, grad) = selective_log_softmax(&x, &labels, Some(&g), t).unwrap();
        let grad = grad.unwrap();
        for r in 0..6 {
            let row: Vec<f64> = x.data[r * 11..(r + 1) * 11].iter().map(|v| v / t).collect();
            let full = naive_log_softmax(&row);
            let l = labels.data[r] as usize;
            assert!((lp.data[r] - full[l]).abs() < 1e-12);
            for (j, lp_j) in full.iter().enumerate() {
                let onehot = if j == l { 1.0 } else { 0.0 };
                let want = g.data[r] * (onehot - lp_j.exp()) / t;
                assert!((grad.data[r * 11 + j] - want).abs() < 1e-12);
            }
        }
        let (fwd, none) = selective_log_softmax(&x, &labels, None, t).unwrap();
        assert!(none.is_none());
        assert_eq!(fwd.data, lp.data);
    }

    #[test]
    fn invalid_inputs_name_their_field() {
        let x = logits(2, 3);
        let bad = Tensor::new(vec![2], vec![0, 3]);
        assert_eq!(cross_entropy(&x, &bad, -100, None).unwrap_err().field, "labels");
        let short = Tensor::new(vec![1], vec![0]);
        assert_eq!(selective_log_softmax(&x, &short, None, 1.0).unwrap_err().field, "labels.shape");
        let labels = Tensor::new(vec![2], vec![0, 1]);
        assert_eq!(selective_log_softmax(&x, &labels, None, 0.0).unwrap_err().field, "temperature");
        let g = Tensor::new(vec![3], vec![1.0; 3]);
        assert_eq!(softmax(&x, Some(&g)).unwrap_err().field, "grad_output.shape");
        let scalar = Tensor::new(vec![], vec![1.0f64]);
        assert_eq!(log_softmax(&scalar, None).unwrap_err().field, "logits.shape");
        assert_eq!(cross_entropy(&x, &labels, -100, Some(0.0)).unwrap_err().field, "normalizer");
    }
}
