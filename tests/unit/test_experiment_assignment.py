"""Sticky assignment: the hash splits keys in the configured shares (within exact binomial bounds),
is the same in every process, and leaves overrides and keyless requests out of the sample."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from scipy import stats as sps

from ferry.api.inferenceservice import Assignment, Experiment
from ferry.experiments.assignment import BUCKETS, Assigner, body_key, bucket, cookie, request_key, salt

KEYS = [f"user-{i}" for i in range(100_000)]
SALT = salt("shop", "ranker", "2026-03-01T10:00:00.000000Z")
# One chance in a million that a correct hash leaves a bound (per test, over all its variants).
FAMILY_ALPHA = 1e-6


def experiment(*weights: int, override: str = "ferry-variant") -> Experiment:
    return Experiment.model_validate({
        "variants": [{"name": chr(ord("a") + i), "modelVersion": f"m-{i}", "weight": w}
                     for i, w in enumerate(weights)],
        "assignment": {"header": "x-user-id"}, "overrideHeader": override,
        "minimumDetectableEffect": 0.01})


@pytest.mark.parametrize("weights", [(50, 50), (50, 30, 20), (34, 33, 33), (1, 99),
                                     (20, 20, 20, 20, 20)])
def test_shares_follow_the_weights_within_binomial_bounds(weights):
    assigner = Assigner.of(experiment(*weights), SALT)
    counts = dict.fromkeys(assigner.names, 0)
    for key in KEYS:
        counts[assigner.variant_of(key)] += 1
    for name, weight in zip(assigner.names, weights, strict=True):
        low, high = sps.binom.interval(1 - FAMILY_ALPHA / len(weights), len(KEYS), weight / 100)
        assert low <= counts[name] <= high, (name, counts[name], low, high)


def test_buckets_are_uniform():
    counts = [0] * BUCKETS
    for key in KEYS:
        counts[bucket(SALT, key)] += 1
    assert sps.chisquare(counts).pvalue > FAMILY_ALPHA


def test_two_experiments_assign_independently():
    """A new salt reshuffles: being in b of one run says nothing about the next run."""
    first, second = (Assigner.of(experiment(50, 50), salt("shop", "ranker", started))
                     for started in ("2026-03-01T10:00:00Z", "2026-04-01T10:00:00Z"))
    table = [[0, 0], [0, 0]]
    for key in KEYS:
        table[first.names.index(first.variant_of(key))][second.names.index(second.variant_of(key))] += 1
    assert sps.chi2_contingency(table, correction=False).pvalue > FAMILY_ALPHA


def test_the_weights_own_exact_bucket_ranges():
    assert Assigner.of(experiment(50, 30, 20), SALT).ends == (5000, 8000, 10000)
    assert Assigner.of(experiment(34, 33, 33), SALT).ends == (3400, 6700, 10000)


def test_the_bucket_of_a_key_is_pinned():
    """Changing the hash would move every user of running experiments: these values are fixed."""
    assert [bucket(SALT, key) for key in ("user-1", "user-2", "42", "é")] == [8853, 8429, 9974, 9852]


def test_another_process_with_another_hash_seed_assigns_the_same():
    code = ("from ferry.experiments.assignment import bucket; "
            f"print([bucket({SALT!r}, f'user-{{i}}') for i in range(50)])")
    here = [bucket(SALT, f"user-{i}") for i in range(50)]
    for seed in ("0", "12345"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        assert out.strip() == str(here)


def test_an_override_naming_a_variant_wins_and_is_not_counted():
    assigner = Assigner.of(experiment(50, 50), SALT)
    key = next(k for k in KEYS if assigner.variant_of(k) == "a")
    assigned = assigner.assign(key, {"Ferry-Variant": "b"})
    assert (assigned.variant, assigned.counted, assigned.source) == ("b", False, "override")
    assert assigner.assign(None, {"ferry-variant": " b "}).variant == "b"


def test_an_override_naming_no_variant_is_ignored():
    assigner = Assigner.of(experiment(50, 50), SALT)
    key = next(k for k in KEYS if assigner.variant_of(k) == "b")
    assigned = assigner.assign(key, {"ferry-variant": "z"})
    assert (assigned.variant, assigned.counted, assigned.source) == ("b", True, "hash")


def test_a_custom_override_header():
    assigner = Assigner.of(experiment(50, 50, override="x-force"), SALT)
    assert assigner.assign("user-1", {"x-force": "a"}).source == "override"
    assert assigner.assign("user-1", {"ferry-variant": "a"}).source == "hash"


def test_no_key_goes_to_the_control_and_is_not_counted():
    assigned = Assigner.of(experiment(10, 90), SALT).assign(None)
    assert (assigned.variant, assigned.counted, assigned.source) == ("a", False, "noKey")


def test_the_same_key_always_gets_the_same_variant():
    assigner = Assigner.of(experiment(50, 30, 20), SALT)
    assert {assigner.assign("user-7", {}).variant for _ in range(100)} == {assigner.variant_of("user-7")}
    assert Assigner.of(experiment(50, 30, 20), SALT).variant_of("user-7") == assigner.variant_of("user-7")


def test_key_from_a_header_is_case_insensitive():
    source = Assignment(header="X-User-Id")
    assert request_key(source, {"x-user-id": "u1"}) == "u1"
    assert request_key(source, {"X-USER-ID": "u2"}) == "u2"
    assert request_key(source, {"x-user-id": ""}) is None
    assert request_key(source, {}) is None


def test_key_from_a_cookie():
    source = Assignment(cookie="uid")
    assert request_key(source, {"Cookie": "theme=dark; uid=u-9; x=1"}) == "u-9"
    assert request_key(source, {"cookie": 'uid="quoted"'}) == "quoted"
    assert request_key(source, {"cookie": "broken; uid=u-1"}) == "u-1"
    assert request_key(source, {"cookie": "xuid=u-1"}) is None
    assert cookie(None, "uid") is None


def test_key_from_oip_v2_parameters_wins_over_an_input():
    body = {"parameters": {"user_id": 17}, "inputs": [
        {"name": "user_id", "shape": [1], "datatype": "INT64", "data": [99]}]}
    assert body_key(body, "user_id") == "17"


def test_key_from_an_oip_v2_input_when_all_rows_agree():
    tensor = {"name": "user_id", "shape": [2, 1], "datatype": "BYTES"}
    assert body_key({"inputs": [tensor | {"data": [["u1"], ["u1"]]}]}, "user_id") == "u1"
    assert body_key({"inputs": [tensor | {"data": [["u1"], ["u2"]]}]}, "user_id") is None


def test_key_from_mlflow_invocation_columns():
    split = {"dataframe_split": {"columns": ["amount", "uid"], "data": [[1.0, 5.0], [2.0, 5.0]]}}
    assert body_key(split, "uid") == "5"
    records = {"dataframe_records": [{"amount": 1, "uid": "a"}, {"amount": 2, "uid": "b"}]}
    assert body_key(records, "uid") is None
    assert body_key({"dataframe_records": [{"uid": "a"}]}, "uid") == "a"


def test_key_from_a_top_level_field_and_what_is_no_key():
    assert body_key({"customer": "c-1"}, "customer") == "c-1"
    assert body_key({"customer": True}, "customer") is None
    assert body_key({"customer": 1.5}, "customer") is None
    assert body_key({"customer": {"id": 1}}, "customer") is None
    assert body_key([1, 2], "customer") is None
    assert body_key(None, "customer") is None
    assert request_key(Assignment(body_field="customer"), {}, {"customer": 3}) == "3"
