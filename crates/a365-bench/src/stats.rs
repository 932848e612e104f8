//! Latency percentiles from every sample (no histogram buckets: a few
//! million samples sort in well under a second).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Percentiles in microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    pub count: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl Summary {
    /// Sorts `samples` in place.
    pub fn of(samples: &mut [Duration]) -> Summary {
        samples.sort_unstable();
        let micros = |d: Duration| d.as_nanos() as f64 / 1e3;
        let at = |q: f64| micros(percentile(samples, q));
        Summary {
            count: samples.len(),
            p50_us: at(0.50),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_us: samples.last().map_or(0.0, |d| micros(*d)),
        }
    }
}

/// Nearest rank: the smallest sample with at least `q` of all at or below it.
fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Less a hair, so that 0.999 × 1000 (999.0000000000001) is rank 999.
    let rank = (q * sorted.len() as f64 - 1e-9).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut samples: Vec<Duration> = (1..=1000).rev().map(Duration::from_micros).collect();
        let s = Summary::of(&mut samples);
        assert_eq!(s.count, 1000);
        assert_eq!(s.p50_us, 500.0);
        assert_eq!(s.p99_us, 990.0);
        assert_eq!(s.p999_us, 999.0);
        assert_eq!(s.max_us, 1000.0);
        assert_eq!(Summary::of(&mut []).p99_us, 0.0);
        assert_eq!(Summary::of(&mut [Duration::from_micros(7)]).p999_us, 7.0);
    }
}
