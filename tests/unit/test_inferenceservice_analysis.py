"""Analysis queries and verdicts (pure)."""

from __future__ import annotations

import pytest

from ferry.adapters.prometheus import PrometheusUnavailable, Sample
from ferry.api.inferenceservice import Analysis
from ferry.controllers.inferenceservice import newest_approved, with_deletions
from ferry.reconcilers import analysis

TARGET = analysis.Target(namespace="team", service="fraud", model="fraud", version="3",
                         stable_version="2", interval="10s")


def test_default_templates_select_the_candidate_version():
    checks = {c.name: c for c in analysis.checks(Analysis(), TARGET)}
    assert set(checks) == {"errorRate", "latencyP99"}
    error_rate = checks["errorRate"].queries[0]
    assert 'version="3"' in error_rate and 'namespace="team"' in error_rate
    assert 'code=~"5.."' in error_rate and "or vector(0)" in error_rate and "[10s]" in error_rate
    assert checks["latencyP99"].queries[0].startswith("histogram_quantile(0.99")


def test_custom_queries_get_placeholders_and_drift_compares_both_versions():
    config = Analysis.model_validate({
        "templates": [], "predictionDrift": {"method": "psi", "threshold": 0.2},
        "queries": [{"name": "mean", "query": 'avg(x{version="$version",ns="$namespace"}'
                     '[$interval]) - avg(x{version="$stableVersion"})', "op": "<",
                     "threshold": 1}]})
    checks = {c.name: c for c in analysis.checks(config, TARGET)}
    assert checks["mean"].queries[0] == \
        'avg(x{version="3",ns="team"}[10s]) - avg(x{version="2"})'
    drift = checks["predictionDrift"]
    assert drift.drift_method == "psi" and 'version="3"' in drift.queries[0]
    assert 'version="2"' in drift.queries[1]


def test_verdicts():
    check = analysis.Check("errorRate", ("q",), "<=", 0.05)
    assert analysis.evaluate(check, [[Sample({}, 0.01)]], "t", "3")["verdict"] == "Passed"
    failed = analysis.evaluate(check, [[Sample({}, 0.5)]], "t", "3")
    assert failed["verdict"] == "Failed" and failed["value"] == 0.5
    assert analysis.evaluate(check, [[]], "t", "3")["verdict"] == "Inconclusive"
    down = analysis.evaluate(check, PrometheusUnavailable("refused"), "t", "3")
    assert down["verdict"] == "Inconclusive" and "refused" in down["message"]
    assert analysis.overall([failed, down]) == "Failed"
    assert analysis.overall([down]) == "Inconclusive"
    assert analysis.overall([]) == "Passed"
    assert "errorRate = 0.5 (want <= 0.05)" in analysis.describe_failures([failed])


def histogram(counts: dict[str, float]) -> list[Sample]:
    return [Sample({"le": le}, value) for le, value in counts.items()]


def test_bucket_shares_from_cumulative_buckets():
    shares = analysis.bucket_shares(histogram({"0.5": 10, "1": 30, "+Inf": 40}))
    assert shares == {0.5: 10, 1.0: 20, float("inf"): 10}
    assert analysis.bucket_shares(histogram({"0.5": 0, "+Inf": 0})) == {}


def test_jensen_shannon_and_psi():
    same = {0.5: 10, 1.0: 10}
    assert analysis.jensen_shannon(same, same) == pytest.approx(0)
    assert analysis.psi(same, same) == pytest.approx(0)
    disjoint = analysis.jensen_shannon({0.5: 10, 1.0: 0}, {0.5: 0, 1.0: 10})
    assert disjoint == pytest.approx(1.0)
    shifted = analysis.psi({0.5: 8, 1.0: 2}, {0.5: 2, 1.0: 8})
    assert shifted > 0.2


def test_prediction_drift_check():
    check = analysis.Check("predictionDrift", ("a", "b"), "<=", 0.1, drift_method="jensenShannon")
    same = histogram({"0.5": 5, "+Inf": 10})
    assert analysis.evaluate(check, [same, same], "t", "3")["verdict"] == "Passed"
    moved = histogram({"0.5": 10, "+Inf": 10})
    assert analysis.evaluate(check, [moved, histogram({"0.5": 0, "+Inf": 10})], "t",
                             "3")["verdict"] == "Failed"
    empty = histogram({"0.5": 0, "+Inf": 0})
    assert analysis.evaluate(check, [same, empty], "t", "3")["verdict"] == "Inconclusive"


def mv(name, model, version, approved):
    condition = {"type": "Approved", "status": "True" if approved else "False"}
    return {"metadata": {"name": name}, "spec": {"modelName": model},
            "status": {"mlflowVersion": version, "conditions": [condition]}}


def test_latest_approved_picks_the_highest_approved_version_of_the_model():
    versions = [mv("a", "fraud", "2", True), mv("b", "fraud", "10", True),
                mv("c", "fraud", "11", False), mv("d", "churn", "12", True),
                mv("e", "fraud", None, True)]
    assert newest_approved(versions, "fraud")["metadata"]["name"] == "b"
    assert newest_approved(versions, "nothing") is None


def test_status_merge_patch_deletes_vanished_keys():
    old = {"candidate": {"modelVersion": "x"}, "step": 2, "stable": {"a": 1, "b": 2}}
    new = {"stable": {"a": 1}}
    assert with_deletions(old, new) == {"stable": {"a": 1, "b": None}, "candidate": None,
                                        "step": None}
