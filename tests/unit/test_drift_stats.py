"""The drift statistics equal scipy/numpy reference computations on fixed data (to 1e-9)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special
from scipy import stats as sps
from scipy.spatial import distance

from ferry.drift import stats

TOLERANCE = 1e-9


def samples(n1: int, n2: int, seed: int, shift: float = 0.0, scale: float = 1.0, ties: bool = False):
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=n1)
    cur = rng.normal(loc=shift, scale=scale, size=n2)
    if ties:  # rounded values: many equal values inside and across the samples
        ref, cur = np.round(ref, 1), np.round(cur, 1)
    return np.sort(ref), np.sort(cur)


CASES = [
    pytest.param(300, 200, 1, 0.0, 1.0, False, id="small-same"),
    pytest.param(800, 950, 2, 0.3, 1.0, False, id="small-shift"),
    pytest.param(500, 700, 3, 0.0, 1.0, True, id="small-ties"),
    pytest.param(20_000, 15_000, 4, 0.1, 1.3, False, id="large-asymptotic"),
    pytest.param(12_000, 30_000, 5, 0.0, 1.0, True, id="large-ties"),
    pytest.param(7, 5, 6, 1.0, 1.0, False, id="tiny"),
    pytest.param(20_000, 20_000, 8, 0.2, 1.1, False, id="equal-sizes"),
    pytest.param(3000, 3000, 9, 0.0, 1.0, True, id="equal-sizes-ties"),
]


@pytest.mark.parametrize(("n1", "n2", "seed", "shift", "scale", "ties"), CASES)
def test_ks_and_wasserstein_equal_scipy(n1, n2, seed, shift, scale, ties):
    ref, cur = samples(n1, n2, seed, shift, scale, ties)
    result = stats.compare_numeric(ref, cur)
    expected = sps.ks_2samp(ref, cur)
    assert result.ks_statistic == pytest.approx(expected.statistic, abs=TOLERANCE)
    assert result.ks_pvalue == pytest.approx(expected.pvalue, abs=TOLERANCE)
    assert result.wasserstein == pytest.approx(sps.wasserstein_distance(ref, cur), abs=TOLERANCE)
    assert result.wasserstein_norm == pytest.approx(
        sps.wasserstein_distance(ref, cur) / max(np.std(ref), 1e-3), abs=TOLERANCE)
    assert result.reference_std == pytest.approx(np.std(ref), abs=TOLERANCE)
    assert result.current_mean == pytest.approx(np.mean(cur), abs=TOLERANCE)


@pytest.mark.parametrize(("n1", "n2", "seed", "shift", "scale", "ties"), CASES)
def test_psi_equals_numpy_histogram_on_reference_deciles(n1, n2, seed, shift, scale, ties):
    ref, cur = samples(n1, n2, seed, shift, scale, ties)
    inner = np.unique(np.quantile(ref, np.linspace(0, 1, 11)[1:-1]))
    low, high = min(ref.min(), cur.min()) - 1, max(ref.max(), cur.max()) + 1
    edges = np.concatenate(([low], inner, [high]))
    r = np.maximum(np.histogram(ref, edges)[0] / ref.size, 1e-4)
    c = np.maximum(np.histogram(cur, edges)[0] / cur.size, 1e-4)
    expected = np.sum((c - r) * np.log(c / r))
    assert stats.compare_numeric(ref, cur).psi == pytest.approx(expected, abs=TOLERANCE)


@pytest.mark.parametrize(("n1", "n2", "seed", "shift", "scale", "ties"), CASES)
def test_numeric_jensen_shannon_equals_scipy_on_shared_histogram(n1, n2, seed, shift, scale, ties):
    ref, cur = samples(n1, n2, seed, shift, scale, ties)
    result = stats.compare_numeric(ref, cur)
    edges = np.histogram_bin_edges(np.concatenate((ref, cur)), bins=30)
    assert np.allclose(result.histogram_edges, edges, rtol=0, atol=1e-12)
    r, c = np.histogram(ref, edges)[0], np.histogram(cur, edges)[0]
    assert result.reference_histogram == r.tolist()
    assert result.current_histogram == c.tolist()
    assert result.jensen_shannon == pytest.approx(distance.jensenshannon(r, c), abs=TOLERANCE)


def random_pair(rng, trial: int) -> tuple[np.ndarray, np.ndarray]:
    """Small samples of every shape the KS blocks meet: one or several blocks, equal sizes,
    sizes sharing a factor, and ties within and across the samples."""
    n1, n2 = (int(n) for n in rng.integers(1, 700, size=2))
    if trial % 5 == 0:
        n2 = n1
    shape = trial % 4
    if shape == 0:
        ref, cur = rng.normal(size=n1), rng.normal(rng.normal() * 0.3, 1.0, size=n2)
    elif shape == 1:
        ref, cur = rng.integers(0, 5, n1).astype(float), rng.integers(0, 6, n2).astype(float)
    elif shape == 2:
        ref = rng.normal(size=n1)
        cur = rng.choice(ref, n2)
    else:
        ref, cur = np.round(rng.normal(size=n1), 1), np.round(rng.normal(0.1, 1.0, size=n2), 1)
    return np.sort(ref), np.sort(cur)


def test_ks_and_wasserstein_equal_scipy_on_many_small_samples():
    rng = np.random.default_rng(12)
    for trial in range(400):
        ref, cur = random_pair(rng, trial)
        assert stats.ks_statistic(ref, cur) == pytest.approx(
            sps.ks_2samp(ref, cur).statistic, abs=TOLERANCE), (trial, ref.size, cur.size)
        assert stats.wasserstein_distance(ref, cur) == pytest.approx(
            sps.wasserstein_distance(ref, cur), abs=TOLERANCE), (trial, ref.size, cur.size)


@pytest.mark.parametrize(("n", "n_x_squared"), [
    (n, n_x_squared) for n in (141, 3000, 20_000, 100_000)
    for n_x_squared in (2.2, 2.5, 4.0, 30.0, 360.0) if n_x_squared / n < 0.25])  # x < 0.5
def test_smirnov_tail_equals_scipy(n, n_x_squared):
    x = math.sqrt(n_x_squared / n)
    assert stats.smirnov_tail(n, x) == pytest.approx(special.smirnov(n, x), rel=1e-8)


@pytest.mark.parametrize("statistic", [0.01025, math.sqrt(2.2 / 20_000), 0.0105, 0.02, 0.137, 0.3])
def test_ks_pvalue_of_large_samples_equals_scipy(statistic):
    sample = np.zeros(40_000)  # above the exact method's size only the sizes count
    expected = sps.kstwo.sf(statistic, 20_000)
    assert stats.ks_pvalue(sample, sample, statistic) == pytest.approx(expected, rel=1e-8)


def test_identical_samples_have_zero_distance():
    ref, _ = samples(1000, 10, 7)
    result = stats.compare_numeric(ref, ref.copy())
    assert result.ks_statistic == 0 and result.wasserstein == 0 and result.psi == 0
    assert result.ks_pvalue == pytest.approx(1.0)


REFERENCE = {"DE": 120, "FR": 80, "NL": 40, "US": 260}
CURRENT_CASES = [
    pytest.param({"DE": 100, "FR": 90, "NL": 30, "US": 280}, id="same-categories"),
    pytest.param({"DE": 50, "FR": 90, "US": 200, "XX": 60}, id="new-and-missing-category"),
    pytest.param({"DE": 12, "FR": 8, "NL": 4, "US": 26}, id="proportional"),
]


@pytest.mark.parametrize("current", CURRENT_CASES)
def test_categorical_statistics_equal_scipy(current):
    result = stats.compare_categorical(REFERENCE, current)
    keys = result.categories
    table = np.array([[REFERENCE.get(k, 0) for k in keys], [current.get(k, 0) for k in keys]])
    chi2, p, _, _ = sps.chi2_contingency(table, correction=False)
    assert result.chi_square == pytest.approx(chi2, abs=TOLERANCE)
    assert result.chi_square_pvalue == pytest.approx(p, abs=TOLERANCE)
    assert result.jensen_shannon == pytest.approx(distance.jensenshannon(table[0], table[1]),
                                                  abs=TOLERANCE)
    r = np.maximum(table[0] / table[0].sum(), 1e-4)
    c = np.maximum(table[1] / table[1].sum(), 1e-4)
    assert result.psi == pytest.approx(np.sum((c - r) * np.log(c / r)), abs=TOLERANCE)
    assert result.reference_counts == table[0].tolist()


def test_new_categories_and_their_share():
    result = stats.compare_categorical(REFERENCE, {"DE": 50, "FR": 90, "US": 200, "XX": 60})
    assert result.new_categories == ["XX"]
    assert result.new_category_share == pytest.approx(60 / 400)
    assert result.categories[0] == "US"  # most frequent in the reference first


def test_single_category_is_homogeneous():
    assert stats.chi_square(np.array([10]), np.array([4])) == (0.0, 1.0)
