"""Exact drift statistics on one column, pure numpy/scipy.

Numeric columns arrive as **sorted** float64 arrays without nulls; a column costs their two sorts
and a few passes over them, not a sort or merge per statistic. The results equal scipy's
``ks_2samp``, ``wasserstein_distance``, ``chi2_contingency(correction=False)`` and
``spatial.distance.jensenshannon`` (tests hold them to 1e-9). Categorical columns arrive as
``{value: count}`` maps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special
from scipy import stats as sps

# Proportions below this are floored before PSI's logarithm (the usual convention, as Evidently).
PSI_FLOOR = 1e-4
PSI_BINS = 10
HISTOGRAM_BINS = 30
# Evidently's floor for the reference std when normalising the Wasserstein distance.
STD_FLOOR = 1e-3
# scipy's ks_2samp computes the exact p-value up to this sample size, the asymptotic one above.
KS_EXACT_MAX_N = 10_000
# For n = round(n1 n2 / (n1 + n2)) in this range and n x^2 in this band, scipy's kstwo.sf answers
# twice the one-sided Smirnov tail, summed term by term: about a second at n = 500000.
SMIRNOV_MIN_N, SMIRNOV_MAX_N = 140, 1_000_000
SMIRNOV_BAND = (2.2, 370.0)
# Current values per block whose KS bound is checked before its values are searched one by one.
KS_BLOCK = 64


@dataclass(frozen=True)
class NumericComparison:
    ks_statistic: float
    ks_pvalue: float
    wasserstein: float
    wasserstein_norm: float      # Wasserstein / max(reference std, 1e-3)
    psi: float                   # on reference decile bins
    jensen_shannon: float        # on HISTOGRAM_BINS equal-width bins over both samples
    histogram_edges: list[float]
    reference_histogram: list[int]
    current_histogram: list[int]
    reference_mean: float
    current_mean: float
    reference_std: float
    current_std: float


@dataclass(frozen=True)
class CategoricalComparison:
    chi_square: float
    chi_square_pvalue: float
    jensen_shannon: float
    psi: float
    categories: list[str]            # union, most frequent in the reference first
    reference_counts: list[int]
    current_counts: list[int]
    new_categories: list[str]        # in current, never seen in the reference
    new_category_share: float        # share of current rows with an unseen category


def ks_pvalue(reference: np.ndarray, current: np.ndarray, statistic: float) -> float:
    """Two-sided p-value as ``scipy.stats.ks_2samp(method='auto')`` computes it: the exact
    distribution for small samples (scipy itself is cheap there), above them ``kstwo`` at
    n = n1 n2 / (n1 + n2), whose slow band is summed here at once (``smirnov_tail``)."""
    n1, n2 = reference.size, current.size
    if max(n1, n2) <= KS_EXACT_MAX_N:
        return float(sps.ks_2samp(reference, current).pvalue)
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = np.round(m * n / (m + n))
    if SMIRNOV_MIN_N < en <= SMIRNOV_MAX_N and statistic < 0.5 \
            and SMIRNOV_BAND[0] <= en * statistic * statistic < SMIRNOV_BAND[1]:
        return float(np.clip(2 * smirnov_tail(int(en), statistic), 0, 1))
    return float(np.clip(sps.kstwo.sf(statistic, en), 0, 1))


def smirnov_tail(n: int, x: float) -> float:
    """P(D+_n >= x), the one-sided Smirnov tail, by the Birnbaum-Tingey sum over j of
    C(n, j) (1 - x - j/n)^(n-j) (x + j/n)^(j-1), times x. scipy adds its terms one at a time in
    double-double; in float64 logarithms, all at once, the sum agrees to about 1e-9 relative. The
    last term (at most 1/(nx)!, below 1e-15 in the band) is left out so that no base reaches 0."""
    j = np.arange(n - math.floor(n * x) - 1, dtype=np.float64)
    reach = x + j / n
    log_terms = special.gammaln(n + 1) - special.gammaln(j + 1) - special.gammaln(n - j + 1)
    log_terms += (n - j) * np.log1p(-reach)
    log_terms += (j - 1) * np.log(reach)
    return float(x * np.exp(log_terms).sum())


def _bin_counts(sorted_values: np.ndarray, inner_edges: np.ndarray) -> np.ndarray:
    """Counts in the bins (-inf, e1), [e1, e2), ..., [ek, inf) of a sorted sample."""
    cuts = np.searchsorted(sorted_values, inner_edges, side="left")
    return np.diff(np.concatenate(([0], cuts, [sorted_values.size])))


def psi_from_counts(reference: np.ndarray, current: np.ndarray, floor: float = PSI_FLOOR) -> float:
    """Population stability index sum((c - r) * ln(c / r)) over bin proportions."""
    ref = np.maximum(reference / max(reference.sum(), 1), floor)
    cur = np.maximum(current / max(current.sum(), 1), floor)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def jensen_shannon(p_counts: np.ndarray, q_counts: np.ndarray) -> float:
    """Jensen–Shannon distance (natural log, as scipy's default and Evidently's threshold 0.1)."""
    p = p_counts / p_counts.sum()
    q = q_counts / q_counts.sum()
    m = (p + q) / 2.0
    divergence = (special.rel_entr(p, m).sum() + special.rel_entr(q, m).sum()) / 2.0
    return float(np.sqrt(max(divergence, 0.0)))


def sorted_quantiles(sorted_values: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """``np.quantile(values, probabilities)`` (linear method) on an already sorted sample, without
    numpy's O(n) partition: the same interpolation formula, so the same floats."""
    virtual = probabilities * (sorted_values.size - 1)
    below = np.floor(virtual).astype(np.intp)
    above = np.minimum(below + 1, sorted_values.size - 1)
    weight = virtual - below
    low, high = sorted_values[below], sorted_values[above]
    difference = high - low
    return np.where(weight >= 0.5, high - difference * (1 - weight), low + difference * weight)


def psi_inner_edges(reference_sorted: np.ndarray, bins: int = PSI_BINS) -> np.ndarray:
    """Inner edges of the reference quantile bins (duplicates from ties removed)."""
    return np.unique(sorted_quantiles(reference_sorted, np.linspace(0, 1, bins + 1)[1:-1]))


def histogram_edges(reference_sorted: np.ndarray, current_sorted: np.ndarray,
                    bins: int = HISTOGRAM_BINS) -> np.ndarray:
    low = min(reference_sorted[0], current_sorted[0])
    high = max(reference_sorted[-1], current_sorted[-1])
    return np.histogram_bin_edges([low, high], bins=bins)


def ks_statistic(reference_sorted: np.ndarray, current_sorted: np.ndarray) -> float:
    """sup |F_ref - F_cur|, with a binary search for few of the current values.

    F_ref - F_cur rises at reference values and falls at current ones, so its maximum is reached
    just below a current value (``rises``: reference values strictly below it) and its minimum at
    one (``falls``: reference values at or below it), in exact integer counts (units of
    1/lcm(n1, n2)). The counts never decrease along the sorted current values, so those at the
    ends of a block of ``KS_BLOCK`` values bound the whole block: only blocks whose bound beats
    the best value at the block ends are searched value by value.
    """
    ref, cur = reference_sorted, current_sorted
    n1, n2 = ref.size, cur.size
    common = math.gcd(n1, n2)
    reference_unit, current_unit = n2 // common, n1 // common  # 1/n1 and 1/n2 in those units
    starts = np.arange(0, n2, KS_BLOCK)
    ends = np.minimum(starts + KS_BLOCK - 1, n2 - 1)
    below_end = np.searchsorted(ref, cur[ends], side="left") * reference_unit
    at_or_below_start = np.searchsorted(ref, cur[starts], side="right") * reference_unit
    rises = int((below_end - ends * current_unit).max())
    falls = int(((starts + 1) * current_unit - at_or_below_start).max())
    open_blocks = ((below_end - starts * current_unit > rises)
                   | ((ends + 1) * current_unit - at_or_below_start > falls))
    if open_blocks.any():
        index = (starts[open_blocks, None] + np.arange(KS_BLOCK)).ravel()
        index = index[index < n2]
        values = cur[index]
        below = np.searchsorted(ref, values, side="left") * reference_unit
        rises = max(rises, int((below - index * current_unit).max()))
        at_or_below = np.searchsorted(ref, values, side="right") * reference_unit
        falls = max(falls, int(((index + 1) * current_unit - at_or_below).max()))
    return max(rises, falls) / (n1 * reference_unit)


def wasserstein_distance(reference_sorted: np.ndarray, current_sorted: np.ndarray) -> float:
    """The integral of |F_ref - F_cur| dx, computed as the equal integral of |Q_ref - Q_cur| du
    over quantiles: their steps sit at multiples of 1/n, so the samples pair up by index
    arithmetic instead of a merge."""
    larger, smaller = sorted((reference_sorted, current_sorted), key=len, reverse=True)
    if larger.size == smaller.size:
        distances = larger - smaller
        np.abs(distances, out=distances)
        return float(distances.mean())
    # Each quantile step of the larger sample overlaps one step of the smaller sample, or two.
    common = math.gcd(larger.size, smaller.size)
    step, smaller_step = smaller.size // common, larger.size // common  # widths in 1/lcm
    start = np.arange(0, larger.size * step, step)
    paired = start // smaller_step
    share = (paired + 1) * smaller_step
    share -= start
    np.minimum(share, step, out=share)
    total = np.dot(share, np.abs(larger - smaller[paired]))
    # The rest of the step lies in the next step of the smaller sample (none after its last).
    np.subtract(step, share, out=share)
    paired += 1
    np.minimum(paired, smaller.size - 1, out=paired)
    total += np.dot(share, np.abs(larger - smaller[paired]))
    return float(total) / (larger.size * step)


def compare_numeric(reference_sorted: np.ndarray, current_sorted: np.ndarray,
                    psi_bins: int = PSI_BINS) -> NumericComparison:
    """All numeric statistics of two sorted, non-empty, NaN-free samples."""
    ref, cur = reference_sorted, current_sorted
    ks = ks_statistic(ref, cur)
    wasserstein = wasserstein_distance(ref, cur)
    reference_std = float(np.std(ref))

    psi_edges = psi_inner_edges(ref, psi_bins)
    edges = histogram_edges(ref, cur)
    ref_hist, cur_hist = _bin_counts(ref, edges[1:-1]), _bin_counts(cur, edges[1:-1])
    return NumericComparison(
        ks_statistic=ks, ks_pvalue=ks_pvalue(ref, cur, ks),
        wasserstein=wasserstein, wasserstein_norm=wasserstein / max(reference_std, STD_FLOOR),
        psi=psi_from_counts(_bin_counts(ref, psi_edges), _bin_counts(cur, psi_edges)),
        jensen_shannon=jensen_shannon(ref_hist, cur_hist),
        histogram_edges=edges.tolist(), reference_histogram=ref_hist.tolist(),
        current_histogram=cur_hist.tolist(),
        reference_mean=float(ref.mean()), current_mean=float(cur.mean()),
        reference_std=reference_std, current_std=float(np.std(cur)))


def chi_square(reference_counts: np.ndarray, current_counts: np.ndarray) -> tuple[float, float]:
    """Chi-square test of homogeneity on the 2×k contingency table (no Yates correction).

    A contingency test rather than a goodness-of-fit against reference frequencies, so a category
    the reference never saw gives a finite statistic instead of a division by zero.
    """
    table = np.vstack((reference_counts, current_counts)).astype(float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    return statistic, float(sps.chi2.sf(statistic, table.shape[1] - 1))


def compare_categorical(reference: dict[str, int], current: dict[str, int]) -> CategoricalComparison:
    """Statistics over the union of categories; both maps must have a positive total."""
    categories = sorted(set(reference) | set(current),
                        key=lambda value: (-reference.get(value, 0), -current.get(value, 0),
                                           str(value)))
    ref = np.array([reference.get(value, 0) for value in categories], dtype=np.int64)
    cur = np.array([current.get(value, 0) for value in categories], dtype=np.int64)
    new = [value for value in categories if value not in reference]
    statistic, pvalue = chi_square(ref, cur)
    return CategoricalComparison(
        chi_square=statistic, chi_square_pvalue=pvalue, jensen_shannon=jensen_shannon(ref, cur),
        psi=psi_from_counts(ref, cur), categories=[str(value) for value in categories],
        reference_counts=ref.tolist(), current_counts=cur.tolist(),
        new_categories=[str(value) for value in new],
        new_category_share=float(sum(current[value] for value in new) / max(cur.sum(), 1)))
