use kaizen_kernels::ops::softmax;
use kaizen_kernels::simd::{exp_into, level};
use kaizen_kernels::tensor::Tensor;
use std::time::Instant;

fn time<F: FnMut()>(name: &str, mut f: F) {
    for _ in 0..3 {
        f();
    }
    let mut v = vec![];
    for _ in 0..50 {
        let t = Instant::now();
        f();
        v.push(t.elapsed().as_secs_f64());
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("{name}: p50 {:.4} ms  min {:.4} ms", v[25] * 1e3, v[0] * 1e3);
}

fn main() {
    println!("level {:?}", level());
    let n = 8 * 49152;
    let x: Vec<f32> = (0..n).map(|i| ((i * 7919 % 1013) as f32 - 500.0) / 100.0).collect();
    let mut out = vec![0.0f32; n];
    time("exp_into f32 393k", || exp_into(&x, &mut out));
    time("std exp f32 393k", || {
        for (o, &a) in out.iter_mut().zip(&x) {
            *o = a.exp();
        }
    });
    let t = Tensor::new(vec![8, 49152], x.clone());
    rayon::ThreadPoolBuilder::new().num_threads(1).build_global().unwrap();
    time("log_softmax 8x49152 (1 thread)", || {
        std::hint::black_box(softmax::log_softmax(&t, None).unwrap());
    });
    time("softmax 8x49152 (1 thread)", || {
        std::hint::black_box(softmax::softmax(&t, None).unwrap());
    });
}
