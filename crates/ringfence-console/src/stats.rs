//! The gate's two tests. Mann-Whitney U (below): does one group tend to have larger values than
//! another? And [`poisson_rate_greater`]: does one group have events at a higher pooled rate,
//! given each group's exposure?
//!
//! Kayenta's choice for canary analysis, and ours: it is rank-based, so it assumes no
//! distribution and holds up on the small, skewed samples a canary ring yields (CPU figures with
//! a long tail, crash counts that are mostly zero). The p-value uses the normal approximation
//! with tie and continuity corrections, which is accurate from about ten samples per group;
//! the gates never judge with fewer ([`Gates::min_samples`](crate::plan::Gates)).

use serde::Serialize;

/// Result of a one-sided test that `a` is stochastically greater than `b`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MannWhitney {
    /// U statistic of `a`.
    pub u: f64,
    /// z score (continuity-corrected).
    pub z: f64,
    /// One-sided p-value for "a > b".
    pub p_greater: f64,
}

/// One-sided Mann-Whitney U test of `a > b`. `None` when either sample is empty or every value
/// is tied (no information).
pub fn mann_whitney_greater(a: &[f64], b: &[f64]) -> Option<MannWhitney> {
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let mut all: Vec<(f64, bool)> = a
        .iter()
        .map(|&x| (x, true))
        .chain(b.iter().map(|&x| (x, false)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let n = all.len();
    let mut rank_sum_a = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their average.
        let avg = (i + j + 2) as f64 / 2.0;
        let t = (j - i + 1) as f64;
        tie_term += t * t * t - t;
        rank_sum_a += avg * all[i..=j].iter().filter(|(_, in_a)| *in_a).count() as f64;
        i = j + 1;
    }
    let (n1f, n2f, nf) = (n1 as f64, n2 as f64, n as f64);
    let u = rank_sum_a - n1f * (n1f + 1.0) / 2.0;
    let mean = n1f * n2f / 2.0;
    let var = n1f * n2f / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)).max(1.0));
    if var <= 0.0 {
        return None;
    }
    let z = (u - mean - 0.5) / var.sqrt();
    Some(MannWhitney {
        u,
        z,
        p_greater: normal_sf(z),
    })
}

/// One-sided test that events happen at a higher rate in group A than in group B, given each
/// group's event count and exposure (e.g. findings and agent-hours).
///
/// Rates are compared pooled over each group, not agent by agent: an agent seen for six minutes
/// with one finding has a per-agent rate of 10/h, and a rank test over such short exposures
/// flags noise. Under equal rates, A's count given the total is Binomial(n, T_a / (T_a + T_b));
/// the p-value is that binomial's upper tail (exact up to 2000 events, normal beyond). `None`
/// when there is no exposure on either side; a p of 1 when no event happened at all.
pub fn poisson_rate_greater(count_a: f64, hours_a: f64, count_b: f64, hours_b: f64) -> Option<f64> {
    if !(hours_a > 0.0 && hours_b > 0.0) {
        return None;
    }
    let (k, n) = (
        count_a.max(0.0).round(),
        (count_a.max(0.0) + count_b.max(0.0)).round(),
    );
    if n <= 0.0 {
        return Some(1.0);
    }
    let q = hours_a / (hours_a + hours_b);
    if n > 2000.0 {
        let sd = (n * q * (1.0 - q)).sqrt().max(f64::MIN_POSITIVE);
        return Some(normal_sf((k - 0.5 - n * q) / sd));
    }
    // P(X >= k) = sum over i >= k of C(n, i) q^i (1 - q)^(n - i), in logs to stay finite.
    let (lq, lp) = (q.ln(), (1.0 - q).ln());
    let mut ln_choose = 0.0;
    let mut tail = 0.0;
    let top = n as u32;
    for i in 0..=top {
        let fi = f64::from(i);
        if fi >= k {
            tail += (ln_choose + fi * lq + (n - fi) * lp).exp();
        }
        ln_choose += (n - fi).ln() - (fi + 1.0).ln();
    }
    Some(tail.clamp(0.0, 1.0))
}

/// P(Z > z) for a standard normal Z.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Complementary error function (Numerical Recipes' Chebyshev fit, |error| < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// Arithmetic mean (0 for an empty slice).
pub fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_test_weighs_exposure() {
        // Same rate, very different exposures: nothing to see.
        let p = poisson_rate_greater(1.0, 0.1, 60.0, 10.0).unwrap();
        assert!(p > 0.3, "{p}");
        // Ten times the rate over equal exposure.
        let p = poisson_rate_greater(50.0, 10.0, 5.0, 10.0).unwrap();
        assert!(p < 1e-6, "{p}");
        // Exact binomial: 3 of 3 events on a side with half the exposure is p = 1/8.
        let p = poisson_rate_greater(3.0, 1.0, 0.0, 1.0).unwrap();
        assert!((p - 0.125).abs() < 1e-9, "{p}");
        // The normal branch agrees with the exact one near the switch.
        let exact = poisson_rate_greater(1050.0, 1.0, 950.0, 1.0).unwrap();
        let approx = poisson_rate_greater(1050.5, 1.0, 950.5, 1.0).unwrap();
        assert!((exact - approx).abs() < 0.01, "{exact} vs {approx}");
        assert_eq!(poisson_rate_greater(0.0, 1.0, 0.0, 1.0), Some(1.0));
        assert_eq!(poisson_rate_greater(1.0, 0.0, 0.0, 1.0), None);
    }

    #[test]
    fn normal_tail() {
        assert!((normal_sf(0.0) - 0.5).abs() < 1e-6);
        assert!((normal_sf(1.96) - 0.025).abs() < 1e-3);
        assert!((normal_sf(-1.96) - 0.975).abs() < 1e-3);
    }

    #[test]
    fn clearly_greater_is_significant() {
        let a: Vec<f64> = (0..20).map(|i| 10.0 + i as f64 * 0.1).collect();
        let b: Vec<f64> = (0..20).map(|i| 2.0 + i as f64 * 0.1).collect();
        let r = mann_whitney_greater(&a, &b).unwrap();
        assert!(r.p_greater < 1e-6, "{r:?}");
        let r = mann_whitney_greater(&b, &a).unwrap();
        assert!(r.p_greater > 0.99, "{r:?}");
    }

    #[test]
    fn same_distribution_is_not_significant() {
        let a: Vec<f64> = (0..30).map(|i| (i * 7 % 11) as f64).collect();
        let b: Vec<f64> = (0..30).map(|i| (i * 5 % 11) as f64).collect();
        let r = mann_whitney_greater(&a, &b).unwrap();
        assert!(r.p_greater > 0.1, "{r:?}");
    }

    #[test]
    fn textbook_u() {
        // Classic example: U for a = {1,2,3}, b = {4,5,6} is 0; reversed it is 9.
        let r = mann_whitney_greater(&[4.0, 5.0, 6.0], &[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(r.u, 9.0);
        let r = mann_whitney_greater(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap();
        assert_eq!(r.u, 0.0);
    }

    #[test]
    fn degenerate_inputs() {
        assert!(mann_whitney_greater(&[], &[1.0]).is_none());
        assert!(mann_whitney_greater(&[0.0; 10], &[0.0; 10]).is_none());
    }
}
