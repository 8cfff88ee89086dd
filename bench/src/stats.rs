//! Summary statistics of latency samples: nearest-rank percentiles, mean,
//! and the empirical CDF the plots draw. Pure functions, no I/O.

use serde::Serialize;

/// The nearest-rank `p`-th percentile of `sorted` (ascending): the smallest
/// sample such that at least `p` % of the samples are at or below it, i.e.
/// `sorted[ceil(p / 100 * n) - 1]`, and the minimum for `p == 0`. `None` for
/// no samples or a `p` outside 0..=100.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() || !(0.0..=100.0).contains(&p) {
        return None;
    }
    debug_assert!(sorted.windows(2).all(|w| w[0] <= w[1]), "not sorted");
    let n = sorted.len();
    // Computed in integers where possible so that e.g. p = 90, n = 10 gives
    // rank 9 exactly rather than 9.000000000000002 rounded up to 10.
    let scaled = p * n as f64;
    let rank = if scaled.fract() == 0.0 && (scaled as u128) % 100 == 0 {
        (scaled as u128 / 100) as usize
    } else {
        (scaled / 100.0).ceil() as usize
    };
    Some(sorted[rank.clamp(1, n) - 1])
}

/// What the table and the JSON file report about one set of samples, in ns.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub n: usize,
    pub min_ns: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
    pub mean_ns: f64,
}

impl Summary {
    /// `None` for no samples.
    pub fn of(samples: &[u64]) -> Option<Summary> {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let at = |p| percentile(&sorted, p);
        let sum: u128 = sorted.iter().map(|&s| u128::from(s)).sum();
        Some(Summary {
            n: sorted.len(),
            min_ns: *sorted.first()?,
            p50_ns: at(50.0)?,
            p90_ns: at(90.0)?,
            p99_ns: at(99.0)?,
            max_ns: *sorted.last()?,
            mean_ns: sum as f64 / sorted.len() as f64,
        })
    }
}

/// The empirical CDF of `samples` as (value, fraction of samples at or below
/// it) steps, one per sample in ascending order, ending at 1.
pub fn cdf(samples: &[u64]) -> Vec<(u64, f64)> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let n = sorted.len() as f64;
    sorted
        .iter()
        .enumerate()
        .map(|(i, &value)| (value, (i + 1) as f64 / n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_has_no_percentiles_and_no_summary() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(Summary::of(&[]), None);
        assert!(cdf(&[]).is_empty());
    }

    #[test]
    fn out_of_range_p_is_refused() {
        assert_eq!(percentile(&[1, 2], -1.0), None);
        assert_eq!(percentile(&[1, 2], 100.5), None);
        assert_eq!(percentile(&[1, 2], f64::NAN), None);
    }

    #[test]
    fn single_sample_is_every_percentile() {
        for p in [0.0, 1.0, 50.0, 99.0, 100.0] {
            assert_eq!(percentile(&[7], p), Some(7));
        }
    }

    #[test]
    fn nearest_rank_on_ten_samples() {
        let s: Vec<u64> = (1..=10).map(|i| i * 10).collect();
        assert_eq!(percentile(&s, 0.0), Some(10));
        assert_eq!(percentile(&s, 10.0), Some(10));
        assert_eq!(percentile(&s, 10.1), Some(20));
        assert_eq!(percentile(&s, 50.0), Some(50));
        assert_eq!(percentile(&s, 90.0), Some(90));
        assert_eq!(percentile(&s, 99.0), Some(100));
        assert_eq!(percentile(&s, 100.0), Some(100));
    }

    #[test]
    fn nearest_rank_is_always_a_sample_and_exact_at_boundaries() {
        // The classic example: 15, 20, 35, 40, 50.
        let s = [15, 20, 35, 40, 50];
        assert_eq!(percentile(&s, 5.0), Some(15));
        assert_eq!(percentile(&s, 30.0), Some(20));
        assert_eq!(percentile(&s, 40.0), Some(20));
        assert_eq!(percentile(&s, 50.0), Some(35));
        assert_eq!(percentile(&s, 100.0), Some(50));
        // 300 samples: p99 is the 297th, p90 the 270th, p50 the 150th.
        let s: Vec<u64> = (1..=300).collect();
        assert_eq!(percentile(&s, 50.0), Some(150));
        assert_eq!(percentile(&s, 90.0), Some(270));
        assert_eq!(percentile(&s, 99.0), Some(297));
        // 100 samples: p99 is the 99th, not the maximum.
        let s: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&s, 99.0), Some(99));
    }

    #[test]
    fn summary_sorts_and_averages() {
        let summary = Summary::of(&[5, 1, 4, 2, 3]).unwrap();
        assert_eq!(
            summary,
            Summary {
                n: 5,
                min_ns: 1,
                p50_ns: 3,
                p90_ns: 5,
                p99_ns: 5,
                max_ns: 5,
                mean_ns: 3.0,
            }
        );
    }

    #[test]
    fn summary_mean_does_not_overflow() {
        let summary = Summary::of(&[u64::MAX, u64::MAX]).unwrap();
        assert_eq!(summary.mean_ns, u64::MAX as f64);
    }

    #[test]
    fn cdf_steps_up_to_one() {
        assert_eq!(
            cdf(&[30, 10, 20, 20]),
            vec![(10, 0.25), (20, 0.5), (20, 0.75), (30, 1.0)]
        );
    }
}
