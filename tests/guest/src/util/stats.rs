// SPDX-License-Identifier: GPL-2.0
//! Statistics and parsing of kernel text files.

use super::*;
use lags_pid1::stats::percentile_nearest_rank;

/// p50/p90/p99/max of a set of latency samples (ns).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub n: usize,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

impl Summary {
    pub fn of(samples: &[u64]) -> Summary {
        let mut s = samples.to_vec();
        s.sort_unstable();
        Summary {
            n: s.len(),
            p50: percentile_nearest_rank(&s, 50.0),
            p90: percentile_nearest_rank(&s, 90.0),
            p99: percentile_nearest_rank(&s, 99.0),
            max: s.last().copied().unwrap_or(0),
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "n={} p50={} p90={} p99={} max={}",
            self.n,
            us(self.p50),
            us(self.p90),
            us(self.p99),
            us(self.max)
        )
    }
}

/// The value of `key` in a flat keyed file such as `cpu.stat` (`key value` per line).
pub fn keyed_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(key)).then(|| it.next().unwrap_or(""))
    })
}

/// The integer value of `key` in a flat keyed file.
pub fn keyed_u64(text: &str, key: &str) -> Option<u64> {
    keyed_value(text, key)?.parse().ok()
}

/// `u64`s as little-endian bytes (worker results over a pipe).
pub fn encode_u64s(values: &[u64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The inverse of [`encode_u64s`]; a trailing partial value is dropped.
pub fn decode_u64s(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("chunk of 8")))
        .collect()
}

/// `key=value` lines (worker reports) as pairs.
pub fn parse_kv_lines(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Looks up `key` in `key=value` pairs.
pub fn kv<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}
