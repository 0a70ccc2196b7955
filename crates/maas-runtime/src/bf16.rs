//! Matrix products in bfloat16 on CPUs with AVX512_BF16: weights packed once, sums in f32.
//!
//! [`Bf16Matrix`] holds a weight matrix rounded to bfloat16 and laid out for `vdpbf16ps`
//! (`_mm512_dpbf16_ps`), which multiplies 32 pairs of bfloat16 values and adds them to 16 f32
//! sums in one instruction: twice the multiply-adds of an f32 fused multiply-add of the same
//! width. The encoder's dense layers are nearly all of its time and already run at the f32
//! peak of the core (bench/README.md); this is the step past it that the hardware offers.
//!
//! Rounding: each product rounds its input rows (activations) and the weights to bfloat16
//! (8 significant bits, round to nearest even); products of two bfloat16 values are exact in
//! f32 and are summed in f32. Everything between products (bias, activation, residual, layer
//! norm, attention, pooling) stays f32. For all-MiniLM-L6-v2 the vectors stay within cosine
//! 0.9999 of the f32 ones (tests/embed.rs); decision 013 says why this is the default.
//!
//! Layout: the weight `[k, n]` is cut into panels of [`COLUMNS`] columns; a panel holds, for
//! each pair of rows `2i, 2i+1`, the 32 columns' two values side by side (one `u32` per column:
//! row `2i` in the low half), i.e. exactly what one `vdpbf16ps` operand wants. Input rows are
//! converted to the same pairs (`u32` = two neighbouring values of a row). The kernel keeps a
//! tile of [`ROWS`] rows × 32 columns in 24 registers over the whole `k`, broadcasting one pair
//! of each row and loading two halves of the panel's pair-row per step.
//!
//! This is the workspace's one module with `unsafe` code (decision 013): calling the
//! `#[target_feature]` functions (sound because [`Bf16Matrix::pack`] returns a matrix only
//! after checking the CPU) and the unaligned vector loads and stores, each on a slice whose
//! length is checked first.
#![allow(unsafe_code)]

use rayon::prelude::*;

/// Columns per panel: two 16-lane registers.
pub const COLUMNS: usize = 32;
/// Rows of the register tile (2 × 12 accumulators + 2 weights + 1 broadcast of 32 registers).
pub const ROWS: usize = 12;
/// Products smaller than this (multiply-adds) run on the calling thread.
const PARALLEL_MIN: usize = 1 << 22;

/// A `[k, n]` weight matrix in bfloat16, packed for [`product`](Bf16Matrix::product).
#[derive(Debug, Clone)]
pub struct Bf16Matrix {
    k: usize,
    n: usize,
    /// `k` rounded up to pairs.
    pairs: usize,
    /// `n / COLUMNS` rounded up panels of `pairs × COLUMNS` values.
    panels: Vec<u32>,
}

/// One bfloat16 value's bits, rounded to nearest even.
fn bits(x: f32) -> u32 {
    u32::from(half::bf16::from_f32(x).to_bits())
}

/// Whether this CPU has the instructions the products need.
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl Bf16Matrix {
    /// Packs `weight` (`[k, n]`, row-major); `None` when the CPU cannot run the products.
    pub fn pack(weight: &[f32], k: usize, n: usize) -> Option<Bf16Matrix> {
        assert_eq!(weight.len(), k * n, "the weight is not [k, n]");
        if !supported() || k == 0 || n == 0 {
            return None;
        }
        let pairs = k.div_ceil(2);
        let count = n.div_ceil(COLUMNS);
        let mut panels = vec![0u32; count * pairs * COLUMNS];
        for (p, panel) in panels.chunks_exact_mut(pairs * COLUMNS).enumerate() {
            for (i, pair) in panel.chunks_exact_mut(COLUMNS).enumerate() {
                for (c, value) in pair.iter_mut().enumerate().take(n.saturating_sub(p * COLUMNS)) {
                    let column = p * COLUMNS + c;
                    let low = weight[2 * i * n + column];
                    let high = if 2 * i + 1 < k { weight[(2 * i + 1) * n + column] } else { 0.0 };
                    *value = bits(low) | (bits(high) << 16);
                }
            }
        }
        Some(Bf16Matrix { k, n, pairs, panels })
    }

    /// `x` (`[m, k]`, row-major) times the matrix: `[m, n]`, row-major. Row blocks are spread
    /// over the current rayon pool when the product is large.
    pub fn product(&self, x: &[f32]) -> Vec<f32> {
        assert_eq!(x.len() % self.k, 0, "the input rows are not k wide");
        let m = x.len() / self.k;
        let mut out = vec![0f32; m * self.n];
        if m == 0 {
            return out;
        }
        let mut a = vec![0u32; m * self.pairs];
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: a `Bf16Matrix` exists only where `supported()` held (see `pack`).
            unsafe { x86::to_pairs(x, self.k, &mut a) };
            let run = |(rows, out): (&[u32], &mut [f32])| {
                // SAFETY: as above.
                unsafe { x86::multiply(self, rows, out) }
            };
            let threads = rayon::current_num_threads();
            if threads <= 1 || m * self.k * self.n < PARALLEL_MIN {
                run((&a, &mut out));
            } else {
                // A few tasks per thread (work stealing evens them out), each long enough that
                // a panel is reused over many row tiles while it is in the cache.
                let block = m.div_ceil(threads * 4).next_multiple_of(ROWS).max(4 * ROWS);
                a.par_chunks(block * self.pairs).zip(out.par_chunks_mut(block * self.n)).for_each(run);
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("`pack` makes a Bf16Matrix only on x86-64 CPUs with AVX512_BF16");
        out
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The AVX-512 code; every function needs `supported()` to have held.
    use std::arch::x86_64::{
        __m512, __m512bh, __m512i, _mm512_cvtne2ps_pbh, _mm512_dpbf16_ps, _mm512_loadu_ps, _mm512_loadu_si512,
        _mm512_set1_epi32, _mm512_setzero_ps, _mm512_storeu_ps, _mm512_storeu_si512,
    };

    use super::{Bf16Matrix, COLUMNS, ROWS, bits};

    /// Rounds the rows of `x` (`k` wide) to bfloat16 pairs in `out` (`k.div_ceil(2)` per row).
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) fn to_pairs(x: &[f32], k: usize, out: &mut [u32]) {
        let pairs = k.div_ceil(2);
        for (row, dst) in x.chunks_exact(k).zip(out.chunks_exact_mut(pairs)) {
            let mut src = row.chunks_exact(32);
            let mut dst_chunks = dst.chunks_exact_mut(16);
            for (s, d) in (&mut src).zip(&mut dst_chunks) {
                // SAFETY: `s` holds 32 values and `d` 16 pairs (64 bytes each way); the
                // conversion's result is 64 bytes of plain data like the pairs.
                unsafe {
                    let low = _mm512_loadu_ps(s.as_ptr());
                    let high = _mm512_loadu_ps(s.as_ptr().add(16));
                    // The second operand fills the low half: values stay in order.
                    let packed = std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(high, low));
                    _mm512_storeu_si512(d.as_mut_ptr().cast(), packed);
                }
            }
            let done = row.len() - src.remainder().len();
            for (i, d) in dst[done / 2..].iter_mut().enumerate() {
                let low = row[done + 2 * i];
                let high = row.get(done + 2 * i + 1).copied().unwrap_or(0.0);
                *d = bits(low) | (bits(high) << 16);
            }
        }
    }

    /// `out` (rows of `n`) = the pair rows `a` times `w`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) fn multiply(w: &Bf16Matrix, a: &[u32], out: &mut [f32]) {
        let (pairs, n) = (w.pairs, w.n);
        let m = a.len() / pairs;
        // The rows in tiles of ROWS, each tile pair-major (the ROWS rows' pair i side by side,
        // zero rows after the last), so that a step of the kernel reads one short run.
        let tiles = m.div_ceil(ROWS);
        let mut packed = vec![0u32; tiles * pairs * ROWS];
        for (r, row) in a.chunks_exact(pairs).enumerate() {
            let tile = &mut packed[(r / ROWS) * pairs * ROWS..][..pairs * ROWS];
            for (slot, &pair) in tile.iter_mut().skip(r % ROWS).step_by(ROWS).zip(row) {
                *slot = pair;
            }
        }
        for (p, panel) in w.panels.chunks_exact(pairs * COLUMNS).enumerate() {
            let column = p * COLUMNS;
            let width = COLUMNS.min(n - column);
            for (t, tile_rows) in packed.chunks_exact(pairs * ROWS).enumerate() {
                let sums = tile(tile_rows, panel);
                let start = t * ROWS;
                for (r, sums) in sums.iter().enumerate().take(m - start) {
                    let dst = &mut out[(start + r) * n + column..][..width];
                    if width == COLUMNS {
                        // SAFETY: `dst` holds 32 values.
                        unsafe {
                            _mm512_storeu_ps(dst.as_mut_ptr(), sums[0]);
                            _mm512_storeu_ps(dst.as_mut_ptr().add(16), sums[1]);
                        }
                    } else {
                        let mut full = [0f32; COLUMNS];
                        // SAFETY: `full` holds 32 values.
                        unsafe {
                            _mm512_storeu_ps(full.as_mut_ptr(), sums[0]);
                            _mm512_storeu_ps(full.as_mut_ptr().add(16), sums[1]);
                        }
                        dst.copy_from_slice(&full[..width]);
                    }
                }
            }
        }
    }

    /// Reads 16 pairs of bfloat16 values as the 32 values.
    #[target_feature(enable = "avx512f,avx512bf16")]
    #[inline]
    fn as_bf16(pairs: __m512i) -> __m512bh {
        // SAFETY: both are 64 bytes of plain data; every bit pattern is a valid value of each.
        unsafe { std::mem::transmute::<__m512i, __m512bh>(pairs) }
    }

    /// The sums of one tile of rows (`ROWS` pairs per step) times one panel (`COLUMNS` per step).
    #[target_feature(enable = "avx512f,avx512bf16")]
    #[inline]
    fn tile(rows: &[u32], panel: &[u32]) -> [[__m512; 2]; ROWS] {
        let (rows, _) = rows.as_chunks::<ROWS>();
        let (panel, _) = panel.as_chunks::<COLUMNS>();
        let mut sums = [[_mm512_setzero_ps(); 2]; ROWS];
        for (x, weights) in rows.iter().zip(panel) {
            // SAFETY: `weights` holds 32 pairs, two vectors' worth.
            let (w0, w1) = unsafe {
                (_mm512_loadu_si512(weights.as_ptr().cast()), _mm512_loadu_si512(weights.as_ptr().add(16).cast()))
            };
            let (w0, w1) = (as_bf16(w0), as_bf16(w1));
            for (&pair, sum) in x.iter().zip(sums.iter_mut()) {
                let x = as_bf16(_mm512_set1_epi32(pair as i32));
                sum[0] = _mm512_dpbf16_ps(sum[0], x, w0);
                sum[1] = _mm512_dpbf16_ps(sum[1], x, w1);
            }
        }
        sums
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len).map(|i| ((i * 7919 + seed * 104_729) % 2001) as f32 / 1000.0 - 1.0).collect()
    }

    /// The f32 product with both sides rounded to bfloat16 first: what the kernel computes,
    /// up to the order of the f32 sums.
    fn rounded_product(x: &[f32], w: &[f32], k: usize, n: usize) -> Vec<f32> {
        let round = |v: f32| half::bf16::from_f32(v).to_f32();
        let m = x.len() / k;
        let mut out = vec![0f32; m * n];
        for r in 0..m {
            for c in 0..n {
                out[r * n + c] = (0..k).map(|i| round(x[r * k + i]) * round(w[i * n + c])).sum();
            }
        }
        out
    }

    #[test]
    fn products_match_the_rounded_f32_product_on_every_shape() {
        if !supported() {
            eprintln!("skipped: this CPU has no AVX512_BF16 (the encoder uses f32 products here)");
            assert!(Bf16Matrix::pack(&[1.0], 1, 1).is_none());
            return;
        }
        // Whole and partial tiles, panels and 32-value chunks, odd k, one row.
        for (m, k, n) in [(24, 64, 64), (13, 7, 45), (1, 384, 32), (30, 100, 70), (12, 33, 1), (200, 96, 96)] {
            let (x, w) = (values(m * k, 1), values(k * n, 2));
            let packed = Bf16Matrix::pack(&w, k, n).unwrap();
            let got = packed.product(&x);
            let want = rounded_product(&x, &w, k, n);
            for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                assert!((g - e).abs() <= 1e-4 * (1.0 + e.abs()), "[{m},{k}]x[{k},{n}] at {i}: {g} vs {e}");
            }
        }
    }

    #[test]
    fn large_products_split_over_threads_give_the_same_values() {
        if !supported() {
            eprintln!("skipped: this CPU has no AVX512_BF16");
            return;
        }
        let (m, k, n) = (1000, 384, 384);
        let (x, w) = (values(m * k, 3), values(k * n, 4));
        let packed = Bf16Matrix::pack(&w, k, n).unwrap();
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(|| packed.product(&x));
        let four = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap().install(|| packed.product(&x));
        assert_eq!(one, four);
    }
}
