//! The float types the kernels compute in, a vectorizable `exp`, and runtime CPU dispatch.
//!
//! Every hot loop is written as plain chunked Rust that LLVM auto-vectorizes. The crate is compiled for
//! the portable baseline (no `target-cpu=native`); [`multiversion!`] compiles each hot function a second
//! and third time with AVX2+FMA and AVX-512 enabled and picks one at run time from what the CPU reports,
//! the way torch's ATen picks its kernels. Results never depend on the chosen version beyond rounding:
//! the code never asks for fused multiply-adds, so LLVM does not contract `a * b + c`.

use std::fmt::{Debug, Display};
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};
use std::sync::OnceLock;

/// Elements per step of the hot loops and independent accumulators in reductions: two AVX-512 vectors
/// of f32 (four of f64), so that consecutive vectors overlap in the pipeline.
pub const LANES: usize = 32;

/// A float type the kernels compute in: `f32` or `f64`.
pub trait Real:
    Copy
    + Send
    + Sync
    + Debug
    + Display
    + PartialOrd
    + Default
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
{
    const ZERO: Self;
    const ONE: Self;
    const NAN: Self;
    const INFINITY: Self;
    const NEG_INFINITY: Self;
    /// Bytes per element on the wire.
    const BYTES: usize;
    /// The dtype's name as torch and numpy spell it.
    const NAME: &'static str;

    fn from_f64(value: f64) -> Self;
    fn to_f64(self) -> f64;
    fn from_le_slice(bytes: &[u8]) -> Self;
    fn extend_le(self, out: &mut Vec<u8>);
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn ln_1p(self) -> Self;
    fn sqrt(self) -> Self;
    fn abs(self) -> Self;
    fn is_nan(self) -> bool;
    fn is_finite(self) -> bool;
    /// `exp` without branches or library calls, so loops over it vectorize; within a few ulp of `exp`.
    /// `FUSED` evaluates its polynomial with fused multiply-adds (only where the CPU has them).
    fn exp_lane<const FUSED: bool>(self) -> Self;
    /// `ln(1 + self)` for `self` in [0, 1], without branches or library calls (so loops over it
    /// vectorize): `2 atanh(s)`, `s = x / (2 + x)`, by its series; within a few ulp of `ln_1p`.
    fn ln_1p_unit<const FUSED: bool>(self) -> Self;
    /// `self * b + c`, fused into one rounding when `FUSED` (only where the CPU has FMA).
    fn mul_add_if<const FUSED: bool>(self, b: Self, c: Self) -> Self;
}

#[inline(always)]
fn select<T: Copy>(cond: bool, a: T, b: T) -> T {
    if cond {
        a
    } else {
        b
    }
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NAN: Self = f32::NAN;
    const INFINITY: Self = f32::INFINITY;
    const NEG_INFINITY: Self = f32::NEG_INFINITY;
    const BYTES: usize = 4;
    const NAME: &'static str = "float32";

    #[inline(always)]
    fn from_f64(value: f64) -> Self {
        value as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn from_le_slice(bytes: &[u8]) -> Self {
        let mut raw = [0u8; 4];
        raw.copy_from_slice(&bytes[..4]);
        f32::from_le_bytes(raw)
    }
    #[inline(always)]
    fn extend_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    #[inline(always)]
    fn exp(self) -> Self {
        f32::exp(self)
    }
    #[inline(always)]
    fn ln(self) -> Self {
        f32::ln(self)
    }
    #[inline(always)]
    fn ln_1p(self) -> Self {
        f32::ln_1p(self)
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    #[inline(always)]
    fn abs(self) -> Self {
        f32::abs(self)
    }
    #[inline(always)]
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
    #[inline(always)]
    fn ln_1p_unit<const FUSED: bool>(self) -> Self {
        // s <= 1/3, so 7 terms of 2 (s + s^3/3 + s^5/5 + ...) leave < 1 ulp.
        let s = self / (2.0 + self);
        let s2 = s * s;
        let mut p: f32 = 1.0 / 13.0;
        p = p.mul_add_if::<FUSED>(s2, 1.0 / 11.0);
        p = p.mul_add_if::<FUSED>(s2, 1.0 / 9.0);
        p = p.mul_add_if::<FUSED>(s2, 1.0 / 7.0);
        p = p.mul_add_if::<FUSED>(s2, 1.0 / 5.0);
        p = p.mul_add_if::<FUSED>(s2, 1.0 / 3.0);
        p = p.mul_add_if::<FUSED>(s2, 1.0);
        2.0 * s * p
    }
    #[inline(always)]
    fn mul_add_if<const FUSED: bool>(self, b: Self, c: Self) -> Self {
        if FUSED {
            f32::mul_add(self, b, c)
        } else {
            self * b + c
        }
    }

    #[inline(always)]
    fn exp_lane<const FUSED: bool>(self) -> Self {
        // exp(x) = 2^n * exp(r), n = round(x / ln 2), |r| <= ln2 / 2 (Cody-Waite reduction), exp(r) by its
        // Taylor series to degree 7 (truncation error < 6e-9 relative, Horner: the fewest operations, and
        // the unrolled loops around it give the pipeline independent work), 2^n added to the exponent bits.
        // Results below the smallest normal float (x < -87.33) are 0 rather than subnormal.
        const LOG2E: f32 = std::f32::consts::LOG2_E;
        const LN2_HI: f32 = 0.693_359_4; // 355/512: n * LN2_HI is exact
        const LN2_LO: f32 = -2.121_944_4e-4; // ln 2 - LN2_HI
        const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer in the low bits
        const LOW: f32 = -87.33; // from here up 2^n * exp(r) is a normal float
        const HIGH: f32 = 88.722_83; // just below ln(f32::MAX)
        let x = self;
        let fma = |a: f32, b: f32, c: f32| a.mul_add_if::<FUSED>(b, c);
        let shifted = fma(x, LOG2E, ROUND);
        let n = shifted - ROUND;
        let r = fma(-n, LN2_LO, fma(-n, LN2_HI, x));
        let mut p = fma(r, 1.0 / 5040.0, 1.0 / 720.0);
        p = fma(p, r, 1.0 / 120.0);
        p = fma(p, r, 1.0 / 24.0);
        p = fma(p, r, 1.0 / 6.0);
        p = fma(p, r, 0.5);
        p = fma(p, r, 1.0);
        p = fma(p, r, 1.0);
        // The low 9 bits of `shifted` hold n (two's complement); shifted left 23 they are n's exponent.
        let y = f32::from_bits(p.to_bits().wrapping_add(shifted.to_bits() << 23));
        let y = select(x < LOW, 0.0, y);
        let y = select(x > HIGH, f32::INFINITY, y);
        select(x.is_nan(), x, y)
    }
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NAN: Self = f64::NAN;
    const INFINITY: Self = f64::INFINITY;
    const NEG_INFINITY: Self = f64::NEG_INFINITY;
    const BYTES: usize = 8;
    const NAME: &'static str = "float64";

    #[inline(always)]
    fn from_f64(value: f64) -> Self {
        value
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_le_slice(bytes: &[u8]) -> Self {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&bytes[..8]);
        f64::from_le_bytes(raw)
    }
    #[inline(always)]
    fn extend_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    #[inline(always)]
    fn exp(self) -> Self {
        f64::exp(self)
    }
    #[inline(always)]
    fn ln(self) -> Self {
        f64::ln(self)
    }
    #[inline(always)]
    fn ln_1p(self) -> Self {
        f64::ln_1p(self)
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    #[inline(always)]
    fn abs(self) -> Self {
        f64::abs(self)
    }
    #[inline(always)]
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
    #[inline(always)]
    fn ln_1p_unit<const FUSED: bool>(self) -> Self {
        // s <= 1/3, so 16 terms of 2 (s + s^3/3 + s^5/5 + ...) leave < 1 ulp.
        let s = self / (2.0 + self);
        let s2 = s * s;
        let mut p: f64 = 1.0 / 31.0;
        p = p.mul_add_if::<FUSED>(s2, 1.0 / 29.0);
        p = p.mul_add_if::<FUSED>(s2, 1.0 / 27.0);
        p = p.mul_add_if::<FUSED>(s2, 1.0 / 25.0);
        p = p.mul_add_if::<FUSED>(s2, 1.0 / 23.0);
        p = p.mul_add_if::<FUSED>(s2, 1.0 / 21.0);
        p = p.mul_add_if::<FUSED>(s2, 1.0 / 19.0);
        p = p.mul_add_if::<FUSED>(s2, 1.0 / 17.0);
        p = p.mul_add_if::<FUSED>(s2, 1.0 / 15.0);
        p = p.mul_add_if::<FUSED>(s2, 1.0 / 13.0);
        p = p.mul_add_if::<FUSED>(s2, 1.0 / 11.0);
        p = p.mul_add_if::<FUSED>(s2, 1.0 / 9.0);
        p = p.mul_add_if::<FUSED>(s2, 1.0 / 7.0);
        p = p.mul_add_if::<FUSED>(s2, 1.0 / 5.0);
        p = p.mul_add_if::<FUSED>(s2, 1.0 / 3.0);
        p = p.mul_add_if::<FUSED>(s2, 1.0);
        2.0 * s * p
    }
    #[inline(always)]
    fn mul_add_if<const FUSED: bool>(self, b: Self, c: Self) -> Self {
        if FUSED {
            f64::mul_add(self, b, c)
        } else {
            self * b + c
        }
    }

    #[inline(always)]
    fn exp_lane<const FUSED: bool>(self) -> Self {
        // As for f32, with the Taylor series to degree 13 (truncation error < 5e-18 relative); results
        // below the smallest normal double (x < -708.39) are 0.
        const LOG2E: f64 = std::f64::consts::LOG2_E;
        const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000); // ln 2 to 32 bits: n * LN2_HI is exact
        const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76); // ln 2 - LN2_HI
        const ROUND: f64 = 6_755_399_441_055_744.0; // 1.5 * 2^52
        const LOW: f64 = -708.39;
        const HIGH: f64 = 709.78; // just below ln(f64::MAX)
        let x = self;
        let fma = |a: f64, b: f64, c: f64| a.mul_add_if::<FUSED>(b, c);
        let shifted = fma(x, LOG2E, ROUND);
        let n = shifted - ROUND;
        let r = fma(-n, LN2_LO, fma(-n, LN2_HI, x));
        let mut p = fma(r, 1.0 / 6_227_020_800.0, 1.0 / 479_001_600.0);
        p = fma(p, r, 1.0 / 39_916_800.0);
        p = fma(p, r, 1.0 / 3_628_800.0);
        p = fma(p, r, 1.0 / 362_880.0);
        p = fma(p, r, 1.0 / 40_320.0);
        p = fma(p, r, 1.0 / 5_040.0);
        p = fma(p, r, 1.0 / 720.0);
        p = fma(p, r, 1.0 / 120.0);
        p = fma(p, r, 1.0 / 24.0);
        p = fma(p, r, 1.0 / 6.0);
        p = fma(p, r, 0.5);
        p = fma(p, r, 1.0);
        p = fma(p, r, 1.0);
        // The low 12 bits of `shifted` hold n; shifted left 52 they are n's exponent.
        let y = f64::from_bits(p.to_bits().wrapping_add(shifted.to_bits() << 52));
        let y = select(x < LOW, 0.0, y);
        let y = select(x > HIGH, f64::INFINITY, y);
        select(x.is_nan(), x, y)
    }
}

/// The instruction set the multiversioned kernels run with on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Baseline,
    Avx2,
    Avx512,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Baseline => "baseline",
            Level::Avx2 => "avx2+fma",
            Level::Avx512 => "avx512",
        }
    }
}

/// What the CPU supports, detected once.
pub fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(detect)
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Level {
    if std::env::var_os("KAIZEN_KERNELS_SIMD").is_some_and(|v| v == "baseline") {
        return Level::Baseline;
    }
    if is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512dq")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
    {
        Level::Avx512
    } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        Level::Avx2
    } else {
        Level::Baseline
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Level {
    Level::Baseline
}

/// Defines `fn name<T: Real>(args) -> ret { body }` compiled three times (baseline, AVX2+FMA, AVX-512 on
/// x86-64) and dispatched on [`level()`]. Everything the body calls on its hot path must be
/// `#[inline(always)]` so it is compiled with the same features. Inside the body the constant `FUSED`
/// says whether fused multiply-adds are available (pass it on: `x.exp_lane::<FUSED>()`); results of
/// the fused and unfused versions differ by rounding only.
#[macro_export]
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident<$t:ident: Real>($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name<$t: $crate::simd::Real>($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::needless_range_loop)]
            fn generic<$t: $crate::simd::Real, const FUSED: bool>($($arg: $ty),*) $(-> $ret)? $body

            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                fn avx512<$t: $crate::simd::Real>($($arg: $ty),*) $(-> $ret)? {
                    generic::<$t, true>($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2<$t: $crate::simd::Real>($($arg: $ty),*) $(-> $ret)? {
                    generic::<$t, true>($($arg),*)
                }
                match $crate::simd::level() {
                    // SAFETY: level() returned Avx512 only after the CPU reported every feature enabled here.
                    $crate::simd::Level::Avx512 => return unsafe { avx512::<$t>($($arg),*) },
                    // SAFETY: level() returned Avx2 only after the CPU reported AVX2 and FMA.
                    $crate::simd::Level::Avx2 => return unsafe { avx2::<$t>($($arg),*) },
                    $crate::simd::Level::Baseline => {}
                }
            }
            generic::<$t, false>($($arg),*)
        }
    };
}

/// Largest element (NEG_INFINITY for an empty slice); vectorizes through [`LANES`] running maxima.
#[inline(always)]
pub fn max_of<T: Real>(xs: &[T]) -> T {
    let mut acc = [T::NEG_INFINITY; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for chunk in &mut chunks {
        for i in 0..LANES {
            acc[i] = select(chunk[i] > acc[i], chunk[i], acc[i]);
        }
    }
    let mut best = T::NEG_INFINITY;
    for &x in chunks.remainder().iter().chain(acc.iter()) {
        best = select(x > best, x, best);
    }
    best
}

/// Sum of the elements through [`LANES`] partial sums.
#[inline(always)]
pub fn sum_of<T: Real>(xs: &[T]) -> T {
    let mut acc = [T::ZERO; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for chunk in &mut chunks {
        for i in 0..LANES {
            acc[i] += chunk[i];
        }
    }
    let mut total = T::ZERO;
    for &x in chunks.remainder() {
        total += x;
    }
    lane_total(acc) + total
}

/// Sum of exp(x * scale - shift) over the elements, each term written to `out` when given.
#[inline(always)]
pub fn sum_exp<T: Real, const FUSED: bool>(xs: &[T], scale: T, shift: T, mut out: Option<&mut [T]>) -> T {
    let mut acc = [T::ZERO; LANES];
    let mut start = 0;
    while start + LANES <= xs.len() {
        let chunk = &xs[start..start + LANES];
        let mut e = [T::ZERO; LANES];
        for i in 0..LANES {
            e[i] = (chunk[i] * scale - shift).exp_lane::<FUSED>();
            acc[i] += e[i];
        }
        if let Some(out) = out.as_deref_mut() {
            out[start..start + LANES].copy_from_slice(&e);
        }
        start += LANES;
    }
    let mut total = T::ZERO;
    for i in start..xs.len() {
        let e = (xs[i] * scale - shift).exp_lane::<FUSED>();
        total += e;
        if let Some(out) = out.as_deref_mut() {
            out[i] = e;
        }
    }
    lane_total(acc) + total
}

/// Sum of a[i] * b[i] through [`LANES`] partial sums.
#[inline(always)]
pub fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::ZERO; LANES];
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut start = 0;
    while start + LANES <= n {
        for i in 0..LANES {
            acc[i] += a[start + i] * b[start + i];
        }
        start += LANES;
    }
    let mut total = T::ZERO;
    for i in start..n {
        total += a[i] * b[i];
    }
    lane_total(acc) + total
}

/// Pairwise total of the lane accumulators.
#[inline(always)]
pub fn lane_total<T: Real>(acc: [T; LANES]) -> T {
    let mut width = LANES;
    let mut acc = acc;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            acc[i] += acc[i + width];
        }
    }
    acc[0]
}

crate::multiversion! {
    /// `out[i] = exp(xs[i])` for every element, vectorized.
    pub fn exp_into<T: Real>(xs: &[T], out: &mut [T]) {
        let n = xs.len().min(out.len());
        let (xs, out) = (&xs[..n], &mut out[..n]);
        let mut start = 0;
        while start + LANES <= n {
            let (x, o) = (&xs[start..start + LANES], &mut out[start..start + LANES]);
            for i in 0..LANES {
                o[i] = x[i].exp_lane::<FUSED>();
            }
            start += LANES;
        }
        for i in start..n {
            out[i] = xs[i].exp_lane::<FUSED>();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max_rel_err_f64(values: impl Iterator<Item = f64>) -> f64 {
        values
            .map(|x| {
                let want = x.exp();
                let got = x.exp_lane::<false>();
                let fused = x.exp_lane::<true>();
                if want != 0.0 && want.is_finite() {
                    assert!(((fused - want) / want).abs() < 1e-14, "fused {x}");
                }
                if want == 0.0 {
                    got.abs()
                } else if want.is_infinite() {
                    if got == want {
                        0.0
                    } else {
                        f64::INFINITY
                    }
                } else {
                    ((got - want) / want).abs()
                }
            })
            .fold(0.0, f64::max)
    }

    #[test]
    fn exp_lane_f64_is_accurate_over_the_whole_range() {
        let err = max_rel_err_f64((-708_380..=709_770).map(|i| i as f64 * 1e-3 + 1e-7));
        assert!(err < 1e-14, "max relative error {err}");
        // Below the normal range the result is 0, never garbage; above it, infinity.
        for x in [-708.4, -709.0, -745.2, -1e300, f64::NEG_INFINITY] {
            assert_eq!(x.exp_lane::<false>(), 0.0, "{x}");
            assert_eq!(x.exp_lane::<true>(), 0.0, "{x}");
        }
        for x in [709.79, 710.0, 1e300, f64::INFINITY] {
            assert_eq!(x.exp_lane::<true>(), f64::INFINITY, "{x}");
        }
        assert!(709.78f64.exp_lane::<false>().is_finite());
        assert_eq!(1000.0f64.exp_lane::<false>(), f64::INFINITY);
        assert_eq!((-1000.0f64).exp_lane::<true>(), 0.0);
        assert!(f64::NAN.exp_lane::<false>().is_nan());
        assert_eq!(0.0f64.exp_lane::<true>(), 1.0);
    }

    #[test]
    fn exp_lane_f32_is_accurate_over_the_whole_range() {
        let mut worst = 0.0f64;
        for i in -87_330..=88_720 {
            let x = i as f32 * 1e-3 + 1e-4;
            let want = (x as f64).exp();
            for got in [x.exp_lane::<false>() as f64, x.exp_lane::<true>() as f64] {
                worst = worst.max(((got - want) / want).abs());
            }
        }
        assert!(worst < 5e-7, "max relative error {worst}");
        assert_eq!(100.0f32.exp_lane::<true>(), f32::INFINITY);
        assert_eq!((-200.0f32).exp_lane::<false>(), 0.0);
        assert!(f32::NAN.exp_lane::<true>().is_nan());
        for x in [-87.34f32, -100.0, -1e30, f32::NEG_INFINITY] {
            assert_eq!(x.exp_lane::<true>(), 0.0, "{x}");
        }
        assert!(88.722_83f32.exp_lane::<false>().is_finite());
        assert_eq!(88.8f32.exp_lane::<false>(), f32::INFINITY);
        assert!((-87.33f32).exp_lane::<true>() > 0.0);
    }

    #[test]
    fn ln_1p_unit_is_accurate_on_the_unit_interval() {
        let mut worst = (0.0f64, 0.0f64);
        for i in 0..=100_000 {
            let x = i as f64 / 100_000.0;
            let xs = [x, x * 1e-12, x * 1e-30];
            for x in xs {
                let want = x.ln_1p();
                for got in [x.ln_1p_unit::<false>(), x.ln_1p_unit::<true>()] {
                    worst.0 = worst.0.max(if want == 0.0 { got.abs() } else { ((got - want) / want).abs() });
                }
                let (x32, want32) = (x as f32, (x as f32 as f64).ln_1p());
                for got in [x32.ln_1p_unit::<false>(), x32.ln_1p_unit::<true>()] {
                    let got = got as f64;
                    worst.1 =
                        worst.1.max(if want32 == 0.0 { got.abs() } else { ((got - want32) / want32).abs() });
                }
            }
        }
        assert!(worst.0 < 1e-15, "f64 relative error {}", worst.0);
        assert!(worst.1 < 3e-7, "f32 relative error {}", worst.1);
    }

    #[test]
    fn reductions_match_sequential_loops() {
        let xs: Vec<f64> = (0..1003).map(|i| ((i * 37 % 101) as f64 - 50.0) / 7.0).collect();
        assert_eq!(max_of(&xs), xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max));
        let want: f64 = xs.iter().sum();
        assert!((sum_of(&xs) - want).abs() < 1e-12);
        let shift = 3.0;
        let mut out = vec![0.0; xs.len()];
        let total = sum_exp::<f64, false>(&xs, 1.0, shift, Some(&mut out));
        let want: f64 = xs.iter().map(|x| (x - shift).exp()).sum();
        assert!((total - want).abs() / want < 1e-13);
        for (o, x) in out.iter().zip(&xs) {
            assert!((o - (x - shift).exp()).abs() <= 1e-14 * o.abs());
        }
        assert_eq!(max_of::<f32>(&[]), f32::NEG_INFINITY);
        let want: f64 = xs.iter().map(|x| x * x).sum();
        assert!((dot(&xs, &xs) - want).abs() / want < 1e-13);
    }

    #[test]
    fn exp_into_dispatches_to_the_same_results() {
        let xs: Vec<f32> = (0..100).map(|i| i as f32 * 0.37 - 20.0).collect();
        let mut out = vec![0.0f32; 100];
        exp_into(&xs, &mut out);
        let fused = level() != Level::Baseline;
        for (o, x) in out.iter().zip(&xs) {
            assert_eq!(*o, if fused { x.exp_lane::<true>() } else { x.exp_lane::<false>() });
        }
    }
}
