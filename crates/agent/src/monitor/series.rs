//! The metric store's pure core: one series of samples kept raw for an hour and rolled up
//! (average and maximum) into 5-minute points for 48 hours and hourly points for 30 days,
//! and the arithmetic on the proxy's counters (rates, ratios, latency quantiles from the
//! fixed buckets). No I/O and no clock: every function takes the time it works at, so the
//! tests drive it with plain numbers.

use std::collections::{BTreeMap, VecDeque};

use dockhand_proxy::{BackendSnapshot, LATENCY_BUCKETS_MS};
use serde::{Deserialize, Serialize};

/// Raw samples are kept this long (seconds).
pub const RAW_SPAN: u64 = 3600;
/// The first roll-up: 5-minute points for 48 hours.
pub const FINE_STEP: u64 = 300;
pub const FINE_SPAN: u64 = 48 * 3600;
/// The second: hourly points for 30 days.
pub const COARSE_STEP: u64 = 3600;
pub const COARSE_SPAN: u64 = 30 * 24 * 3600;
/// At most this many series are kept (and so written to disk): with the spans above, the
/// store's file stays under about 12 MB whatever runs on the host (the dashboard bench's
/// fixture, every series full for 30 days, writes 11.8 MB), rewritten every five minutes.
/// Series beyond it are dropped (and counted).
pub const MAX_SERIES: usize = 128;

/// One raw sample: unix seconds and a value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub t: u64,
    pub v: f64,
}

/// One rolled-up point: the start of its interval, the average and the maximum of what fell
/// in it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rollup {
    pub t: u64,
    pub avg: f64,
    pub max: f64,
}

/// Down-samples `samples` (in time order) into one point per `step`-second interval that
/// holds any, aligned on multiples of `step`.
pub fn downsample(samples: &[Sample], step: u64) -> Vec<Rollup> {
    let mut out: Vec<Rollup> = Vec::new();
    let mut count = 0u32;
    for s in samples {
        let t = s.t - s.t % step;
        match out.last_mut() {
            Some(last) if last.t == t => {
                count += 1;
                last.avg += (s.v - last.avg) / f64::from(count);
                last.max = last.max.max(s.v);
            }
            _ => {
                count = 1;
                out.push(Rollup {
                    t,
                    avg: s.v,
                    max: s.v,
                });
            }
        }
    }
    out
}

/// Down-samples roll-ups again into `step`-second points (averages weighted equally).
pub fn downsample_rollups(points: &[Rollup], step: u64) -> Vec<Rollup> {
    let avgs: Vec<Sample> = points.iter().map(|p| Sample { t: p.t, v: p.avg }).collect();
    let mut out = downsample(&avgs, step);
    for o in &mut out {
        o.max = points
            .iter()
            .filter(|p| p.t - p.t % step == o.t)
            .map(|p| p.max)
            .fold(f64::MIN, f64::max);
    }
    out
}

/// One series at its three resolutions.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Series {
    #[serde(skip)]
    pub raw: VecDeque<Sample>,
    pub fine: VecDeque<Rollup>,
    pub coarse: VecDeque<Rollup>,
}

impl Series {
    /// Adds a sample taken at `t`; rolls up the intervals it closes and forgets what is
    /// older than each resolution's span. A sample before the last one means the wall clock
    /// was stepped back (it ran fast): what was stamped after `t` is dropped — those times
    /// have not come yet — so the series stays in time order and keeps taking samples
    /// instead of freezing until the clock catches up.
    pub fn push(&mut self, t: u64, v: f64) {
        if self.raw.back().is_some_and(|last| t < last.t) {
            self.step_back(t);
        }
        if let Some(last) = self.raw.back() {
            let (closed, now) = (last.t - last.t % FINE_STEP, t - t % FINE_STEP);
            if now > closed {
                let interval: Vec<Sample> = self
                    .raw
                    .iter()
                    .filter(|s| s.t - s.t % FINE_STEP == closed)
                    .copied()
                    .collect();
                let before = self.fine.back().map(|p| p.t);
                self.fine.extend(downsample(&interval, FINE_STEP));
                if let Some(before) = before {
                    let (c_closed, c_now) =
                        (before - before % COARSE_STEP, now - now % COARSE_STEP);
                    if c_now > c_closed {
                        let hour: Vec<Rollup> = self
                            .fine
                            .iter()
                            .filter(|p| p.t - p.t % COARSE_STEP == c_closed)
                            .copied()
                            .collect();
                        if self.coarse.back().map(|p| p.t) != Some(c_closed) {
                            self.coarse.extend(downsample_rollups(&hour, COARSE_STEP));
                        }
                    }
                }
            }
        }
        self.raw.push_back(Sample { t, v });
        trim(&mut self.raw, t, RAW_SPAN, |s| s.t);
        trim(&mut self.fine, t, FINE_SPAN, |p| p.t);
        trim(&mut self.coarse, t, COARSE_SPAN, |p| p.t);
    }
}

impl Series {
    /// Forgets the samples after `t` and the roll-ups of the intervals `t` is in or before.
    fn step_back(&mut self, t: u64) {
        while self.raw.back().is_some_and(|s| s.t > t) {
            self.raw.pop_back();
        }
        // The interval of the last sample kept is rolled up again when it closes.
        let edge = self.raw.back().map_or(t, |s| s.t.min(t));
        while self
            .fine
            .back()
            .is_some_and(|p| p.t >= edge - edge % FINE_STEP)
        {
            self.fine.pop_back();
        }
        let edge = self.fine.back().map_or(edge, |p| p.t.min(edge));
        while self
            .coarse
            .back()
            .is_some_and(|p| p.t >= edge - edge % COARSE_STEP)
        {
            self.coarse.pop_back();
        }
    }

    /// The points since `since` (unix seconds) at the finest resolution that reaches back
    /// that far from `now`: raw samples within an hour, 5-minute averages within 48 hours,
    /// hourly averages beyond.
    pub fn points(&self, now: u64, since: u64) -> Vec<(u64, f64)> {
        let back = now.saturating_sub(since);
        if back <= RAW_SPAN {
            self.raw
                .iter()
                .filter(|s| s.t >= since)
                .map(|s| (s.t, s.v))
                .collect()
        } else {
            let points = if back <= FINE_SPAN {
                &self.fine
            } else {
                &self.coarse
            };
            points
                .iter()
                .filter(|p| p.t >= since)
                .map(|p| (p.t, p.avg))
                .collect()
        }
    }
}

fn trim<T>(q: &mut VecDeque<T>, now: u64, span: u64, t: impl Fn(&T) -> u64) {
    while q.front().is_some_and(|x| t(x) + span < now) {
        q.pop_front();
    }
}

/// Every series by name, at most [`MAX_SERIES`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SeriesStore {
    pub series: BTreeMap<String, Series>,
    /// Samples of series refused because the store was full.
    #[serde(skip)]
    pub dropped: u64,
}

impl SeriesStore {
    pub fn push(&mut self, name: &str, t: u64, v: f64) {
        if !v.is_finite() {
            return;
        }
        if let Some(s) = self.series.get_mut(name) {
            s.push(t, v);
        } else if self.series.len() < MAX_SERIES {
            self.series.entry(name.to_string()).or_default().push(t, v);
        } else {
            self.dropped += 1;
        }
    }

    /// Forgets series without a sample (raw or rolled up) in their longest span.
    pub fn forget_stale(&mut self, now: u64) {
        self.series.retain(|_, s| {
            s.raw
                .back()
                .map(|x| x.t)
                .into_iter()
                .chain(s.fine.back().map(|p| p.t))
                .chain(s.coarse.back().map(|p| p.t))
                .any(|t| t + COARSE_SPAN >= now)
        });
    }
}

/// What the proxy counted for a service (or one release of it) over a window.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Traffic {
    pub requests: u64,
    pub per_second: f64,
    /// 5xx responses over all responses (0 without requests).
    pub error_ratio: f64,
    /// The upper bound of the latency bucket holding the median, in milliseconds.
    pub p50_ms: Option<f64>,
    /// The upper bound of the latency bucket holding the 99th percentile, in milliseconds.
    pub p99_ms: Option<f64>,
}

/// The traffic between two cumulative snapshots taken `seconds` apart.
pub fn traffic(delta: &BackendSnapshot, seconds: f64) -> Traffic {
    let requests = delta.requests();
    Traffic {
        requests,
        per_second: if seconds > 0.0 {
            requests as f64 / seconds
        } else {
            0.0
        },
        error_ratio: if requests == 0 {
            0.0
        } else {
            delta.status[4] as f64 / requests as f64
        },
        p50_ms: quantile_ms(&delta.latency, 0.5),
        p99_ms: quantile_ms(&delta.latency, 0.99),
    }
}

/// The upper bound (ms) of the bucket holding quantile `q` of the counts in `buckets`
/// (`LATENCY_BUCKETS_MS`, then one for everything slower, reported as twice the last bound).
pub fn quantile_ms(buckets: &[u64], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in buckets.iter().enumerate() {
        seen += n;
        if seen >= rank {
            let last = *LATENCY_BUCKETS_MS.last().expect("buckets");
            return Some(LATENCY_BUCKETS_MS.get(i).copied().unwrap_or(2 * last) as f64);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: u64, v: f64) -> Sample {
        Sample { t, v }
    }

    #[test]
    fn points_come_raw_within_an_hour_and_rolled_up_beyond() {
        let mut series = Series::default();
        // A sample every minute for three hours, valued by its minute.
        for m in 0..180u64 {
            series.push(m * 60, m as f64);
        }
        let now = 179 * 60;
        let raw = series.points(now, now - 600);
        assert_eq!(raw.len(), 11);
        assert_eq!(raw.first(), Some(&(now - 600, 169.0)));
        let fine = series.points(now, now.saturating_sub(3 * 3600));
        // 5-minute points (closed intervals only): the first averages minutes 0-4.
        assert_eq!(fine.first(), Some(&(0, 2.0)));
        assert!(fine.windows(2).all(|w| w[1].0 - w[0].0 == FINE_STEP));
    }

    #[test]
    fn a_clock_stepped_back_an_hour_keeps_the_series_in_order_and_sampling() {
        let mut series = Series::default();
        // Every minute for three hours, then the clock is set back an hour and sampling goes
        // on for another two.
        for m in 0..180u64 {
            series.push(m * 60, 1.0);
        }
        for m in 120..240u64 {
            series.push(m * 60 + 30, 2.0);
        }
        let now = 239 * 60 + 30;
        let raw = series.points(now, now - 3000);
        assert_eq!(raw.last(), Some(&(now, 2.0)), "the new samples are kept");
        let increasing = |ps: &[(u64, f64)]| ps.windows(2).all(|w| w[1].0 > w[0].0);
        assert!(increasing(&raw), "{raw:?}");
        let fine = series.points(now, now.saturating_sub(4 * 3600));
        assert!(increasing(&fine), "{fine:?}");
        assert!(
            fine.iter().all(|p| p.0 <= now),
            "nothing after now: {fine:?}"
        );
        let coarse = series.points(now, now.saturating_sub(72 * 3600));
        assert!(increasing(&coarse), "{coarse:?}");
    }

    #[test]
    fn downsampling_averages_and_keeps_the_maximum_per_aligned_interval() {
        let out = downsample(&[s(600, 1.0), s(700, 3.0), s(899, 2.0), s(900, 10.0)], 300);
        assert_eq!(
            out,
            vec![
                Rollup {
                    t: 600,
                    avg: 2.0,
                    max: 3.0
                },
                Rollup {
                    t: 900,
                    avg: 10.0,
                    max: 10.0
                },
            ]
        );
        assert!(downsample(&[], 300).is_empty());
        let hourly = downsample_rollups(
            &[
                Rollup {
                    t: 0,
                    avg: 1.0,
                    max: 5.0,
                },
                Rollup {
                    t: 300,
                    avg: 3.0,
                    max: 4.0,
                },
                Rollup {
                    t: 3600,
                    avg: 7.0,
                    max: 7.0,
                },
            ],
            3600,
        );
        assert_eq!(
            hourly[0],
            Rollup {
                t: 0,
                avg: 2.0,
                max: 5.0
            }
        );
        assert_eq!(hourly[1].t, 3600);
    }

    #[test]
    fn a_series_keeps_an_hour_raw_and_rolls_up_for_48_hours_and_30_days() {
        let mut series = Series::default();
        let start = 1_000_000 - 1_000_000 % 3600;
        // Three days of a sample every 10 s, value = hour of the day.
        let end = start + 3 * 24 * 3600;
        let mut t = start;
        while t < end {
            series.push(t, ((t - start) / 3600 % 24) as f64);
            t += 10;
        }
        let raw_span = series.raw.back().unwrap().t - series.raw.front().unwrap().t;
        assert!(raw_span <= RAW_SPAN, "{raw_span}");
        assert_eq!(series.raw.len(), 361);
        // 48 h of 5-minute points (the interval in progress is not rolled up yet).
        let fine_span = series.fine.back().unwrap().t - series.fine.front().unwrap().t;
        assert!(fine_span <= FINE_SPAN, "{fine_span}");
        assert!(series.fine.len() as u64 >= FINE_SPAN / FINE_STEP - 2);
        assert!(series.fine.iter().all(|p| p.t % FINE_STEP == 0));
        // One hourly point per closed hour.
        assert_eq!(series.coarse.len(), 3 * 24 - 1);
        assert_eq!(
            series.coarse[5],
            Rollup {
                t: start + 5 * 3600,
                avg: 5.0,
                max: 5.0
            }
        );
        // A sample older than the last one (the clock stepped back) drops what was stamped
        // after it, and is kept.
        series.push(start, 99.0);
        assert_eq!(series.raw.back().unwrap().v, 99.0);
        assert!(series.fine.iter().all(|p| p.t < start));
    }

    #[test]
    fn the_store_is_bounded() {
        let mut store = SeriesStore::default();
        for i in 0..MAX_SERIES + 10 {
            store.push(&format!("s{i}"), 10, 1.0);
        }
        assert_eq!(store.series.len(), MAX_SERIES);
        assert_eq!(store.dropped, 10);
        store.push("s0", 20, f64::NAN);
        assert_eq!(store.series["s0"].raw.len(), 1);
        store.forget_stale(10 + COARSE_SPAN + 1);
        assert!(store.series.is_empty());
    }

    #[test]
    fn traffic_rates_ratios_and_quantiles() {
        let mut delta = BackendSnapshot {
            status: [0, 90, 0, 0, 10],
            ..Default::default()
        };
        delta.latency[0] = 98; // ≤ 1 ms
        delta.latency[5] = 2; // ≤ 50 ms
        let t = traffic(&delta, 10.0);
        assert_eq!(t.requests, 100);
        assert_eq!(t.per_second, 10.0);
        assert!((t.error_ratio - 0.1).abs() < 1e-9);
        assert_eq!(t.p99_ms, Some(50.0));
        assert_eq!(quantile_ms(&delta.latency, 0.5), Some(1.0));
        assert_eq!(traffic(&BackendSnapshot::default(), 10.0).p99_ms, None);
        let mut slow = [0u64; 13];
        slow[12] = 1;
        assert_eq!(quantile_ms(&slow, 0.99), Some(20000.0));
    }
}
