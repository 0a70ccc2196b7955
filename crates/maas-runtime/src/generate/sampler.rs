//! Choosing the next token from one logits row: temperature, top-k, top-p, penalties, seed.
//!
//! One [`Sampler`] follows one sequence: it owns the random generator (seeded when the
//! request asks for reproducible output) and counts the tokens it chose, for the presence and
//! frequency penalties. Per token it touches the whole row a few times in linear passes: top-k
//! is a partial selection and top-p a weight histogram, so the vocabulary is never sorted.

use std::cmp::Ordering;
use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::RuntimeError;

/// How to choose tokens (OpenAI's parameters).
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature, 0..=2; 0 chooses the most likely token (greedy). Default 1.
    pub temperature: f32,
    /// Nucleus sampling: only the most likely tokens whose probabilities add up to `top_p`,
    /// in (0, 1]; 1 (the default) turns it off.
    pub top_p: f32,
    /// Only the `top_k` most likely tokens; 0 (the default) turns it off.
    pub top_k: usize,
    /// Subtracted once from the logit of every token already generated, -2..=2. Default 0.
    pub presence_penalty: f32,
    /// Subtracted from a token's logit once per time it was generated, -2..=2. Default 0.
    pub frequency_penalty: f32,
    /// The same seed and the same logits give the same tokens; `None`: fresh entropy.
    pub seed: Option<u64>,
    /// Added to the logits of these tokens before anything else, -100..=100 (OpenAI's
    /// `logit_bias`: -100 bans a token, 100 all but forces it).
    pub logit_bias: Vec<(u32, f32)>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: None,
            logit_bias: Vec::new(),
        }
    }
}

impl SamplingParams {
    /// Range checks -> [`RuntimeError::InvalidInput`] naming the field (temperature 0..=2,
    /// top_p (0, 1], penalties -2..=2; NaN is out of every range).
    pub fn validate(&self) -> Result<(), RuntimeError> {
        if !(0.0..=2.0).contains(&self.temperature) {
            return Err(out_of_range("temperature", self.temperature, "between 0 and 2"));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(out_of_range("top_p", self.top_p, "greater than 0 and at most 1"));
        }
        if !(-2.0..=2.0).contains(&self.presence_penalty) {
            return Err(out_of_range("presence_penalty", self.presence_penalty, "between -2 and 2"));
        }
        if !(-2.0..=2.0).contains(&self.frequency_penalty) {
            return Err(out_of_range("frequency_penalty", self.frequency_penalty, "between -2 and 2"));
        }
        if let Some(&(_, bias)) = self.logit_bias.iter().find(|(_, bias)| !(-100.0..=100.0).contains(bias)) {
            return Err(out_of_range("logit_bias", bias, "between -100 and 100"));
        }
        Ok(())
    }
}

/// The error of a parameter outside its range.
fn out_of_range(field: &str, value: f32, range: &str) -> RuntimeError {
    RuntimeError::InvalidInput(format!("{field} must be {range}, got {value}"))
}

/// Chooses the tokens of one sequence.
#[derive(Debug)]
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    /// How often each token was chosen so far.
    counts: HashMap<u32, u32>,
    /// Reused buffers of (token, weight) candidates.
    candidates: Vec<(u32, f32)>,
    boundary: Vec<(u32, f32)>,
}

impl Sampler {
    /// A sampler for one sequence, seeded from `params.seed` or from OS entropy.
    pub fn new(params: &SamplingParams) -> Sampler {
        let rng = match params.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::try_from_os_rng().unwrap_or_else(|_| StdRng::seed_from_u64(clock_seed())),
        };
        Sampler { params: params.clone(), rng, counts: HashMap::new(), candidates: Vec::new(), boundary: Vec::new() }
    }

    /// Adds the logit biases, applies penalties (`logit[t] -= count[t] * frequency +
    /// (count[t] > 0) * presence`, as OpenAI documents), then temperature, top-k, top-p (nucleus over the softmax), and
    /// samples; greedy when temperature is 0. Records the chosen token for later penalties.
    /// `logits` may be modified in place (it ends up holding softmax weights). NaN logits count
    /// as -inf; an empty row returns 0.
    pub fn sample(&mut self, logits: &mut [f32]) -> u32 {
        if logits.is_empty() {
            return 0;
        }
        for &(token, bias) in &self.params.logit_bias {
            if let Some(logit) = logits.get_mut(token as usize) {
                *logit += bias;
            }
        }
        self.apply_penalties(logits);
        let max = sanitize_max(logits);
        let greedy = self.params.temperature <= 0.0 || self.params.top_k == 1 || max == f32::NEG_INFINITY;
        let token = if greedy {
            // The first of the largest logits.
            logits.iter().position(|&l| l == max).unwrap_or(0) as u32
        } else {
            self.sample_softmax(logits, max)
        };
        *self.counts.entry(token).or_insert(0) += 1;
        token
    }

    /// Lowers the logits of tokens already chosen by the presence and frequency penalties.
    fn apply_penalties(&self, logits: &mut [f32]) {
        let (presence, frequency) = (self.params.presence_penalty, self.params.frequency_penalty);
        if presence == 0.0 && frequency == 0.0 {
            return;
        }
        for (&token, &count) in &self.counts {
            if let Some(logit) = logits.get_mut(token as usize) {
                *logit -= count as f32 * frequency + if count > 0 { presence } else { 0.0 };
            }
        }
    }

    /// Temperature, top-k and top-p, then one draw from what is left. `max` is the largest
    /// (finite) logit.
    fn sample_softmax(&mut self, logits: &mut [f32], max: f32) -> u32 {
        softmax_weights(logits, max, 1.0 / self.params.temperature);
        let (top_k, top_p) = (self.params.top_k, self.params.top_p);
        let u = self.rng.random::<f32>();
        let row = logits.iter().enumerate().map(|(i, &w)| (i as u32, w));
        if top_k > 0 && top_k < logits.len() {
            keep_top_k(row, top_k, &mut self.candidates);
            if top_p < 1.0 {
                let top = std::mem::take(&mut self.candidates);
                keep_nucleus(top.iter().copied(), top_p, &mut self.candidates, &mut self.boundary);
            }
            draw_from(&self.candidates, u)
        } else if top_p < 1.0 {
            keep_nucleus(row, top_p, &mut self.candidates, &mut self.boundary);
            draw_from(&self.candidates, u)
        } else {
            draw_from_row(logits, u)
        }
    }
}

/// Log-probabilities under the softmax of a raw logits row: the `chosen` token's, and the
/// `top` most likely tokens' (most likely first, ties by token id). NaN logits count as -inf.
pub fn log_probabilities(logits: &[f32], chosen: u32, top: usize) -> (f32, Vec<(u32, f32)>) {
    let clean = |l: f32| if l.is_nan() { f32::NEG_INFINITY } else { l.min(f32::MAX) };
    let max = logits.iter().map(|&l| clean(l)).fold(f32::NEG_INFINITY, f32::max);
    let mut lanes = [0.0f32; 8];
    for (i, &l) in logits.iter().enumerate() {
        lanes[i % 8] += exp_nonpositive(clean(l) - max);
    }
    let log_sum = max + lanes.iter().sum::<f32>().ln();
    // A short list kept sorted: `top` is at most a few dozen, the row tens of thousands.
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(top + 1);
    for (i, &l) in logits.iter().enumerate() {
        let l = clean(l);
        if top > 0 && (best.len() < top || l > best[best.len() - 1].1) {
            let at = best.partition_point(|&(_, b)| b >= l);
            best.insert(at, (i as u32, l));
            best.truncate(top);
        }
    }
    let chosen = logits.get(chosen as usize).map_or(f32::NEG_INFINITY, |&l| clean(l)) - log_sum;
    (chosen, best.into_iter().map(|(token, l)| (token, l - log_sum)).collect())
}

/// Turns NaN logits into -inf and +inf ones into the largest finite value (so that the
/// softmax stays defined), and returns the largest logit. Eight lanes, so that it vectorizes.
fn sanitize_max(logits: &mut [f32]) -> f32 {
    fn sanitize(logit: &mut f32, lane: &mut f32) {
        let value = if logit.is_nan() { f32::NEG_INFINITY } else { logit.min(f32::MAX) };
        *logit = value;
        *lane = if value > *lane { value } else { *lane };
    }
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = logits.chunks_exact_mut(8);
    for chunk in &mut chunks {
        for (logit, lane) in chunk.iter_mut().zip(lanes.iter_mut()) {
            sanitize(logit, lane);
        }
    }
    for (logit, lane) in chunks.into_remainder().iter_mut().zip(lanes.iter_mut()) {
        sanitize(logit, lane);
    }
    lanes.into_iter().fold(f32::NEG_INFINITY, f32::max)
}

/// Replaces each logit `l` by its unnormalized softmax weight `exp((l - max) / temperature)`,
/// in (0, 1] (0 for -inf).
fn softmax_weights(logits: &mut [f32], max: f32, inv_temperature: f32) {
    for logit in logits.iter_mut() {
        *logit = exp_nonpositive((*logit - max) * inv_temperature);
    }
}

/// `exp(x)` for `x <= 0` (0 below -87, where f32 runs out), accurate to a few 1e-7 relative,
/// and simple enough to be vectorized: x = n·ln2 + r, |r| <= ln2/2, exp(x) = 2^n · p(r).
#[inline]
fn exp_nonpositive(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let clamped = x.clamp(-87.0, 0.0);
    let shifted = clamped * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let exponent = (shifted.to_bits() as i32 - ROUND.to_bits() as i32 + 127) as u32;
    let scaled = p * f32::from_bits(exponent << 23);
    if x < -87.0 { 0.0 } else { scaled }
}

/// Weights are summed in blocks of this many, so that a draw can skip whole blocks.
const BLOCK: usize = 256;

/// The sum of `weights`, in eight lanes (vectorizable).
fn block_sum(weights: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = weights.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (lane, &w) in lanes.iter_mut().zip(chunk) {
            *lane += w;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Draws a token from a whole row of weights, `u` uniform in [0, 1).
fn draw_from_row(weights: &[f32], u: f32) -> u32 {
    let sums: Vec<f32> = weights.chunks(BLOCK).map(block_sum).collect();
    let mut target = u * sums.iter().sum::<f32>();
    for (block, (chunk, &sum)) in weights.chunks(BLOCK).zip(&sums).enumerate() {
        if target < sum {
            let offset = block * BLOCK;
            for (i, &w) in chunk.iter().enumerate() {
                target -= w;
                if target < 0.0 {
                    return (offset + i) as u32;
                }
            }
        }
        target -= sum;
    }
    // Rounding left a sliver past the end: the last token with any weight was drawn.
    weights.iter().rposition(|&w| w > 0.0).unwrap_or(0) as u32
}

/// Draws a token from (token, weight) candidates, `u` uniform in [0, 1).
fn draw_from(candidates: &[(u32, f32)], u: f32) -> u32 {
    let total: f32 = candidates.iter().map(|&(_, w)| w).sum();
    let mut target = u * total;
    for &(token, weight) in candidates {
        target -= weight;
        if target < 0.0 {
            return token;
        }
    }
    candidates.iter().rev().find(|&&(_, w)| w > 0.0).or(candidates.first()).map_or(0, |&(t, _)| t)
}

/// Orders candidates by weight, heaviest first, then by token id (deterministic on ties,
/// and the same token the greedy choice picks).
fn by_weight_desc(a: &(u32, f32), b: &(u32, f32)) -> Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// Coarse buckets of a weight in [0, 1]: its float exponent and three mantissa bits (an
/// eighth of an octave each). A larger weight never has a smaller bucket.
const COARSE_BUCKETS: usize = 1 << 10;

fn coarse_bucket(weight: f32) -> usize {
    ((weight.max(0.0).to_bits() >> 20) as usize).min(COARSE_BUCKETS - 1)
}

/// Fine buckets within one coarse bucket: the next twelve mantissa bits.
const FINE_BUCKETS: usize = 1 << 12;

fn fine_bucket(weight: f32) -> usize {
    ((weight.max(0.0).to_bits() >> 8) as usize) & (FINE_BUCKETS - 1)
}

/// Sums `value(weight)` per coarse bucket. Four interleaved partial histograms, so that
/// consecutive weights in the same bucket do not wait on each other's additions.
fn coarse_histogram<I>(weights: I, value: impl Fn(f32) -> f64) -> Vec<f64>
where
    I: Iterator<Item = (u32, f32)>,
{
    let mut partial = vec![[0.0f64; 4]; COARSE_BUCKETS];
    for (i, (_, weight)) in weights.enumerate() {
        partial[coarse_bucket(weight)][i & 3] += value(weight);
    }
    partial.iter().map(|p| p.iter().sum()).collect()
}

/// Walks a histogram from its heaviest bucket down and returns the first bucket where the
/// running total reaches `needed`, with the total of the buckets above it (bucket 0 and
/// everything but it when rounding never gets there).
fn find_cut(histogram: &[f64], needed: f64) -> (usize, f64) {
    let mut above = 0.0;
    for (bucket, &value) in histogram.iter().enumerate().rev() {
        if above + value >= needed {
            return (bucket, above);
        }
        above += value;
    }
    (0, above - histogram.first().copied().unwrap_or(0.0))
}

/// Puts into `top` the `k` heaviest of `weights` (ties broken by token id), unordered. A
/// count histogram of the coarse buckets finds which candidates can be among them; only those
/// go through a partial selection.
fn keep_top_k<I>(weights: I, k: usize, top: &mut Vec<(u32, f32)>)
where
    I: Iterator<Item = (u32, f32)> + Clone,
{
    let counts = coarse_histogram(weights.clone(), |_| 1.0);
    let (cut, _) = find_cut(&counts, k as f64);
    top.clear();
    top.extend(weights.filter(|&(_, weight)| coarse_bucket(weight) >= cut));
    if top.len() > k {
        top.select_nth_unstable_by(k - 1, by_weight_desc);
        top.truncate(k);
    }
}

/// Puts into `nucleus` the smallest set of the heaviest `weights` whose share of their total
/// reaches `top_p` (ties broken by token id), unordered. No full sort: a mass histogram over
/// coarse buckets, then over the fine buckets of the coarse bucket where the running mass
/// (heaviest first) crosses `top_p`, leaves only near-equal weights to sort (in `boundary`).
fn keep_nucleus<I>(weights: I, top_p: f32, nucleus: &mut Vec<(u32, f32)>, boundary: &mut Vec<(u32, f32)>)
where
    I: Iterator<Item = (u32, f32)> + Clone,
{
    let coarse = coarse_histogram(weights.clone(), f64::from);
    let needed = f64::from(top_p) * coarse.iter().sum::<f64>();
    let (cut, mut above) = find_cut(&coarse, needed);
    nucleus.clear();
    boundary.clear();
    for candidate in weights {
        match coarse_bucket(candidate.1).cmp(&cut) {
            Ordering::Greater => nucleus.push(candidate),
            Ordering::Equal => boundary.push(candidate),
            Ordering::Less => {}
        }
    }
    let mut fine = vec![0.0f64; FINE_BUCKETS];
    for &(_, weight) in boundary.iter() {
        fine[fine_bucket(weight)] += f64::from(weight);
    }
    let (fine_cut, fine_above) = find_cut(&fine, needed - above);
    above += fine_above;
    boundary.retain(|&candidate| match fine_bucket(candidate.1).cmp(&fine_cut) {
        Ordering::Greater => {
            nucleus.push(candidate);
            false
        }
        Ordering::Equal => true,
        Ordering::Less => false,
    });
    boundary.sort_unstable_by(by_weight_desc);
    for &candidate in boundary.iter() {
        nucleus.push(candidate);
        above += f64::from(candidate.1);
        if above >= needed {
            break;
        }
    }
}

/// A seed from the clock, for the (unlikely) case the OS has no entropy to give.
fn clock_seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0x5eed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32) -> SamplingParams {
        SamplingParams { temperature, ..SamplingParams::default() }
    }

    /// A deterministic pseudo-random logits row of `n` values in about -10..10.
    fn row(n: usize, salt: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(salt);
        (0..n).map(|_| rng.random_range(-10.0f32..10.0)).collect()
    }

    fn draw(sampler: &mut Sampler, logits: &[f32], n: usize) -> Vec<u32> {
        (0..n).map(|_| sampler.sample(&mut logits.to_vec())).collect()
    }

    #[test]
    fn defaults_and_validation() {
        let defaults = SamplingParams::default();
        assert_eq!((defaults.temperature, defaults.top_p, defaults.top_k), (1.0, 1.0, 0));
        assert!(defaults.validate().is_ok());
        let cases = [
            (SamplingParams { temperature: 2.5, ..params(1.0) }, "temperature"),
            (SamplingParams { temperature: -0.1, ..params(1.0) }, "temperature"),
            (SamplingParams { temperature: f32::NAN, ..params(1.0) }, "temperature"),
            (SamplingParams { top_p: 0.0, ..params(1.0) }, "top_p"),
            (SamplingParams { top_p: 1.5, ..params(1.0) }, "top_p"),
            (SamplingParams { presence_penalty: 2.1, ..params(1.0) }, "presence_penalty"),
            (SamplingParams { frequency_penalty: -3.0, ..params(1.0) }, "frequency_penalty"),
            (SamplingParams { logit_bias: vec![(3, 101.0)], ..params(1.0) }, "logit_bias"),
            (SamplingParams { logit_bias: vec![(3, f32::NAN)], ..params(1.0) }, "logit_bias"),
        ];
        for (p, field) in cases {
            match p.validate() {
                Err(RuntimeError::InvalidInput(message)) => assert!(message.starts_with(field), "{message}"),
                other => panic!("{field}: expected InvalidInput, got {other:?}"),
            }
        }
        assert!(
            SamplingParams { temperature: 0.0, top_p: 1.0, presence_penalty: -2.0, ..params(1.0) }.validate().is_ok()
        );
    }

    #[test]
    fn logit_bias_bans_and_favours_tokens() {
        let logits = [1.0, 3.0, 2.0];
        let greedy = |bias: Vec<(u32, f32)>| {
            Sampler::new(&SamplingParams { logit_bias: bias, ..params(0.0) }).sample(&mut logits.to_vec())
        };
        assert_eq!(greedy(vec![]), 1);
        assert_eq!(greedy(vec![(1, -100.0)]), 2, "banned");
        assert_eq!(greedy(vec![(0, 5.0)]), 0, "favoured");
        assert_eq!(greedy(vec![(9, 100.0)]), 1, "ids past the row change nothing");
    }

    #[test]
    fn log_probabilities_of_a_row() {
        let logits = row(1000, 3);
        let (chosen, top) = log_probabilities(&logits, 17, 5);
        let exact_sum: f64 = logits.iter().map(|&l| f64::from(l).exp()).sum();
        let exact = |t: usize| f64::from(logits[t]) - exact_sum.ln();
        assert!((f64::from(chosen) - exact(17)).abs() < 1e-4, "{chosen} vs {}", exact(17));
        assert_eq!(top.len(), 5);
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        for (&(token, logprob), &expected) in top.iter().zip(&order) {
            assert_eq!(token as usize, expected);
            assert!((f64::from(logprob) - exact(expected)).abs() < 1e-4);
        }
        // Ties go to the lower id; NaN counts as -inf; no alternatives asked, none given.
        let (chosen, top) = log_probabilities(&[1.0, f32::NAN, 1.0, 0.0], 1, 3);
        assert_eq!(chosen, f32::NEG_INFINITY);
        assert_eq!(top.iter().map(|&(t, _)| t).collect::<Vec<_>>(), vec![0, 2, 3]);
        assert!((top[0].1 - (1.0f32 / (2.0 + (-1.0f32).exp())).ln()).abs() < 1e-6);
        assert!(log_probabilities(&logits, 0, 0).1.is_empty());
    }

    #[test]
    fn fast_exp_is_accurate() {
        let mut worst = 0.0f64;
        for i in 0..=200_000 {
            let x = -90.0 * i as f32 / 200_000.0;
            let (fast, exact) = (f64::from(exp_nonpositive(x)), f64::from(x).exp());
            if x >= -87.0 {
                worst = worst.max((fast - exact).abs() / exact);
            } else {
                assert_eq!(fast, 0.0);
            }
        }
        assert!(worst < 1e-6, "worst relative error {worst}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
    }

    #[test]
    fn greedy_is_argmax() {
        let logits = row(50_000, 1);
        let best = logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as u32;
        let mut sampler = Sampler::new(&params(0.0));
        assert_eq!(draw(&mut sampler, &logits, 3), vec![best; 3]);
        assert_eq!(Sampler::new(&params(0.0)).sample(&mut [1.0, 3.0, 3.0, 2.0]), 1, "first of equal maxima");
    }

    #[test]
    fn same_seed_same_tokens_different_seeds_differ() {
        let logits = row(1_000, 2);
        let seeded = |seed| SamplingParams { temperature: 1.5, seed: Some(seed), ..SamplingParams::default() };
        let a = draw(&mut Sampler::new(&seeded(7)), &logits, 50);
        let b = draw(&mut Sampler::new(&seeded(7)), &logits, 50);
        let c = draw(&mut Sampler::new(&seeded(8)), &logits, 50);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let unseeded = SamplingParams { temperature: 1.5, ..SamplingParams::default() };
        assert_ne!(draw(&mut Sampler::new(&unseeded), &logits, 50), draw(&mut Sampler::new(&unseeded), &logits, 50));
    }

    #[test]
    fn top_k_one_and_tiny_top_p_are_greedy() {
        let logits = row(50_000, 3);
        let best = Sampler::new(&params(0.0)).sample(&mut logits.clone());
        for temperature in [0.5, 1.0, 2.0] {
            let top_k = SamplingParams { top_k: 1, seed: Some(1), ..params(temperature) };
            assert_eq!(draw(&mut Sampler::new(&top_k), &logits, 20), vec![best; 20]);
            let top_p = SamplingParams { top_p: 1e-6, seed: Some(1), ..params(temperature) };
            assert_eq!(draw(&mut Sampler::new(&top_p), &logits, 20), vec![best; 20]);
        }
    }

    #[test]
    fn top_k_and_top_p_keep_only_the_best_tokens() {
        let logits = row(50_000, 4);
        let mut order: Vec<u32> = (0..logits.len() as u32).collect();
        order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
        let top_k = SamplingParams { top_k: 5, temperature: 2.0, seed: Some(3), ..SamplingParams::default() };
        let chosen = draw(&mut Sampler::new(&top_k), &logits, 500);
        assert!(chosen.iter().all(|t| order[..5].contains(t)));
        // Logits 0, -1, -2, -10…: softmax ≈ 0.665, 0.245, 0.090, tiny.
        let mut small = vec![-10.0f32; 100];
        small[..3].copy_from_slice(&[0.0, -1.0, -2.0]);
        let top_p = SamplingParams { top_p: 0.8, seed: Some(4), ..SamplingParams::default() };
        let chosen = draw(&mut Sampler::new(&top_p), &small, 2_000);
        assert!(chosen.iter().all(|&t| t < 2), "0.665 + 0.245 covers 0.8");
        assert!(chosen.contains(&0) && chosen.contains(&1));
    }

    /// The nucleus and the top k by a full sort, for comparison.
    fn sorted_prefix(weights: &[f32], top_p: Option<f32>, k: Option<usize>) -> Vec<u32> {
        let mut all: Vec<(u32, f32)> = weights.iter().enumerate().map(|(i, &w)| (i as u32, w)).collect();
        all.sort_by(by_weight_desc);
        let mut keep = k.unwrap_or(all.len()).min(all.len());
        if let Some(p) = top_p {
            let needed = f64::from(p) * all.iter().map(|&(_, w)| f64::from(w)).sum::<f64>();
            let mut mass = 0.0;
            keep = all
                .iter()
                .position(|&(_, w)| {
                    mass += f64::from(w);
                    mass >= needed
                })
                .map_or(all.len(), |i| i + 1);
        }
        let mut tokens: Vec<u32> = all[..keep].iter().map(|&(t, _)| t).collect();
        tokens.sort_unstable();
        tokens
    }

    fn tokens_of(candidates: &[(u32, f32)]) -> Vec<u32> {
        let mut tokens: Vec<u32> = candidates.iter().map(|&(t, _)| t).collect();
        tokens.sort_unstable();
        tokens
    }

    #[test]
    fn nucleus_and_top_k_match_a_full_sort() {
        let mut rng = StdRng::seed_from_u64(9);
        for case in 0..60 {
            let n = [10, 1_000, 20_000][case % 3];
            let spread = [0.01f32, 1.0, 8.0, 30.0][case % 4];
            let mut logits: Vec<f32> = (0..n).map(|_| rng.random_range(-spread..spread)).collect();
            if case % 5 == 0 {
                // Many exact ties.
                logits.iter_mut().for_each(|l| *l = (*l * 2.0).round());
            }
            let max = sanitize_max(&mut logits);
            softmax_weights(&mut logits, max, 1.0);
            let row = logits.iter().enumerate().map(|(i, &w)| (i as u32, w));
            let (mut nucleus, mut boundary) = (Vec::new(), Vec::new());
            for top_p in [1e-6f32, 0.1, 0.5, 0.9, 0.999] {
                keep_nucleus(row.clone(), top_p, &mut nucleus, &mut boundary);
                assert_eq!(tokens_of(&nucleus), sorted_prefix(&logits, Some(top_p), None), "case {case} p {top_p}");
            }
            for k in [1, 2, 7, 40, n - 1] {
                keep_top_k(row.clone(), k, &mut nucleus);
                assert_eq!(tokens_of(&nucleus), sorted_prefix(&logits, None, Some(k)), "case {case} k {k}");
            }
        }
    }

    #[test]
    fn penalties_change_the_choice() {
        let logits = [2.0f32, 1.5, 0.0];
        let presence = SamplingParams { presence_penalty: 1.0, ..params(0.0) };
        // 0 (2.0); then 1.0 < 1.5: 1; then 1.0 > 0.5: 0; presence counts once: 0 again.
        assert_eq!(draw(&mut Sampler::new(&presence), &logits, 4), vec![0, 1, 0, 0]);
        let frequency = SamplingParams { frequency_penalty: 0.4, ..params(0.0) };
        // 0 (2.0); 1.6 > 1.5: 0; 1.2 < 1.5: 1; 1.1 < 1.2: 0.
        assert_eq!(draw(&mut Sampler::new(&frequency), &logits, 4), vec![0, 0, 1, 0]);
        let mut penalized = logits;
        let mut sampler =
            Sampler::new(&SamplingParams { presence_penalty: 0.5, frequency_penalty: 0.25, ..params(0.0) });
        sampler.sample(&mut penalized.clone());
        sampler.sample(&mut penalized.clone());
        sampler.sample(&mut penalized);
        // Tokens 0 and 1 were chosen once each.
        let expected = [2.0 - 0.25 - 0.5, 1.5 - 0.25 - 0.5, 0.0];
        assert!(penalized.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-6), "{penalized:?}");
    }

    #[test]
    fn frequencies_follow_the_softmax() {
        let logits = [1.0f32, 2.0, 3.0];
        let z: f32 = logits.iter().map(|l| l.exp()).sum();
        let expected: Vec<f32> = logits.iter().map(|l| l.exp() / z).collect();
        let mut sampler = Sampler::new(&SamplingParams { seed: Some(42), ..SamplingParams::default() });
        let mut counts = [0usize; 3];
        for _ in 0..10_000 {
            counts[sampler.sample(&mut logits.to_vec()) as usize] += 1;
        }
        for (count, p) in counts.iter().zip(&expected) {
            assert!((*count as f32 / 10_000.0 - p).abs() < 0.015, "{counts:?} vs {expected:?}");
        }
        // Temperature 0.5 sharpens: softmax of 2, 4, 6.
        let mut sampler =
            Sampler::new(&SamplingParams { temperature: 0.5, seed: Some(42), ..SamplingParams::default() });
        let top = (0..10_000).filter(|_| sampler.sample(&mut logits.to_vec()) == 2).count() as f32 / 10_000.0;
        let expected_top = 6f32.exp() / (2f32.exp() + 4f32.exp() + 6f32.exp());
        assert!((top - expected_top).abs() < 0.015, "{top} vs {expected_top}");
    }

    #[test]
    fn degenerate_rows_do_not_panic() {
        let mut sampler = Sampler::new(&SamplingParams::default());
        assert_eq!(sampler.sample(&mut []), 0);
        assert_eq!(sampler.sample(&mut [f32::NAN, 1.0, f32::NAN]), 1);
        assert_eq!(sampler.sample(&mut [f32::NAN, f32::NAN]), 0);
        assert_eq!(sampler.sample(&mut [f32::NEG_INFINITY; 4]), 0);
        assert_eq!(sampler.sample(&mut [0.0, f32::INFINITY, 1.0]), 1);
        let mut penalized =
            Sampler::new(&SamplingParams { presence_penalty: 2.0, top_p: 0.5, top_k: 2, ..params(1.0) });
        for _ in 0..10 {
            assert!(penalized.sample(&mut [f32::NAN, 1.0, 0.5, f32::NEG_INFINITY]) < 3);
        }
    }

    #[test]
    fn fast_enough_for_a_large_vocabulary() {
        let logits = row(151_936, 5);
        let configs = [
            SamplingParams { seed: Some(1), ..SamplingParams::default() },
            SamplingParams { top_p: 0.9, seed: Some(1), ..SamplingParams::default() },
            SamplingParams { top_k: 40, top_p: 0.95, temperature: 0.7, seed: Some(1), ..SamplingParams::default() },
            SamplingParams { presence_penalty: 0.5, frequency_penalty: 0.5, ..params(0.0) },
        ];
        for config in configs {
            let mut sampler = Sampler::new(&config);
            let mut rows: Vec<Vec<f32>> = (0..20).map(|_| logits.clone()).collect();
            let started = std::time::Instant::now();
            for row in &mut rows {
                sampler.sample(row);
            }
            let per_token = started.elapsed() / 20;
            eprintln!("{config:?}: {per_token:?} per token over 151936 logits");
            // Release builds take well under 1 ms (measured 0.05–0.6 ms on a busy 2-core
            // machine); unoptimized test builds are some 20x slower. Generous for shared CI.
            let bound = if cfg!(debug_assertions) { 250 } else { 5 };
            assert!(per_token < std::time::Duration::from_millis(bound), "{per_token:?}");
        }
    }
}
