//! Is a change more than noise? The Mann-Whitney rank test and its interval for the shift between
//! two samples (Hodges-Lehmann estimate, Moses' distribution-free interval), Bonferroni-corrected
//! for the number of figures compared at once.
//!
//! Why these: the figures here (a blackout under TCG, a latency per session) are skewed and have
//! outliers, and runs are few (6-20 per side); the rank test assumes no distribution, its error
//! rate is exact at any size (the null distribution is counted, not approximated, up to 50 runs a
//! side), and the interval is the set of shifts the same test would not reject, so a verdict and
//! its interval never disagree. A bootstrap of medians at these sizes gives intervals that are too
//! narrow (its coverage falls short of its level at n = 10), which is the false alarm a CI gate
//! must not raise.

use serde::{Deserialize, Serialize};

/// Exact counts are used while n1 * n2 is at most this; above it, the normal approximation.
const EXACT_LIMIT: usize = 2500;

/// Whether bigger is better or worse for a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Lower,
    Higher,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    NoChange,
    Better,
    Worse,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::NoChange => "no change",
            Verdict::Better => "better",
            Verdict::Worse => "worse",
        }
    }
}

/// One figure's change from `base` to `patched`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Change {
    pub base_median: f64,
    pub patched_median: f64,
    /// Hodges-Lehmann estimate of the shift (patched - base), in the figure's unit.
    pub shift: f64,
    /// The interval for the shift at the corrected level.
    pub shift_interval: (f64, f64),
    /// `shift` and its interval relative to the base median (0.05 = 5%); None for a zero base.
    pub relative: Option<f64>,
    pub relative_interval: Option<(f64, f64)>,
    /// The smallest shift the figure can show (memory: a slab of each cache that grew, per
    /// object); a change is called only when its interval clears it on one side.
    #[serde(default)]
    pub resolution: f64,
    pub verdict: Verdict,
}

impl Change {
    /// Significantly worse, and by more than `threshold` of the base (0.05 = 5%); any
    /// significant worsening of a zero base counts.
    pub fn worse_by_more_than(&self, threshold: f64) -> bool {
        self.verdict == Verdict::Worse && self.relative.is_none_or(|r| r.abs() > threshold)
    }
}

/// How confident and corrected for how many comparisons.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Level {
    /// The family's confidence, e.g. 0.95: the chance that no figure of the table is called
    /// changed when none changed.
    pub confidence: f64,
    /// How many figures the table compares (Bonferroni: each at 1 - (1 - confidence) / m).
    pub comparisons: usize,
}

impl Level {
    /// The error rate each figure is tested at.
    pub fn per_figure_alpha(&self) -> f64 {
        (1.0 - self.confidence) / self.comparisons.max(1) as f64
    }
}

pub fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// P(U <= u) for u = 0..=n1*n2 under the null hypothesis (no ties), counted exactly.
fn exact_cdf(n1: usize, n2: usize) -> Vec<f64> {
    // ways[j][u]: arrangements of i x-values and j y-values with U = u, built up over i.
    let max = n1 * n2;
    let mut ways: Vec<Vec<f64>> = (0..=n2)
        .map(|_| {
            let mut w = vec![0.0; max + 1];
            w[0] = 1.0;
            w
        })
        .collect();
    for i in 1..=n1 {
        let mut next: Vec<Vec<f64>> = vec![vec![0.0; max + 1]; n2 + 1];
        next[0][0] = 1.0;
        for j in 1..=n2 {
            for u in 0..=(i * j) {
                // The largest of the i + j values is a y (adds i to U) or an x (adds nothing).
                let y_last = if u >= i { next[j - 1][u - i] } else { 0.0 };
                next[j][u] = y_last + ways[j][u];
            }
        }
        ways = next;
    }
    let total: f64 = ways[n2].iter().sum();
    let mut acc = 0.0;
    ways[n2]
        .iter()
        .map(|w| {
            acc += w;
            acc / total
        })
        .collect()
}

/// The standard normal quantile (Acklam's rational approximation, |error| < 1.2e-9).
fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e+01,
        2.209460984245205e+02,
        -2.759285104469687e+02,
        1.38357751867269e+02,
        -3.066479806614716e+01,
        2.506628277459239e+00,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e+01,
        1.615858368580409e+02,
        -1.556989798598866e+02,
        6.680131188771972e+01,
        -1.328068155288572e+01,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-03,
        -3.223964580411365e-01,
        -2.400758277161838e+00,
        -2.549671010394609e+00,
        4.374664141464968e+00,
        2.938163982698783e+00,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-03,
        3.224671290700398e-01,
        2.445134137142996e+00,
        3.754408661907416e+00,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// Moses' k: the number of pairwise differences cut from each end of their sorted list for a
/// two-sided interval at error rate `alpha` (the largest k with P(U <= k - 1) <= alpha / 2).
/// Zero means no interval at this level can exclude anything: too few runs.
pub fn moses_k(n1: usize, n2: usize, alpha: f64) -> usize {
    if n1 == 0 || n2 == 0 {
        return 0;
    }
    if n1 * n2 <= EXACT_LIMIT {
        return exact_cdf(n1, n2)
            .iter()
            .take_while(|&&p| p <= alpha / 2.0)
            .count();
    }
    let (a, b) = (n1 as f64, n2 as f64);
    let sd = (a * b * (a + b + 1.0) / 12.0).sqrt();
    let k = a * b / 2.0 + normal_quantile(alpha / 2.0) * sd;
    k.floor().max(0.0) as usize
}

/// The fewest runs per side (equal sides) for which a change can be called at error rate `alpha`.
pub fn min_runs(alpha: f64) -> usize {
    (2..=EXACT_LIMIT)
        .find(|&n| moses_k(n, n, alpha) >= 1)
        .unwrap_or(EXACT_LIMIT)
}

/// The change of one figure from `base` to `patched` at error rate `alpha` (already corrected),
/// called only when its interval lies beyond `resolution` on one side (0 for figures the test
/// alone decides). `None` when either side has no finite value.
pub fn change(
    base: &[f64],
    patched: &[f64],
    alpha: f64,
    better: Better,
    resolution: f64,
) -> Option<Change> {
    let x: Vec<f64> = base.iter().copied().filter(|v| v.is_finite()).collect();
    let y: Vec<f64> = patched.iter().copied().filter(|v| v.is_finite()).collect();
    if x.is_empty() || y.is_empty() {
        return None;
    }
    let mut d: Vec<f64> = x
        .iter()
        .flat_map(|a| y.iter().map(move |b| b - a))
        .collect();
    d.sort_by(f64::total_cmp);
    let shift = median(&d);
    let k = moses_k(x.len(), y.len(), alpha);
    let interval = if k == 0 {
        (f64::NEG_INFINITY, f64::INFINITY)
    } else {
        (d[k - 1], d[d.len() - k])
    };
    let verdict = if interval.0 > resolution || interval.1 < -resolution {
        let up = interval.0 > resolution;
        match (up, better) {
            (true, Better::Lower) | (false, Better::Higher) => Verdict::Worse,
            _ => Verdict::Better,
        }
    } else {
        Verdict::NoChange
    };
    let base_median = median(&x);
    let rel = |v: f64| v / base_median.abs();
    let relative = (base_median != 0.0).then(|| rel(shift));
    Some(Change {
        base_median,
        patched_median: median(&y),
        shift,
        shift_interval: interval,
        relative,
        relative_interval: relative.map(|_| (rel(interval.0), rel(interval.1))),
        resolution,
        verdict,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift) and Box-Muller: the tests' noise.
    struct Noise(u64);
    impl Noise {
        fn uniform(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
        fn normal(&mut self) -> f64 {
            let (u, v) = (self.uniform().max(1e-300), self.uniform());
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        }
        /// A skewed figure like a blackout under TCG: a floor, normal jitter, rare long stalls.
        fn blackout(&mut self) -> f64 {
            let stall = if self.uniform() < 0.1 { 80.0 } else { 0.0 };
            540.0 + 12.0 * self.normal() + stall
        }
    }

    #[test]
    fn the_exact_null_distribution_is_the_textbook_one() {
        // n1 = n2 = 3: 20 arrangements; U = 0 once, 1 once, 2 twice.
        let cdf = exact_cdf(3, 3);
        assert_eq!(cdf.len(), 10);
        assert!((cdf[0] - 1.0 / 20.0).abs() < 1e-12);
        assert!((cdf[2] - 4.0 / 20.0).abs() < 1e-12);
        assert!((cdf[9] - 1.0).abs() < 1e-12);
        // Symmetric: P(U <= u) = P(U >= n1 n2 - u).
        let c = exact_cdf(4, 6);
        for u in 0..24 {
            let upper = 1.0 - c[23 - u];
            assert!((c[u] - upper).abs() < 1e-12, "u={u}");
        }
    }

    #[test]
    fn moses_k_matches_tables_and_the_normal_approximation_joins_the_exact() {
        // Tables (two-sided 0.05): n1 = n2 = 10 -> critical U 23, so k = 24; 8 and 8 -> 13 + 1.
        assert_eq!(moses_k(10, 10, 0.05), 24);
        assert_eq!(moses_k(8, 8, 0.05), 14);
        assert_eq!(moses_k(3, 3, 0.05), 0);
        let exact = moses_k(50, 50, 0.01) as f64;
        let (a, b) = (50.0_f64, 50.0_f64);
        let approx = a * b / 2.0 + normal_quantile(0.005) * (a * b * (a + b + 1.0) / 12.0).sqrt();
        assert!((exact - approx).abs() < 3.0, "{exact} vs {approx}");
        assert!((normal_quantile(0.975) - 1.959964).abs() < 1e-5);
    }

    #[test]
    fn too_few_runs_are_named_with_the_minimum() {
        // 1/C(2n, n) <= alpha/2: at 0.05 / 8 figures, C(10,5) = 252 is not enough, C(12,6) = 924 is.
        assert_eq!(min_runs(0.05 / 8.0), 6);
        assert_eq!(min_runs(0.05), 4);
        let c = change(
            &[1.0, 2.0, 3.0],
            &[10.0, 11.0, 12.0],
            0.05,
            Better::Lower,
            0.0,
        )
        .unwrap();
        assert_eq!(
            c.verdict,
            Verdict::NoChange,
            "3 a side cannot call anything at 5%"
        );
    }

    #[test]
    fn identical_constant_figures_are_no_change_and_a_constant_step_is_called() {
        let same = change(&[800.0; 8], &[800.0; 8], 0.01, Better::Lower, 0.0).unwrap();
        assert_eq!(same.verdict, Verdict::NoChange);
        assert_eq!(same.shift_interval, (0.0, 0.0));
        let fat = change(&[800.0; 8], &[1824.0; 8], 0.01, Better::Lower, 0.0).unwrap();
        assert_eq!(fat.verdict, Verdict::Worse);
        assert_eq!(fat.shift, 1024.0);
        assert!((fat.relative.unwrap() - 1.28).abs() < 1e-9);
        let faster = change(&[10.0; 8], &[5.0; 8], 0.01, Better::Lower, 0.0).unwrap();
        assert_eq!(faster.verdict, Verdict::Better);
        let more = change(&[10.0; 8], &[5.0; 8], 0.01, Better::Higher, 0.0).unwrap();
        assert_eq!(more.verdict, Verdict::Worse);
    }

    /// Memory figures are the same in every VM restored from one boot, so a page that boot put
    /// elsewhere is a certain step of 4096 / N: no change while it is within the resolution.
    #[test]
    fn a_step_within_the_resolution_is_no_change_and_one_beyond_it_is_called() {
        let page = change(&[774.1; 9], &[778.2; 9], 0.001, Better::Lower, 8.2).unwrap();
        assert_eq!(page.verdict, Verdict::NoChange);
        assert!((page.shift - 4.1).abs() < 1e-9 && page.resolution == 8.2);
        let fat = change(&[774.1; 9], &[1331.0; 9], 0.001, Better::Lower, 8.2).unwrap();
        assert_eq!(fat.verdict, Verdict::Worse);
        let smaller = change(&[774.1; 9], &[700.0; 9], 0.001, Better::Lower, 8.2).unwrap();
        assert_eq!(smaller.verdict, Verdict::Better);
    }

    /// The property the null target rests on: with no change, a table of 8 figures corrected
    /// with Bonferroni calls something changed in at most 5% of repetitions.
    #[test]
    fn the_family_false_alarm_rate_is_within_its_level() {
        let mut noise = Noise(0x9e3779b97f4a7c15);
        let level = Level {
            confidence: 0.95,
            comparisons: 8,
        };
        let tables = 2000;
        let mut alarms = 0;
        for _ in 0..tables {
            let any = (0..level.comparisons).any(|_| {
                let x: Vec<f64> = (0..10).map(|_| noise.blackout()).collect();
                let y: Vec<f64> = (0..10).map(|_| noise.blackout()).collect();
                change(&x, &y, level.per_figure_alpha(), Better::Lower, 0.0)
                    .unwrap()
                    .verdict
                    != Verdict::NoChange
            });
            alarms += any as usize;
        }
        let rate = alarms as f64 / tables as f64;
        assert!(rate <= 0.05, "family false-alarm rate {rate}");
        assert!(
            rate > 0.0005,
            "a test that never rejects is no test: {rate}"
        );
    }

    #[test]
    fn a_planted_20ms_in_a_540ms_blackout_is_found_in_most_runs_of_twenty() {
        let mut noise = Noise(42);
        let level = Level {
            confidence: 0.95,
            comparisons: 8,
        };
        let found = (0..200)
            .filter(|_| {
                let x: Vec<f64> = (0..20).map(|_| noise.blackout()).collect();
                let y: Vec<f64> = (0..20).map(|_| noise.blackout() + 20.0).collect();
                change(&x, &y, level.per_figure_alpha(), Better::Lower, 0.0)
                    .unwrap()
                    .verdict
                    == Verdict::Worse
            })
            .count();
        assert!(found >= 100, "power {found}/200");
    }

    #[test]
    fn the_interval_holds_the_shift_it_estimates() {
        let c = change(
            &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            &[3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
            0.05,
            Better::Lower,
            0.0,
        )
        .unwrap();
        assert_eq!(c.shift, 2.0);
        assert!(c.shift_interval.0 <= 2.0 && 2.0 <= c.shift_interval.1);
        assert_eq!(median(&[1.0, 2.0, 3.0, 4.0]), 2.5);
        assert!(change(&[f64::NAN], &[1.0], 0.05, Better::Lower, 0.0).is_none());
    }
}
