"""Rollout analysis (pure): which PromQL to run for a candidate, and what the answers mean.

Default templates look at the metrics of Ferry's model server for one model version:
``errorRate`` (share of 5xx among prediction requests), ``latencyP99`` (p99 of the request
duration histogram) and ``predictionDrift`` (Jensen–Shannon distance or PSI between the
candidate's and the stable version's prediction histograms over the same interval). No data (no
requests in the window, or no series at all) is Inconclusive, never a pass.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from string import Template

from ferry.adapters.prometheus import Sample
from ferry.api.inferenceservice import Analysis

OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
# Health probes and scrapes are requests too; only prediction traffic counts (route templates).
PREDICTION_ROUTES = 'route=~"/invocations|/v2/models/.+/infer"'
EPSILON = 1e-6


@dataclass(frozen=True)
class Target:
    """The version under analysis and the stable version it is compared with."""

    namespace: str
    service: str
    model: str
    version: str
    stable_version: str | None
    interval: str


@dataclass(frozen=True)
class Check:
    name: str
    queries: tuple[str, ...]
    op: str
    threshold: float
    drift_method: str | None = None  # set for predictionDrift: queries = (candidate, stable)


def selector(target: Target, version: str) -> str:
    return f'namespace="{target.namespace}",model="{target.model}",version="{version}"'


def error_rate_query(target: Target) -> str:
    labels = f"{selector(target, target.version)},{PREDICTION_ROUTES}"
    window = target.interval
    return (f'(sum(rate(ferry_serve_requests_total{{{labels},code=~"5.."}}[{window}])) or vector(0))'
            f" / sum(rate(ferry_serve_requests_total{{{labels}}}[{window}]))")


def latency_p99_query(target: Target) -> str:
    labels = f"{selector(target, target.version)},{PREDICTION_ROUTES}"
    return ("histogram_quantile(0.99, sum by (le) "
            f"(rate(ferry_serve_request_duration_seconds_bucket{{{labels}}}[{target.interval}])))")


def prediction_histogram_query(target: Target, version: str) -> str:
    return ("sum by (le) (increase(ferry_serve_prediction_value_bucket"
            f"{{{selector(target, version)}}}[{target.interval}]))")


def render(query: str, target: Target) -> str:
    return Template(query).safe_substitute(
        namespace=target.namespace, service=target.service, model=target.model,
        version=target.version, stableVersion=target.stable_version or "",
        interval=target.interval)


def checks(analysis: Analysis, target: Target) -> list[Check]:
    found = []
    if "errorRate" in analysis.templates:
        found.append(Check("errorRate", (error_rate_query(target),), "<=", analysis.max_error_rate))
    if "latencyP99" in analysis.templates:
        found.append(Check("latencyP99", (latency_p99_query(target),), "<=",
                           analysis.max_latency_p99_seconds))
    for query in analysis.queries:
        found.append(Check(query.name, (render(query.query, target),), query.op, query.threshold))
    if analysis.prediction_drift is not None and target.stable_version:
        drift = analysis.prediction_drift
        found.append(Check("predictionDrift", (
            prediction_histogram_query(target, target.version),
            prediction_histogram_query(target, target.stable_version)), "<=", drift.threshold,
            drift_method=drift.method))
    return found


def bucket_shares(samples: list[Sample]) -> dict[float, float]:
    """Per-bucket counts from cumulative ``le`` buckets; empty when nothing was observed."""
    cumulative = sorted((float(s.labels["le"]), s.value) for s in samples if "le" in s.labels)
    shares, below = {}, 0.0
    for bound, count in cumulative:
        shares[bound] = max(count - below, 0.0)
        below = max(count, below)
    return shares if below > 0 else {}


def _distributions(candidate: dict[float, float], stable: dict[float, float]):
    bounds = sorted(set(candidate) | set(stable))
    p_total, q_total = sum(candidate.values()), sum(stable.values())
    p = [candidate.get(b, 0.0) / p_total for b in bounds]
    q = [stable.get(b, 0.0) / q_total for b in bounds]
    return p, q


def jensen_shannon(candidate: dict[float, float], stable: dict[float, float]) -> float:
    """Jensen–Shannon distance (base 2, so 0..1) between two histograms."""
    p, q = _distributions(candidate, stable)

    def kl(a, b):
        return sum(x * math.log2(x / y) for x, y in zip(a, b, strict=True) if x > 0)

    m = [(x + y) / 2 for x, y in zip(p, q, strict=True)]
    return math.sqrt(max((kl(p, m) + kl(q, m)) / 2, 0.0))


def psi(candidate: dict[float, float], stable: dict[float, float]) -> float:
    """Population Stability Index of the candidate against the stable (empty bins smoothed)."""
    p, q = _distributions(candidate, stable)
    return sum((x - y) * math.log(max(x, EPSILON) / max(y, EPSILON)) for x, y in zip(p, q, strict=True))


def result(check: Check, verdict: str, now: str, version: str, value: float | None = None,
           message: str = "") -> dict:
    found = {"name": check.name, "verdict": verdict, "threshold": check.threshold,
             "op": check.op, "time": now, "version": version}
    if value is not None:
        found["value"] = round(value, 6)
    if message:
        found["message"] = message[:1024]
    return found


def evaluate(check: Check, answers: list[list[Sample]] | Exception, now: str,
             version: str) -> dict:
    """One AnalysisResult from the query answers (or the error that prevented them)."""
    if isinstance(answers, Exception):
        return result(check, "Inconclusive", now, version,
                      message=f"Prometheus unavailable: {answers}")
    if check.drift_method:
        candidate, stable = (bucket_shares(a) for a in answers)
        if not candidate or not stable:
            return result(check, "Inconclusive", now, version,
                          message="no predictions from " + ("the candidate" if not candidate
                                                            else "the stable version"))
        value = (jensen_shannon if check.drift_method == "jensenShannon" else psi)(
            candidate, stable)
    else:
        if not answers[0]:
            return result(check, "Inconclusive", now, version, message="no data")
        value = answers[0][0].value
    verdict = "Passed" if OPS[check.op](value, check.threshold) else "Failed"
    return result(check, verdict, now, version, value)


def overall(results: list[dict]) -> str:
    """Failed beats Inconclusive beats Passed; no checks at all is a pass."""
    verdicts = {r["verdict"] for r in results}
    if "Failed" in verdicts:
        return "Failed"
    if "Inconclusive" in verdicts:
        return "Inconclusive"
    return "Passed"


def describe_failures(results: list[dict]) -> str:
    return "; ".join(
        f"{r['name']} = {r['value']:g} (want {r['op']} {r['threshold']:g})" if "value" in r
        else f"{r['name']}: {r.get('message', r['verdict'])}"
        for r in results if r["verdict"] != "Passed")
