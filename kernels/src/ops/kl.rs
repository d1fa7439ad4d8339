//! The k3 estimator of KL(policy || reference) per token, as TRL's GRPO computes it:
//! `exp(ref - logp) - (ref - logp) - 1`, with d/d logp = `1 - exp(ref - logp)`.

use crate::multiversion;
use crate::ops::{par_flat_chunks, par_flat_chunks2};
use crate::simd::Real;
use crate::tensor::{expect_shape, OpResult, Tensor};

multiversion! {
    fn k3<T: Real>(logps: &[T], reference: &[T], kl: &mut [T]) {
        for ((o, &lp), &r) in kl.iter_mut().zip(logps).zip(reference) {
            let d = r - lp;
            *o = d.exp_lane::<FUSED>() - d - T::ONE;
        }
    }
}

multiversion! {
    fn k3_with_grad<T: Real>(logps: &[T], reference: &[T], g: &[T], kl: &mut [T], grad: &mut [T]) {
        let n = kl.len();
        let (logps, reference, g, grad) = (&logps[..n], &reference[..n], &g[..n], &mut grad[..n]);
        for i in 0..n {
            let d = reference[i] - logps[i];
            let e = d.exp_lane::<FUSED>();
            kl[i] = e - d - T::ONE;
            grad[i] = g[i] * (T::ONE - e);
        }
    }
}

/// Per-token k3 KL and, when `grad_output` is given, its vector-Jacobian product w.r.t. `logps`.
pub fn kl_k3<T: Real>(
    logps: &Tensor<T>,
    ref_logps: &Tensor<T>,
    grad_output: Option<&Tensor<T>>,
) -> OpResult<(Tensor<T>, Option<Tensor<T>>)> {
    expect_shape("ref_logps", ref_logps, &logps.shape, "logps")?;
    if let Some(g) = grad_output {
        expect_shape("grad_output", g, &logps.shape, "logps")?;
    }
    let n = logps.len();
    let mut kl = vec![T::ZERO; n];
    let grad = match grad_output {
        None => {
            par_flat_chunks(&mut kl, |range, out| {
                k3(&logps.data[range.clone()], &ref_logps.data[range], out)
            });
            None
        }
        Some(g) => {
            let mut grad = vec![T::ZERO; n];
            par_flat_chunks2(&mut kl, &mut grad, |range, out, grad| {
                let (lp, r, g) = (&logps.data[range.clone()], &ref_logps.data[range.clone()], &g.data[range]);
                k3_with_grad(lp, r, g, out, grad)
            });
            Some(Tensor::new(logps.shape.clone(), grad))
        }
    };
    Ok((Tensor::new(logps.shape.clone(), kl), grad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k3_matches_its_formula_and_derivative() {
        let lp = Tensor::new(vec![2, 2], vec![-1.0f64, -2.0, -0.5, -3.0]);
        let r = Tensor::new(vec![2, 2], vec![-1.0f64, -1.5, -2.5, -0.1]);
        let g = Tensor::new(vec![2, 2], vec![1.0f64, 2.0, -1.0, 0.5]);
        let (kl, grad) = kl_k3(&lp, &r, Some(&g)).unwrap();
        let grad = grad.unwrap();
        for i in 0..4 {
            let d: f64 = r.data[i] - lp.data[i];
            assert!((kl.data[i] - (d.exp() - d - 1.0)).abs() < 1e-14);
            assert!((grad.data[i] - g.data[i] * (1.0 - d.exp())).abs() < 1e-14);
            assert!(kl.data[i] >= 0.0);
        }
        assert_eq!(kl.data[0], 0.0);
        let (_, none) = kl_k3(&lp, &r, None).unwrap();
        assert!(none.is_none());
        let short = Tensor::new(vec![4], vec![0.0f64; 4]);
        assert_eq!(kl_k3(&lp, &short, None).unwrap_err().field, "ref_logps.shape");
    }
}
