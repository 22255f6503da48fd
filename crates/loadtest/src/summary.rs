//! Latency percentiles from an HDR histogram.
//!
//! Averages hide the slow requests users notice; an HDR histogram keeps every latency to three
//! significant digits in constant memory, so the tail (p99, p99.9, max) is exact enough to
//! compare runs and tools. Pure: the engine records into histograms, this turns one into
//! numbers.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The largest latency a histogram tracks (one hour, in microseconds); larger values are
/// recorded as this.
pub const MAX_TRACKED_US: u64 = 3_600_000_000;

/// A histogram of latencies in microseconds, 1 µs to one hour, three significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKED_US, 3).expect("static histogram bounds are valid")
}

/// The latency distribution of a set of requests, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// How many latencies were recorded (responses received).
    pub count: u64,
    pub min_us: u64,
    pub mean_us: f64,
    pub stdev_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

/// A percentile a latency threshold can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Percentile {
    P50,
    P90,
    P95,
    P99,
    P999,
    Max,
}

impl Percentile {
    /// `p50`, `p99.9`, `max`: how reports name it.
    pub fn label(self) -> &'static str {
        match self {
            Percentile::P50 => "p50",
            Percentile::P90 => "p90",
            Percentile::P95 => "p95",
            Percentile::P99 => "p99",
            Percentile::P999 => "p99.9",
            Percentile::Max => "max",
        }
    }
}

impl LatencySummary {
    /// The summary of `h` (all zero when it is empty).
    pub fn of(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            min_us: h.min(),
            mean_us: h.mean(),
            stdev_us: h.stdev(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p95_us: h.value_at_quantile(0.95),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }

    /// The value of one percentile, in microseconds.
    pub fn get(&self, p: Percentile) -> u64 {
        match p {
            Percentile::P50 => self.p50_us,
            Percentile::P90 => self.p90_us,
            Percentile::P95 => self.p95_us,
            Percentile::P99 => self.p99_us,
            Percentile::P999 => self.p999_us,
            Percentile::Max => self.max_us,
        }
    }
}

/// `1.234ms`, `87µs`, `2.50s`: a latency for people.
pub fn format_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        format!("{:.2}ms", us as f64 / 1e3)
    } else {
        format!("{:.2}s", us as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_one_to_a_thousand_microseconds() {
        let mut h = new_histogram();
        for v in 1..=1000 {
            h.record(v).unwrap();
        }
        let s = LatencySummary::of(&h);
        assert_eq!(s.count, 1000);
        assert_eq!(s.min_us, 1);
        assert_eq!(s.p50_us, 500);
        assert_eq!(s.p90_us, 900);
        assert_eq!(s.p95_us, 950);
        assert_eq!(s.p99_us, 990);
        assert_eq!(s.p999_us, 999);
        assert_eq!(s.max_us, 1000);
        assert!((s.mean_us - 500.5).abs() < 0.01, "{}", s.mean_us);
    }

    #[test]
    fn one_slow_request_in_a_thousand_shows_in_p999_and_max_only() {
        let mut h = new_histogram();
        h.record_n(100, 998).unwrap();
        h.record(250_000).unwrap();
        h.record(2_000_000).unwrap();
        let s = LatencySummary::of(&h);
        assert_eq!((s.p50_us, s.p99_us), (100, 100));
        // Three significant digits: 250 ms is kept to within 0.1 %.
        assert!((249_750..=250_250).contains(&s.p999_us), "{}", s.p999_us);
        assert!((1_998_000..=2_002_000).contains(&s.max_us), "{}", s.max_us);
        assert_eq!(s.get(Percentile::P50), 100);
    }

    #[test]
    fn an_empty_histogram_summarises_to_zeros() {
        assert_eq!(
            LatencySummary::of(&new_histogram()),
            LatencySummary::default()
        );
    }

    #[test]
    fn latencies_are_formatted_in_the_unit_that_fits() {
        assert_eq!(format_us(87), "87µs");
        assert_eq!(format_us(1_234), "1.23ms");
        assert_eq!(format_us(2_500_000), "2.50s");
    }
}
