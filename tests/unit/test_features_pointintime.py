"""Point-in-time joins: no value from after an event reaches its row, stale values are NULL, and the
job path writes the join as the version's validated output."""

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ferry.adapters.s3 import ObjectStore, split
from ferry.api.featurepipeline import FeaturePipelineSpec
from ferry.builders.featurepipeline import FeatureSettings, pod_template
from ferry.features import job, layout, pointintime

T0 = datetime(2026, 3, 1, 12, 0, 0)


def at(seconds):
    return T0 + timedelta(seconds=seconds)


def spec(keys=("customer_id",), ttl=None, label="is_fraud", **feature):
    entities = {"uri": "s3://b/labels.parquet", "entityKey": list(keys), "eventTime": "event_time"}
    config = {"entities": entities | ({"label": label} if label else {}),
              "features": [{"uri": "s3://b/spend.parquet", "timestamp": "computed_at"} | feature]}
    return config | ({"ttl": ttl} if ttl else {})


def labels(**columns):
    return pa.table({"customer_id": [1], "event_time": [at(0)], "is_fraud": [True]} | columns)


def test_a_value_stamped_after_the_event_never_leaks_the_one_just_before_does():
    features = pa.table({"customer_id": [1, 1, 1], "computed_at": [at(-3600), at(-1), at(1)],
                         "spend": [10.0, 20.0, 999.0]})
    out = pointintime.join(spec(), labels(), [features])
    assert out.to_pydict() == {"customer_id": [1], "event_time": [at(0)], "is_fraud": [True],
                               "spend": [20.0]}


def test_a_value_stamped_exactly_at_the_event_time_is_included():
    features = pa.table({"customer_id": [1, 1], "computed_at": [at(-1), at(0)], "spend": [1.0, 2.0]})
    assert pointintime.join(spec(), labels(), [features]).column("spend").to_pylist() == [2.0]


def test_a_value_older_than_the_ttl_is_null_and_the_row_is_kept():
    features = pa.table({"customer_id": [1, 2], "computed_at": [at(-3601), at(-3600)],
                         "spend": [5.0, 6.0]})
    entities = pa.table({"customer_id": [1, 2], "event_time": [at(0), at(0)],
                         "is_fraud": [False, True]})
    out = pointintime.join(spec(ttl="1h"), entities, [features])
    assert out.column("spend").to_pylist() == [None, 6.0]
    config = spec(ttl="1h")
    config["features"][0]["ttl"] = "2h"  # a source's own TTL wins
    overridden = pointintime.join(config, entities, [features])
    assert overridden.column("spend").to_pylist() == [5.0, 6.0]


def test_every_entity_key_column_must_match():
    entities = pa.table({"customer_id": [1, 1], "merchant": ["a", "b"],
                         "event_time": [at(0), at(0)], "is_fraud": [True, False]})
    features = pa.table({"customer_id": [1, 1, 2], "merchant": ["a", "b", "a"],
                         "computed_at": [at(-5), at(-9), at(-1)], "spend": [1.0, 2.0, 3.0]})
    out = pointintime.join(spec(keys=("customer_id", "merchant")), entities, [features])
    assert out.column("spend").to_pylist() == [1.0, 2.0]


def test_entities_without_any_value_keep_their_rows_in_order_with_nulls():
    entities = pa.table({"customer_id": [3, 1, 2], "event_time": [at(0), at(0), at(-100)],
                         "is_fraud": [True, False, True], "leaky": [1, 2, 3]})
    features = pa.table({"customer_id": [1, 2], "computed_at": [at(-1), at(-50)],
                         "spend": [1.0, 2.0], "visits": [4, 5]})
    out = pointintime.join(spec(), entities, [features])
    assert out.column_names == ["customer_id", "event_time", "is_fraud", "spend", "visits"]
    assert out.column("customer_id").to_pylist() == [3, 1, 2]
    assert out.column("spend").to_pylist() == [None, 1.0, None]
    assert out.column("visits").to_pylist() == [None, 4, None]


def test_several_sources_and_a_column_selection():
    features = [pa.table({"customer_id": [1], "computed_at": [at(-1)], "spend": [1.0], "x": [0]}),
                pa.table({"customer_id": [1], "computed_at": [at(-2)], "visits": [7]})]
    config = spec(columns=["spend"])
    config["features"].append({"uri": "s3://b/visits.parquet", "timestamp": "computed_at"})
    out = pointintime.join(config, labels(), features)
    assert out.column_names[-2:] == ["spend", "visits"]
    assert out.column("visits").to_pylist() == [7]


@pytest.mark.parametrize("features,message", [
    (pa.table({"customer_id": [1], "computed_at": [at(0)], "is_fraud": [1.0]}), "more than one place"),
    (pa.table({"customer_id": [1], "spend": [1.0]}), "no column"),
    (pa.table({"customer_id": [1], "computed_at": pa.array([at(0)], pa.timestamp("us", "UTC")),
               "spend": [1.0]}), "time zone"),
])
def test_what_would_make_a_wrong_set_is_refused(features, message):
    with pytest.raises(ValueError, match=message):
        pointintime.join(spec(), labels(), [features])


def brute_force(entities: pd.DataFrame, features: pd.DataFrame, ttl: timedelta) -> list:
    values = []
    for row in entities.itertuples():
        known = features[(features.customer_id == row.customer_id) & (features.region == row.region)
                         & (features.computed_at <= row.event_time)]
        latest = known[known.computed_at == known.computed_at.max()]
        fresh = len(latest) and row.event_time - latest.computed_at.iloc[0] <= ttl
        values.append(latest.spend.iloc[0] if fresh else None)
    return values


def test_matches_a_brute_force_join_on_random_data():
    rng = np.random.default_rng(7)
    seconds = rng.choice(5000, size=600, replace=False)  # distinct stamps: one latest value each
    features = pd.DataFrame({"customer_id": rng.integers(0, 15, 600), "region": rng.choice(["a", "b"], 600),
                             "computed_at": [at(int(s)) for s in seconds],
                             "spend": rng.normal(size=600)})
    entities = pd.DataFrame({"customer_id": rng.integers(0, 18, 400), "region": rng.choice(["a", "b"], 400),
                             "event_time": [at(int(s)) for s in rng.integers(-100, 5100, 400)],
                             "is_fraud": rng.integers(0, 2, 400).astype(bool)})
    entities.loc[:20, "event_time"] = [at(int(s)) for s in seconds[:21]]  # exact ties
    out = pointintime.join(spec(keys=("customer_id", "region"), ttl="5m"),
                           pa.Table.from_pandas(entities, preserve_index=False),
                           [pa.Table.from_pandas(features, preserve_index=False)])
    expected = brute_force(entities, features, timedelta(minutes=5))
    assert out.column("spend").to_pylist() == pytest.approx(expected, nan_ok=True)
    assert out.column("customer_id").to_pylist() == entities.customer_id.tolist()
    assert sum(v is not None for v in expected) > 50 and sum(v is None for v in expected) > 50


class LocalS3:
    """The boto3 calls ObjectStore makes, on a local folder (``s3://b/k`` is ``<root>/b/k``)."""

    class exceptions:  # noqa: N801 - boto3's spelling
        class NoSuchKey(Exception):
            pass

    def __init__(self, root: Path):
        self.root = root

    def get_object(self, Bucket, Key):  # noqa: N803
        path = self.root / Bucket / Key
        if not path.is_file():
            raise self.exceptions.NoSuchKey(Key)
        return {"Body": io.BytesIO(path.read_bytes())}

    def put_object(self, Bucket, Key, Body):  # noqa: N803
        path = self.root / Bucket / Key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(Body)

    def get_paginator(self, _):
        return self

    def paginate(self, Bucket, Prefix):  # noqa: N803
        files = sorted(p for p in (self.root / Bucket).rglob("*") if p.is_file())
        keys = [str(p.relative_to(self.root / Bucket)) for p in files]
        return [{"Contents": [{"Key": k, "Size": 0, "LastModified": datetime.now(UTC)}
                              for k in keys if k.startswith(Prefix)]}]

    def delete_object(self, Bucket, Key):  # noqa: N803
        (self.root / Bucket / Key).unlink()


def test_ferry_features_run_writes_the_join_as_the_published_output(tmp_path, monkeypatch):
    store = ObjectStore(LocalS3(tmp_path))
    store.write_parquet("s3://b/labels.parquet", pa.table({
        "customer_id": [1, 2], "event_time": [at(0), at(0)], "is_fraud": [True, False]}))
    spend_run = "s3://b/features/spend/v1/run-1/"
    store.write_parquet(f"{spend_run}part-0.parquet", pa.table({
        "customer_id": [1, 1, 2], "computed_at": [at(-10), at(5), at(-10)], "spend": [1.0, 99.0, 2.0]}))
    store.put_json("s3://b/features/spend/v1/latest.json", {"runId": "run-1", "uri": spend_run})
    pipeline = FeaturePipelineSpec.model_validate({
        "featureSet": "fraud-training", "version": "v1",
        "transform": {"pointInTime": {
            "entities": {"uri": "s3://b/labels.parquet", "entityKey": ["customer_id"],
                         "eventTime": "event_time", "label": "is_fraud"},
            "features": [{"featureSet": "spend", "version": "v1", "timestamp": "computed_at"}]}},
        "expectations": [{"column": "spend", "notNull": True}]})
    settings = FeatureSettings(image="ferry:1", bucket="b", prefix="features")
    container = pod_template("fraud-training", pipeline, settings)["spec"]["containers"][0]
    assert container["command"] == ["ferry", "features", "run"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e} | {"FERRY_RUN_ID": "job-1"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(job, "ObjectStore", lambda endpoint_url=None: store)

    assert job.main(["run"]) == 0

    version = "s3://b/features/fraud-training/v1/"
    latest = store.get_json(layout.latest_uri(version))
    assert latest["uri"] == f"{version}job-1/" and latest["rows"] == 2
    bucket, key = split(f"{version}job-1/part-0.parquet")
    assert pq.read_table(tmp_path / bucket / key).to_pydict() == {
        "customer_id": [1, 2], "event_time": [at(0), at(0)], "is_fraud": [True, False],
        "spend": [1.0, 2.0]}
    result = json.loads((tmp_path / "b" / "features/fraud-training/v1/job-1/_result.json").read_text())
    assert result["inputs"] == ["s3://b/labels.parquet", spend_run] and result["passed"]


def test_a_feature_set_without_a_published_output_fails_the_run(tmp_path):
    store = ObjectStore(LocalS3(tmp_path))
    config = spec()
    config["features"] = [{"featureSet": "spend", "version": "v1", "timestamp": "computed_at"}]
    pipeline = {"featureSet": "fraud-training", "version": "v1", "transform": {"pointInTime": config}}
    with pytest.raises(FileNotFoundError, match="spend version v1 has no published output"):
        job.point_in_time(store, pipeline, "s3://b/features/fraud-training/v1/")


def test_sibling_version_stays_under_the_same_bucket_and_prefix():
    assert layout.sibling_version("s3://b/p/fraud/v2/", "fraud", "v2", "spend", "v1") == "s3://b/p/spend/v1/"
    with pytest.raises(ValueError):
        layout.sibling_version("s3://b/p/other/v2/", "fraud", "v2", "spend", "v1")
