"""The experiment statistics against scipy, known values and simulation: the chi-square survival
function and the SRM check equal scipy's, the fixed-horizon test and its sample size deliver their
alpha and power, and the mSPRT p-value stays valid under continuous peeking while a naive
repeated z-test does not."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special
from scipy import stats as sps

from ferry.experiments import stats
from ferry.experiments.stats import Summary


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 7, 10, 30, 100, 500])
def test_chi_square_sf_equals_scipy(df):
    for x in [0.0, 1e-6, 0.01, 0.5, 1, df - 1, df, df + 0.5, df + 1, 2 * df, df + 10 * math.sqrt(df),
              50, 200, 700, 1500]:
        x = max(x, 0.0)
        expected = sps.chi2.sf(x, df)
        assert stats.chi_square_sf(x, df) == pytest.approx(expected, rel=1e-11, abs=1e-300), (x, df)


def test_regularized_upper_gamma_equals_scipy_off_the_half_integers():
    for a in [0.1, 0.75, 2.3, 17.5, 123.4]:
        for x in [0.05, a / 2, a, a + 1, 3 * a, a + 40]:
            assert stats.regularized_upper_gamma(a, x) == pytest.approx(
                special.gammaincc(a, x), rel=1e-11, abs=1e-300)


@pytest.mark.parametrize("observed,weights", [
    ([5000, 5000], [50, 50]), ([5100, 4900], [50, 50]), ([4600, 2950, 2450], [50, 30, 20]),
    ([10, 990], [1, 99]), ([0, 800], [50, 50]), ([2010, 2003, 1987, 2040, 1960], [20] * 5)])
def test_sample_ratio_mismatch_equals_scipy_chisquare(observed, weights):
    check = stats.sample_ratio_mismatch(observed, weights)
    expected = [sum(observed) * w / sum(weights) for w in weights]
    reference = sps.chisquare(observed, expected)
    assert check.statistic == pytest.approx(reference.statistic, rel=1e-12)
    assert check.p_value == pytest.approx(reference.pvalue, rel=1e-10, abs=1e-300)
    assert check.expected == pytest.approx(expected)


def test_sample_ratio_mismatch_without_assignments_is_no_evidence():
    assert stats.sample_ratio_mismatch([0, 0], [50, 50]).p_value == 1.0


def test_summary_equals_numpy():
    values = np.random.default_rng(3).normal(1e6, 2.0, size=10_001)
    summary = Summary.of(values)
    assert summary.n == values.size
    assert summary.mean == pytest.approx(values.mean(), rel=1e-14)
    assert summary.variance == pytest.approx(values.var(ddof=1), rel=1e-9)


def test_user_mean_aggregates_each_user_first():
    rows = [("u1", 1.0), ("u1", 1.0), ("u1", 1.0), ("u2", 0.0)]
    assert stats.summarize(rows, "mean") == Summary(4, 0.75, 0.25)
    assert stats.summarize(rows, "userMean") == Summary(2, 0.5, 0.5)


def test_welch_z_equals_the_normal_form_and_is_close_to_scipys_welch_t():
    control, treatment = Summary(5000, 0.100, 0.09), Summary(5200, 0.112, 0.0994)
    found = stats.welch_z(control, treatment, 0.05)
    se = math.sqrt(0.09 / 5000 + 0.0994 / 5200)
    assert found.difference == pytest.approx(0.012)
    assert found.p_value == pytest.approx(2 * sps.norm.sf(0.012 / se), rel=1e-12)
    assert (found.lower, found.upper) == pytest.approx((0.012 - sps.norm.ppf(0.975) * se,
                                                        0.012 + sps.norm.ppf(0.975) * se), rel=1e-12)
    welch = sps.ttest_ind_from_stats(0.112, math.sqrt(0.0994), 5200, 0.1, math.sqrt(0.09), 5000,
                                     equal_var=False)
    assert found.p_value == pytest.approx(welch.pvalue, abs=1e-4)


def test_required_samples_is_the_textbook_value():
    """10% conversion, one point of lift (to 11%), alpha 0.05, power 0.8: the usual ~14 750."""
    n = stats.required_samples(0.1 * 0.9, 0.11 * 0.89, 0.01, 0.05)
    z = sps.norm.ppf(0.975) + sps.norm.ppf(0.8)
    assert n == math.ceil(z ** 2 * (0.09 + 0.0979) / 0.01 ** 2) == 14749


def bernoulli_summary(successes: np.ndarray, n: int) -> list[Summary]:
    means = successes / n
    return [Summary(n, float(m), float(m * (1 - m) * n / (n - 1))) for m in means]


def test_fixed_horizon_delivers_its_alpha_and_power():
    """At the computed horizon the z-test rejects about 80% of the time under the effect and 5%
    without it (exact binomial bounds at 1e-6)."""
    rng, reps, base, effect = np.random.default_rng(11), 4000, 0.3, 0.03
    n = stats.required_samples(base * (1 - base), (base + effect) * (1 - base - effect), effect, 0.05)
    control = bernoulli_summary(rng.binomial(n, base, reps), n)
    for shift, rate in ((effect, stats.POWER), (0.0, 0.05)):
        treatment = bernoulli_summary(rng.binomial(n, base + shift, reps), n)
        rejected = sum(stats.welch_z(c, t, 0.05).p_value < 0.05
                       for c, t in zip(control, treatment, strict=True))
        low, high = sps.binom.interval(1 - 1e-6, reps, rate)
        assert low <= rejected <= high, (shift, rejected, low, high)


def test_msprt_is_the_papers_formula_for_equal_samples():
    """Johari et al. (2017), two streams of n with variance sigma²: Λ = sqrt(2σ²/(2σ² + nτ²))
    · exp(n² τ² (Ȳ - X̄)² / (4σ² (2σ² + nτ²)))."""
    n, sigma2, tau, gap = 2000, 0.25, 0.05, 0.04
    found = stats.msprt(Summary(n, 0.5, sigma2), Summary(n, 0.5 + gap, sigma2), tau, 0.05)
    ratio = math.sqrt(2 * sigma2 / (2 * sigma2 + n * tau ** 2)) * math.exp(
        n ** 2 * tau ** 2 * gap ** 2 / (4 * sigma2 * (2 * sigma2 + n * tau ** 2)))
    assert found.p_value == pytest.approx(1 / ratio, rel=1e-12)


def test_msprt_interval_ends_where_the_ratio_reaches_one_over_alpha():
    control, treatment, tau, alpha = Summary(900, 0.2, 0.16), Summary(1100, 0.23, 0.177), 0.02, 0.05
    found = stats.msprt(control, treatment, tau, alpha)
    assert found.lower < found.difference < found.upper
    for edge in (found.lower, found.upper):
        shifted = Summary(treatment.n, treatment.mean - edge, treatment.variance)
        assert stats.msprt(control, shifted, tau, alpha).p_value == pytest.approx(alpha, rel=1e-9)
    assert (found.lower > 0) == (found.p_value < alpha)


def test_msprt_interval_is_wider_than_the_fixed_horizon_one():
    control, treatment = Summary(5000, 0.1, 0.09), Summary(5000, 0.11, 0.098)
    sequential, fixed = stats.msprt(control, treatment, 0.01, 0.05), stats.welch_z(control, treatment, 0.05)
    assert sequential.lower < fixed.lower and sequential.upper > fixed.upper
    assert sequential.p_value > fixed.p_value


def test_no_variance_makes_the_difference_certain():
    same, other = Summary(100, 1.0, 0.0), Summary(100, 0.0, 0.0)
    assert stats.msprt(same, same, 0.1, 0.05).p_value == 1.0
    assert stats.welch_z(same, other, 0.05) == stats.Comparison(-1.0, -1.0, -1.0, 0.0)


LOOK_EVERY, LOOKS, REPLICATIONS, BASE, TAU = 200, 50, 2000, 0.2, 0.02


def ever_rejected(test, shift: float, seed: int) -> int:
    """Replications in which ``test`` rejected at any of LOOKS looks, every LOOK_EVERY samples."""
    rng = np.random.default_rng(seed)
    control = rng.binomial(LOOK_EVERY, BASE, (REPLICATIONS, LOOKS)).cumsum(axis=1)
    treatment = rng.binomial(LOOK_EVERY, BASE + shift, (REPLICATIONS, LOOKS)).cumsum(axis=1)
    rejected = 0
    for c_row, t_row in zip(control, treatment, strict=True):
        for look in range(LOOKS):
            n = LOOK_EVERY * (look + 1)
            c, t = bernoulli_summary(np.array([c_row[look], t_row[look]]), n)
            if test(c, t).p_value < 0.05:
                rejected += 1
                break
    return rejected


def rate_bounds(rejected: int) -> tuple[float, float]:
    """Exact (Clopper-Pearson) 99.9% bounds of the rejection rate behind ``rejected``."""
    low = sps.beta.ppf(0.0005, rejected, REPLICATIONS - rejected + 1) if rejected else 0.0
    return low, sps.beta.ppf(0.9995, rejected + 1, REPLICATIONS - rejected)


def test_msprt_false_positives_stay_below_alpha_under_continuous_peeking():
    rejected = ever_rejected(lambda c, t: stats.msprt(c, t, TAU, 0.05), 0.0, seed=1)
    assert rate_bounds(rejected)[1] <= 0.05, rejected
    naive = ever_rejected(lambda c, t: stats.welch_z(c, t, 0.05), 0.0, seed=1)
    assert rate_bounds(naive)[0] > 0.05, f"peeking at a fixed-horizon test inflates alpha: {naive}"


def test_msprt_detects_a_real_effect():
    rejected = ever_rejected(lambda c, t: stats.msprt(c, t, TAU, 0.05), 0.03, seed=2)
    assert rejected >= 0.9 * REPLICATIONS, rejected
