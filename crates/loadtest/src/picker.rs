//! Which endpoint the n-th request goes to, in proportion to the endpoints' weights.
//!
//! Deterministic rather than random: request `seq` always maps to the same endpoint, the
//! endpoints are interleaved (nginx's smooth weighted round robin, so weights 3:1 give
//! `A A B A`, not `A A A B`), and every window of `sum(weights)` consecutive requests holds
//! exactly `weight` requests of each endpoint. So a run of `-n` requests hits each endpoint an
//! exact, predictable number of times, and no random generator sits on the hot path.

/// The most weight all endpoints of a scenario may have together (after dividing by their
/// greatest common divisor): bounds the schedule's memory.
pub const MAX_TOTAL_WEIGHT: u64 = 100_000;

/// A precomputed cycle of endpoint indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    cycle: Vec<u32>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PickerError {
    #[error("no endpoint to send requests to")]
    Empty,
    #[error("endpoint {index} has weight 0: every endpoint needs a weight of 1 or more (remove it to stop sending it requests)")]
    ZeroWeight { index: usize },
    #[error("the endpoints' weights add up to {total} (after reducing by their common divisor); keep the total at or below {MAX_TOTAL_WEIGHT}")]
    TooHeavy { total: u64 },
}

impl Schedule {
    /// The schedule for `weights`, one per endpoint.
    pub fn new(weights: &[u32]) -> Result<Schedule, PickerError> {
        if weights.is_empty() {
            return Err(PickerError::Empty);
        }
        if let Some(index) = weights.iter().position(|w| *w == 0) {
            return Err(PickerError::ZeroWeight { index });
        }
        let divisor = weights.iter().copied().fold(0, gcd);
        let reduced: Vec<i64> = weights.iter().map(|w| i64::from(w / divisor)).collect();
        let total: i64 = reduced.iter().sum();
        if total as u64 > MAX_TOTAL_WEIGHT {
            return Err(PickerError::TooHeavy {
                total: total as u64,
            });
        }
        // Smooth weighted round robin: each step every endpoint gains its weight, the one
        // with the most is picked and pays back the total.
        let mut current = vec![0i64; reduced.len()];
        let mut cycle = Vec::with_capacity(total as usize);
        for _ in 0..total {
            let mut best = 0;
            for (i, w) in reduced.iter().enumerate() {
                current[i] += w;
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total;
            cycle.push(best as u32);
        }
        Ok(Schedule { cycle })
    }

    /// The endpoint index of request number `seq` (counting from 0).
    pub fn pick(&self, seq: u64) -> usize {
        self.cycle[(seq % self.cycle.len() as u64) as usize] as usize
    }

    /// Requests per full cycle (the sum of the reduced weights).
    pub fn period(&self) -> u64 {
        self.cycle.len() as u64
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picks(weights: &[u32], n: u64) -> Vec<usize> {
        let s = Schedule::new(weights).unwrap();
        (0..n).map(|i| s.pick(i)).collect()
    }

    #[test]
    fn weights_three_to_one_interleave() {
        assert_eq!(picks(&[3, 1], 8), [0, 0, 1, 0, 0, 0, 1, 0]);
    }

    #[test]
    fn a_common_divisor_does_not_lengthen_the_cycle() {
        assert_eq!(Schedule::new(&[300, 100]).unwrap().period(), 4);
        assert_eq!(picks(&[300, 100], 4), picks(&[3, 1], 4));
    }

    #[test]
    fn every_full_cycle_holds_each_endpoint_weight_times() {
        let weights = [5, 2, 7, 1];
        let counts = picks(&weights, 15 * 4)
            .into_iter()
            .fold([0; 4], |mut c, i| {
                c[i] += 1;
                c
            });
        assert_eq!(counts, [20, 8, 28, 4]);
    }

    #[test]
    fn a_single_endpoint_always_wins() {
        assert_eq!(picks(&[7], 3), [0, 0, 0]);
    }

    #[test]
    fn zero_weights_empty_lists_and_huge_totals_are_refused() {
        assert_eq!(Schedule::new(&[]), Err(PickerError::Empty));
        assert_eq!(
            Schedule::new(&[1, 0]),
            Err(PickerError::ZeroWeight { index: 1 })
        );
        assert_eq!(
            Schedule::new(&[100_000, 1]),
            Err(PickerError::TooHeavy { total: 100_001 })
        );
    }
}
