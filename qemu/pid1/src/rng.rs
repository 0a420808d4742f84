// SPDX-License-Identifier: GPL-2.0
//! The two seeded generators of the guest programs. Their sequences are part of what a run
//! records (the fuzzer prints its seed, the benchmark's results name theirs), so each keeps
//! its algorithm: a seed from an old result must replay the same inputs.
//!
//! * [`XorShift64Star`]: the test runner's (`lags-init`, `util::Rng`): hostile inputs,
//!   random scenarios; integer draws.
//! * [`SplitMix64`]: the benchmark's (`lags-bench`, `lags_bench::Rng`): arrivals, service
//!   times and popularity; floating-point draws.

/// xorshift64* seeded through one splitmix64 step, so that nearby seeds (n and n + 1
/// differ only in the lowest bit) give unrelated sequences; the state is never 0.
#[derive(Clone, Debug)]
pub struct XorShift64Star(u64);

impl XorShift64Star {
    pub fn new(seed: u64) -> XorShift64Star {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        XorShift64Star((z ^ (z >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform-ish in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// SplitMix64: small, fast, and good enough for workload generation.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed ^ 0x853c_49e6_748f_ea9b)
    }

    /// The generator in a given state, for a user that keys its seeds its own way (the
    /// benchmark's trace model).
    pub fn from_state(state: u64) -> SplitMix64 {
        SplitMix64(state)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in the open interval (0, 1).
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Exponential with the given rate.
    pub fn exp(&mut self, rate: f64) -> f64 {
        -self.uniform().ln() / rate
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Lognormal with mean 1 and shape sigma.
    pub fn lognormal_mean1(&mut self, sigma: f64) -> f64 {
        (sigma * self.normal() - sigma * sigma / 2.0).exp()
    }

    /// Index drawn from a cumulative distribution (last entry 1.0).
    pub fn pick(&mut self, cdf: &[f64]) -> usize {
        let u = self.uniform();
        cdf.partition_point(|&c| c < u).min(cdf.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect the sequences that recorded seeds replay (computed independently of this code):
    // seed 42 gives these first three numbers in each generator.
    #[test]
    fn sequences_are_pinned() {
        let mut x = XorShift64Star::new(42);
        let got: Vec<u64> = (0..3).map(|_| x.next_u64()).collect();
        assert_eq!(
            got,
            [
                0x31b0_ece7_c4f6_97a2,
                0x9008_a3b1_cb68_6f03,
                0x7c71_73ab_d97b_e16f
            ]
        );
        let mut s = SplitMix64::new(42);
        let got: Vec<u64> = (0..3).map(|_| s.next_u64()).collect();
        assert_eq!(
            got,
            [
                0x8af8_3d76_e8c9_bbac,
                0xa88e_81ee_4b24_5ee1,
                0x0626_fc7d_19db_5de6
            ]
        );
    }

    // Expect the integer draws to stay in range and nearby seeds to differ.
    #[test]
    fn integer_draws() {
        let mut x = XorShift64Star::new(7);
        for _ in 0..1000 {
            assert!(x.below(10) < 10);
            let r = x.range(5, 9);
            assert!((5..=9).contains(&r));
        }
        assert_eq!(x.below(0), 0);
        assert_ne!(
            XorShift64Star::new(1).next_u64(),
            XorShift64Star::new(2).next_u64()
        );
        let items = [1, 2, 3];
        assert!(items.contains(x.pick(&items)));
    }

    // Expect the floating-point draws in their ranges and a CDF pick in bounds.
    #[test]
    fn float_draws() {
        let mut s = SplitMix64::new(3);
        for _ in 0..1000 {
            let u = s.uniform();
            assert!(u > 0.0 && u < 1.0);
            assert!(s.exp(2.0) > 0.0);
            assert!(s.lognormal_mean1(1.0) > 0.0);
        }
        assert!(s.pick(&[0.5, 1.0]) < 2);
    }
}
