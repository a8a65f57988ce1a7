"""The statistics of an experiment, with the standard library only (the operator has no scipy).

- **Sample-ratio mismatch**: Pearson's chi-square of the assigned counts against the weights;
  the survival function is the regularized upper incomplete gamma ``Q(df/2, x/2)``, by its series
  below ``a + 1`` and Lentz's continued fraction above (Numerical Recipes §6.2), to ~1e-13.
- **Sequential test (mSPRT)**: the mixture sequential probability ratio test of Johari, Pekelis
  and Walsh, *Always Valid Inference* (2017), for a difference of means with a normal mixture
  ``N(0, tau²)`` over the effect. With ``V = s_c²/n_c + s_t²/n_t`` the variance of the
  difference ``d``, the likelihood ratio of an effect ``theta`` is
  ``sqrt(V / (V + tau²)) · exp(tau² (d - theta)² / (2 V (V + tau²)))``; its inverse at ``theta = 0`` is a
  p-value that stays valid however often it is looked at (Ville's inequality), and the effects it
  keeps below ``1/alpha`` are an always-valid confidence interval. ``tau`` is the minimum
  detectable effect: the paper's advice is to centre the mixture on the effects worth finding.
- **Fixed horizon**: Welch's unequal-variance test in its normal (z) form, with the sample size
  per variant that gives ``power`` at the minimum detectable effect. The z form is what the
  sample-size formula assumes; at the hundreds or more samples a horizon needs, Student's t
  differs from it in the third decimal of the p-value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

EPSILON = 1e-15
TINY = 1e-300
MAX_ITERATIONS = 10_000
POWER = 0.8
STANDARD_NORMAL = NormalDist()


@dataclass(frozen=True)
class Summary:
    """A variant's metric samples as count, mean and sample variance (n - 1)."""

    n: int
    mean: float
    variance: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Summary:
        """Welford's one pass: no catastrophic cancellation for large means."""
        n, mean, squares = 0, 0.0, 0.0
        for value in values:
            n += 1
            delta = value - mean
            mean += delta / n
            squares += delta * (value - mean)
        return cls(n, mean if n else math.nan, squares / (n - 1) if n > 1 else math.nan)


def summarize(rows: Iterable[tuple[str, float]], aggregation: str) -> Summary:
    """The metric samples of one variant from its ``(user, outcome)`` rows: the outcomes
    (``mean``) or each user's mean outcome (``userMean``: one sample per randomised unit, so
    correlated outcomes of one user do not pass for independent evidence)."""
    if aggregation == "mean":
        return Summary.of(outcome for _, outcome in rows)
    totals: dict[str, list[float]] = {}
    for user, outcome in rows:
        total = totals.setdefault(user, [0.0, 0])
        total[0] += outcome
        total[1] += 1
    return Summary.of(total / count for total, count in totals.values())


# --- sample-ratio mismatch -----------------------------------------------------------------------

def regularized_upper_gamma(a: float, x: float) -> float:
    """Q(a, x) = Γ(a, x) / Γ(a)."""
    if a <= 0:
        raise ValueError("a must be positive")
    if x <= 0:
        return 1.0
    log_prefix = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        denominator = a
        for _ in range(MAX_ITERATIONS):
            denominator += 1
            term *= x / denominator
            total += term
            if abs(term) < abs(total) * EPSILON:
                break
        return max(0.0, 1.0 - total * math.exp(log_prefix))
    b = x + 1 - a
    c, d = 1 / TINY, 1 / b
    fraction = d
    for i in range(1, MAX_ITERATIONS):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = TINY if abs(d) < TINY else d
        c = b + an / c
        c = TINY if abs(c) < TINY else c
        d = 1 / d
        step = d * c
        fraction *= step
        if abs(step - 1) < EPSILON:
            break
    return math.exp(log_prefix) * fraction


def chi_square_sf(statistic: float, df: int) -> float:
    """P(X >= statistic) for X ~ chi-square(df)."""
    return regularized_upper_gamma(df / 2, statistic / 2)


@dataclass(frozen=True)
class RatioCheck:
    statistic: float
    p_value: float
    expected: tuple[float, ...]


def sample_ratio_mismatch(observed: Sequence[int], weights: Sequence[float]) -> RatioCheck:
    """Pearson's goodness-of-fit of assigned counts to the weights (df = variants - 1)."""
    total, weight = sum(observed), sum(weights)
    expected = tuple(total * w / weight for w in weights)
    if total == 0:
        return RatioCheck(0.0, 1.0, expected)
    statistic = sum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True))
    return RatioCheck(statistic, chi_square_sf(statistic, len(observed) - 1), expected)


# --- comparisons of a treatment with the control -------------------------------------------------

@dataclass(frozen=True)
class Comparison:
    """Treatment minus control: the difference, its confidence interval and the p-value of no
    difference (two-sided)."""

    difference: float
    lower: float
    upper: float
    p_value: float


def _variance_of_difference(control: Summary, treatment: Summary) -> float:
    return control.variance / control.n + treatment.variance / treatment.n


def _degenerate(difference: float) -> Comparison:
    """No variance in either sample: the difference is exact, so it either is 0 or is certain."""
    return Comparison(difference, difference, difference, 1.0 if difference == 0 else 0.0)


def msprt(control: Summary, treatment: Summary, tau: float, alpha: float) -> Comparison:
    """Always-valid p-value and confidence interval (level ``1 - alpha``) of the difference."""
    difference = treatment.mean - control.mean
    v = _variance_of_difference(control, treatment)
    if v <= 0:
        return _degenerate(difference)
    spread = v + tau ** 2
    log_ratio = 0.5 * math.log(v / spread) + tau ** 2 * difference ** 2 / (2 * v * spread)
    p_value = math.exp(-log_ratio) if log_ratio > 0 else 1.0
    half_width = math.sqrt(v * spread / tau ** 2 * (2 * math.log(1 / alpha) + math.log(spread / v)))
    return Comparison(difference, difference - half_width, difference + half_width, p_value)


def welch_z(control: Summary, treatment: Summary, alpha: float) -> Comparison:
    """Fixed-horizon test of the difference (normal form of Welch's test)."""
    difference = treatment.mean - control.mean
    v = _variance_of_difference(control, treatment)
    if v <= 0:
        return _degenerate(difference)
    se = math.sqrt(v)
    half_width = STANDARD_NORMAL.inv_cdf(1 - alpha / 2) * se
    p_value = math.erfc(abs(difference) / se / math.sqrt(2))
    return Comparison(difference, difference - half_width, difference + half_width, p_value)


def required_samples(control_variance: float, treatment_variance: float, effect: float,
                     alpha: float, power: float = POWER) -> int:
    """Samples per variant for a two-sided test at ``alpha`` to find ``effect`` with ``power``."""
    z = STANDARD_NORMAL.inv_cdf(1 - alpha / 2) + STANDARD_NORMAL.inv_cdf(power)
    return math.ceil(z ** 2 * (control_variance + treatment_variance) / effect ** 2)
