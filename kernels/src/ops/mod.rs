//! The kernels: each op is a pure function over decoded tensors with its own unit tests. They validate
//! what only they know (shapes relative to each other, parameter ranges) and return [`OpError`]s that
//! name the request field at fault.
//!
//! [`OpError`]: crate::tensor::OpError

pub mod dpo;
pub mod grpo;
pub mod kl;
pub mod optim;
pub mod softmax;

use std::ops::Range;

use rayon::prelude::*;

/// Work (elements touched) below which an op runs on the calling thread only.
pub const PARALLEL_MIN_WORK: usize = 1 << 16;
/// Work per parallel task.
const PARALLEL_GRAIN: usize = 1 << 14;

/// Runs `f` over consecutive blocks of rows, in parallel on the rayon pool when the work is large, giving
/// each call its row range and the matching part of `out` (`out_per_row` elements per row; 0 when there
/// is no row output). Returns what the calls returned, in row order.
pub fn par_row_blocks<T, R, F>(
    rows: usize,
    work_per_row: usize,
    out: &mut [T],
    out_per_row: usize,
    f: F,
) -> Vec<R>
where
    T: Send,
    R: Send,
    F: Fn(Range<usize>, &mut [T]) -> R + Sync + Send,
{
    let work_per_row = work_per_row.max(1);
    if rows <= 1 || rows.saturating_mul(work_per_row) < PARALLEL_MIN_WORK {
        return vec![f(0..rows, out)];
    }
    let block = (PARALLEL_GRAIN / work_per_row).clamp(1, rows);
    if out_per_row == 0 {
        let blocks = rows.div_ceil(block);
        return (0..blocks)
            .into_par_iter()
            .map(|i| f(i * block..((i + 1) * block).min(rows), &mut []))
            .collect();
    }
    out.par_chunks_mut(block * out_per_row)
        .enumerate()
        .map(|(i, chunk)| {
            let start = i * block;
            f(start..start + chunk.len() / out_per_row, chunk)
        })
        .collect()
}

/// Elements below which a flat (elementwise, memory-bound) op runs on the calling thread only: waking
/// another thread costs more than it saves until the buffers outgrow the caches.
pub const FLAT_PARALLEL_MIN: usize = 1 << 18;
/// Elements per task of the flat ops.
pub const FLAT_CHUNK: usize = 1 << 16;

/// Runs `f` over consecutive chunks of a flat output, in parallel when large, giving each call its
/// element range and the matching part of `out`.
pub fn par_flat_chunks<T, F>(out: &mut [T], f: F)
where
    T: Send,
    F: Fn(Range<usize>, &mut [T]) + Sync + Send,
{
    let n = out.len();
    if n < FLAT_PARALLEL_MIN {
        return f(0..n, out);
    }
    out.par_chunks_mut(FLAT_CHUNK).enumerate().for_each(|(i, chunk)| {
        let start = i * FLAT_CHUNK;
        f(start..start + chunk.len(), chunk)
    });
}

/// [`par_flat_chunks`] over two outputs of the same length.
pub fn par_flat_chunks2<T, F>(a: &mut [T], b: &mut [T], f: F)
where
    T: Send,
    F: Fn(Range<usize>, &mut [T], &mut [T]) + Sync + Send,
{
    let n = a.len().min(b.len());
    if n < FLAT_PARALLEL_MIN {
        return f(0..n, &mut a[..n], &mut b[..n]);
    }
    a.par_chunks_mut(FLAT_CHUNK).zip(b.par_chunks_mut(FLAT_CHUNK)).enumerate().for_each(|(i, (x, y))| {
        let start = i * FLAT_CHUNK;
        f(start..start + x.len(), x, y)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_blocks_cover_every_row_once_in_order() {
        for rows in [1usize, 2, 3, 100, 1000] {
            for v in [1usize, 7, 4096] {
                let mut out = vec![0usize; rows * v];
                let ranges = par_row_blocks(rows, v, &mut out, v, |range, chunk| {
                    for (k, row) in range.clone().enumerate() {
                        for x in &mut chunk[k * v..(k + 1) * v] {
                            *x = row;
                        }
                    }
                    range
                });
                let flat: Vec<usize> = ranges.into_iter().flatten().collect();
                assert_eq!(flat, (0..rows).collect::<Vec<_>>());
                for (i, x) in out.iter().enumerate() {
                    assert_eq!(*x, i / v);
                }
                let counted: Vec<usize> = par_row_blocks(rows, v, &mut [] as &mut [u8], 0, |r, _| r.len());
                assert_eq!(counted.iter().sum::<usize>(), rows);
            }
        }
    }
}
