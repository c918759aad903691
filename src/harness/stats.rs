//! What a row's rounds say, and how sure of it they let us be.
//!
//! `compare` measures every configuration in several rounds (see
//! [`rounds`](super::rounds)); this module turns the rounds into the figures
//! a report shows. It is pure arithmetic on numbers it is handed, tested
//! with scripted samples, and knows nothing of networks.
//!
//! * [`Interval`]: a median with a distribution-free confidence interval
//!   from order statistics. Why not a bootstrap: with five to ten rounds a
//!   bootstrap of the median can only return values already in the sample,
//!   its coverage is unknown at that size, and it needs random numbers, so
//!   two reports of the same rounds could differ. The order-statistic
//!   interval is exact for any continuous distribution (its coverage is a
//!   binomial sum, printed beside it), needs no assumption of normality
//!   (round times are skewed: a noisy neighbour only ever adds time), and
//!   is the same every time it is computed.
//! * [`Spread`]: whether a row's interval is narrow enough to rank on, and
//!   if not, the likely cause ([`Cause`]).
//! * [`Verdict`]: each backend against the best of its workload and role,
//!   from the *paired* ratios of rounds measured side by side, so that a
//!   round slowed by a neighbour slows both sides of its ratio alike.

use serde::{Deserialize, Serialize};

/// The confidence asked of every interval.
pub const CONFIDENCE: f64 = 0.95;

/// A backend is called slower than the best only when the whole interval
/// of its paired ratio lies beyond 1 + `NOISE`: a difference smaller than
/// this, or one the rounds cannot place beyond it, is reported as a tie.
/// On a shared two-core machine the median ratio of two backends moves
/// between runs of the same build by nearly this much (the lab notes have
/// the measurement), so a smaller difference is not one that a second run
/// would repeat (criterion's `noise_threshold` is the same idea);
/// requiring the whole interval beyond it, not only the median, keeps a
/// verdict from flipping between runs for a backend near the threshold.
pub const NOISE: f64 = 0.10;

/// A row whose interval reaches further than this from its median (as a
/// fraction of the median) is flagged as too wide to rank on.
pub const WIDE: f64 = 0.10;

/// A median and its confidence interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// The sample median (the mean of the middle two for an even count).
    pub median: f64,
    /// The interval's lower end: an order statistic of the sample.
    pub low: f64,
    /// Its upper end.
    pub high: f64,
    /// The probability that the interval holds the true median: at least
    /// [`CONFIDENCE`] from six values on; with fewer, the widest interval
    /// (smallest to largest) and its lower coverage.
    pub coverage: f64,
    /// How many values it was made from.
    pub n: usize,
}

impl Interval {
    /// The median of `values` (non-finite values left out) and its
    /// interval, or `None` when no value is finite.
    pub fn of(values: &[f64]) -> Option<Interval> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        // [x(k), x(n+1-k)] holds the median unless k or more values fall on
        // one side of it: coverage 1 - 2 P(B <= k-1), B ~ Binomial(n, 1/2).
        // The largest k that still covers CONFIDENCE gives the narrowest
        // interval; k = 1 (min to max) when none does.
        let mut k = 1;
        while k < n.div_ceil(2) && 1.0 - 2.0 * binomial_half_cdf(n, k) >= CONFIDENCE {
            k += 1;
        }
        let coverage = 1.0 - 2.0 * binomial_half_cdf(n, k - 1);
        Some(Interval { median, low: v[k - 1], high: v[n - k], coverage: coverage.max(0.0), n })
    }

    /// How far the interval reaches from the median, as a fraction of it.
    pub fn half_width(&self) -> f64 {
        if self.median == 0.0 {
            return 0.0;
        }
        (self.median - self.low).max(self.high - self.median) / self.median.abs()
    }

    /// Whether the whole interval is below `x`.
    pub fn below(&self, x: f64) -> bool {
        self.high < x
    }

    /// Whether the whole interval is above `x`.
    pub fn above(&self, x: f64) -> bool {
        self.low > x
    }

    /// `1.23x (1.18-1.31)`: a ratio with its interval.
    pub fn ratio_text(&self) -> String {
        format!("{:.2}x ({:.2}-{:.2})", self.median, self.low, self.high)
    }
}

/// P(B <= k) for B ~ Binomial(n, 1/2).
fn binomial_half_cdf(n: usize, k: usize) -> f64 {
    let mut term = 0.5f64.powi(n as i32); // C(n, 0) / 2^n
    let mut sum = term;
    for i in 1..=k.min(n) {
        term *= (n + 1 - i) as f64 / i as f64;
        sum += term;
    }
    sum
}

/// Whether a row's rounds agree well enough to rank on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "spread", rename_all = "kebab-case")]
pub enum Spread {
    /// Its interval is within [`WIDE`] of its median.
    Steady,
    /// Wider than [`WIDE`]: the row is shown, flagged, with the likely cause.
    Wide {
        /// Half the interval's width over the median.
        half_width: f64,
        /// Why, as far as the rounds tell.
        cause: Cause,
    },
}

/// The likely cause of a wide interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    /// The rounds fall in two bands far apart, each tight: a layout with
    /// two stable states (reuse-port's hash putting both connections on
    /// one loop or on two; threads landing on one core or on two).
    Bimodal {
        /// The median of the lower band.
        low: f64,
        /// The median of the upper band.
        high: f64,
    },
    /// The row's own figure is wide but its ratio to the floor of the same
    /// round is steady: whole rounds got faster or slower together (a
    /// neighbour on the machine, the CPU's clock): the ratio is the figure
    /// to read.
    WholeRounds,
    /// The rounds scatter with no pattern: a noisy neighbour during some
    /// rounds, or windows too short for the figure (more `--rounds` or a
    /// longer `--duration`).
    Scattered,
}

impl Spread {
    /// The spread of `values`, whose interval is `interval`; `paired` is
    /// the interval of the same rounds' ratios to their floor, if any.
    pub fn of(values: &[f64], interval: &Interval, paired: Option<&Interval>) -> Spread {
        let half_width = interval.half_width();
        if half_width <= WIDE {
            return Spread::Steady;
        }
        let cause = match bands(values) {
            Some((low, high)) => Cause::Bimodal { low, high },
            None if paired.is_some_and(|p| p.half_width() <= WIDE) => Cause::WholeRounds,
            None => Cause::Scattered,
        };
        Spread::Wide { half_width, cause }
    }

    /// A short flag for a table cell: empty when steady.
    pub fn flag(&self) -> &'static str {
        match self {
            Spread::Steady => "",
            Spread::Wide { cause: Cause::Bimodal { .. }, .. } => "wide: bimodal",
            Spread::Wide { cause: Cause::WholeRounds, .. } => "wide: whole rounds",
            Spread::Wide { cause: Cause::Scattered, .. } => "wide: scattered",
        }
    }
}

/// Two bands, if the sorted values split at one gap into two groups of at
/// least two values each, the gap at least [`WIDE`] of the median and more
/// than twice as wide as either group: their medians.
fn bands(values: &[f64]) -> Option<(f64, f64)> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.len() < 4 {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let (at, gap) = (2..=v.len() - 2).map(|i| (i, v[i] - v[i - 1])).max_by(|a, b| a.1.total_cmp(&b.1))?;
    let (lower, upper) = v.split_at(at);
    let range = |g: &[f64]| g[g.len() - 1] - g[0];
    let median = Interval::of(&v)?.median;
    let separated = gap >= WIDE * median.abs() && gap > 2.0 * range(lower).max(range(upper));
    separated.then(|| {
        (Interval::of(lower).map_or(f64::NAN, |i| i.median), Interval::of(upper).map_or(f64::NAN, |i| i.median))
    })
}

/// Where a backend stands against the best of its workload and role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Standing {
    /// The lowest median.
    Best,
    /// Not told apart from the best: the paired ratios' interval reaches
    /// down to 1 + [`NOISE`] or below.
    Tied,
    /// Slower than the best beyond the noise: the whole interval of the
    /// paired ratios above 1 + [`NOISE`].
    Slower,
}

/// One backend's verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Where it stands.
    pub standing: Standing,
    /// The best backend it is compared with (itself, for the best).
    pub best: String,
    /// Its figure over the best's, round by round, as a median and interval
    /// (`None` for the best, or with no round in common).
    pub vs_best: Option<Interval>,
}

/// The verdicts of several backends measured in the same rounds:
/// `entries` holds each backend's name and its figure in each round (lower
/// is better; a round it did not complete is NaN). Returned in the order given.
pub fn verdicts(entries: &[(&str, &[f64])]) -> Vec<Verdict> {
    let medians: Vec<f64> = entries.iter().map(|(_, v)| Interval::of(v).map_or(f64::INFINITY, |i| i.median)).collect();
    let Some(best) = (0..entries.len()).min_by(|&a, &b| medians[a].total_cmp(&medians[b])) else {
        return Vec::new();
    };
    let (best_name, best_rounds) = entries[best];
    entries
        .iter()
        .enumerate()
        .map(|(i, (_, rounds))| {
            if i == best {
                return Verdict { standing: Standing::Best, best: best_name.to_owned(), vs_best: None };
            }
            let ratios: Vec<f64> = rounds.iter().zip(best_rounds.iter()).map(|(a, b)| a / b).collect();
            let vs_best = Interval::of(&ratios);
            let standing = match vs_best {
                Some(r) if r.above(1.0 + NOISE) => Standing::Slower,
                _ => Standing::Tied,
            };
            Verdict { standing, best: best_name.to_owned(), vs_best }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed pseudo-random sequence (xorshift): scripted, repeatable noise.
    fn noise(seed: u64, n: usize, spread: f64) -> Vec<f64> {
        let mut x = seed.max(1);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                1.0 + spread * ((x % 10_000) as f64 / 10_000.0 - 0.5)
            })
            .collect()
    }

    #[test]
    fn the_interval_is_an_order_statistic_with_its_coverage() {
        let i = Interval::of(&[5.0, 1.0, 3.0, 2.0, 4.0]).unwrap();
        assert_eq!((i.median, i.low, i.high, i.n), (3.0, 1.0, 5.0, 5));
        // Five values: smallest to largest covers 1 - 2/32.
        assert!((i.coverage - 0.9375).abs() < 1e-12, "{i:?}");
        // Six: 1 - 2/64, at least 95%.
        let i = Interval::of(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        assert_eq!((i.median, i.low, i.high), (3.5, 1.0, 6.0));
        assert!(i.coverage >= CONFIDENCE);
        // Twenty: the 6th and 15th values (coverage 95.9%).
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        let i = Interval::of(&v).unwrap();
        assert_eq!((i.low, i.high), (6.0, 15.0));
        assert!(i.coverage >= CONFIDENCE && i.coverage < 0.97, "{i:?}");
        // Non-finite values are left out; none at all gives none.
        assert_eq!(Interval::of(&[f64::NAN, 2.0]).unwrap().median, 2.0);
        assert!(Interval::of(&[f64::NAN]).is_none());
    }

    #[test]
    fn two_equal_distributions_tie() {
        for seed in 1..50 {
            let a: Vec<f64> = noise(seed, 7, 0.08).iter().map(|x| 100.0 * x).collect();
            let b: Vec<f64> = noise(seed + 1000, 7, 0.08).iter().map(|x| 100.0 * x).collect();
            let v = verdicts(&[("a", &a), ("b", &b)]);
            assert!(v.iter().all(|v| v.standing != Standing::Slower), "seed {seed}: {v:?}");
        }
    }

    #[test]
    fn a_twenty_percent_shift_is_found_and_measured() {
        for seed in 1..50 {
            // Each round moves both backends alike (a neighbour), by up to 30%.
            let round = noise(seed, 7, 0.3);
            let fast: Vec<f64> = round.iter().zip(noise(seed + 7, 7, 0.04)).map(|(r, e)| 100.0 * r * e).collect();
            let slow: Vec<f64> = round.iter().zip(noise(seed + 9, 7, 0.04)).map(|(r, e)| 120.0 * r * e).collect();
            let v = verdicts(&[("slow", &slow), ("fast", &fast)]);
            assert_eq!(v[1].standing, Standing::Best);
            assert_eq!(v[0].standing, Standing::Slower, "seed {seed}: {v:?}");
            let r = v[0].vs_best.unwrap();
            assert!(r.low > 1.1 && r.high < 1.3 && (r.median - 1.2).abs() < 0.05, "{r:?}");
            assert_eq!(v[0].best, "fast");
        }
    }

    #[test]
    fn a_difference_within_the_noise_threshold_is_a_tie() {
        let a = [100.0, 101.0, 99.0, 100.5, 100.2, 99.8];
        let b: Vec<f64> = a.iter().map(|x| x * 1.05).collect();
        let v = verdicts(&[("a", &a), ("b", &b)]);
        assert_eq!(v[1].standing, Standing::Tied, "5% is under the noise threshold even when every round agrees");
        assert!(v[1].vs_best.unwrap().low > 1.04, "and the interval still says how far: {v:?}");
    }

    #[test]
    fn a_bimodal_row_is_flagged_as_such() {
        let v = [100.0, 131.0, 101.0, 99.0, 130.0, 132.0, 100.5];
        let i = Interval::of(&v).unwrap();
        match Spread::of(&v, &i, None) {
            Spread::Wide { cause: Cause::Bimodal { low, high }, half_width } => {
                assert_eq!((low, high), (100.25, 131.0));
                assert!(half_width > WIDE);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn wide_rows_say_why_and_steady_rows_say_nothing() {
        let steady = [100.0, 103.0, 98.0, 101.0, 99.0, 102.0];
        assert_eq!(Spread::of(&steady, &Interval::of(&steady).unwrap(), None), Spread::Steady);
        let scattered = [93.0, 99.0, 100.0, 108.0, 115.0, 120.0];
        let i = Interval::of(&scattered).unwrap();
        assert!(matches!(Spread::of(&scattered, &i, None), Spread::Wide { cause: Cause::Scattered, .. }));
        let steady_ratio = Interval::of(&[1.5, 1.52, 1.49, 1.51, 1.5, 1.48]).unwrap();
        assert!(matches!(
            Spread::of(&scattered, &i, Some(&steady_ratio)),
            Spread::Wide { cause: Cause::WholeRounds, .. }
        ));
    }
}
