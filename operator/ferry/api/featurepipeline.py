"""FeaturePipeline: one version of a feature set, computed on a schedule and validated."""

from __future__ import annotations

from typing import Annotated, Literal

from datetime import datetime

from pydantic import Field

from ferry.api.common import (
    OBJECT_STORE, ApiModel, Container, Cron, Duration, FerryStatus, Label, ObjectStoreRef, Rule, SecretRef,
    StatusModel, Text, immutable)

S3_URI = r"^s3://[^/]+/.*$"
Column = Annotated[str, Field(min_length=1, max_length=253)]


def _ordered(low, high) -> bool:
    return low is None or high is None or low <= high


def _timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class SqlSource(ApiModel):
    name: Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$",
                               description="Table name the query uses.")]
    uri: Annotated[str, Field(max_length=1024, pattern=S3_URI)]
    format: Literal["parquet", "csv"] = "parquet"


class SqlTransform(ApiModel):
    """A DuckDB query over declared S3 sources, run by ``ferry features`` in the operator image."""

    query: Annotated[str, Field(min_length=1, max_length=65536)]
    rules = (Rule("self.sources.all(s, self.sources.exists_one(t, t.name == s.name))",
                  "sql.sources must have unique names",
                  lambda m: len({s.name for s in m.sources}) == len(m.sources)),)

    sources: Annotated[list[SqlSource], Field(min_length=1, max_length=32)]


class Entities(ApiModel):
    """The spine of a point-in-time join: one row per (entity, event time) to train on.

    Only the key, event time and label columns reach the output; any other column of this frame
    would be a value nobody checked against the event time, so it is dropped."""

    rules = (Rule("self.entityKey.all(k, self.entityKey.exists_one(j, j == k)) && "
                  "!(self.eventTime in self.entityKey) && (!has(self.label) || "
                  "(self.label != self.eventTime && !(self.label in self.entityKey)))",
                  "entities.entityKey, eventTime and label must name distinct columns",
                  lambda m: len({*m.entity_key, m.event_time, *([m.label] if m.label else [])})
                  == len(m.entity_key) + 1 + (m.label is not None)),)

    uri: Annotated[str, Field(max_length=1024, pattern=S3_URI, description=(
        "Parquet/CSV object, or a prefix ending in '/' or a glob, as for SQL sources."))]
    format: Literal["parquet", "csv"] = "parquet"
    entity_key: Annotated[list[Column], Field(min_length=1, max_length=8, description=(
        "Columns naming the entity; every feature source has columns of the same names."))]
    event_time: Annotated[Column, Field(description=(
        "When the label was observed: each feature is taken as it was known at this instant."))]
    label: Annotated[Column, Field(description="The training target, kept as it is in this frame.")] \
        | None = None


class PointInTimeFeature(ApiModel):
    """One feature source, joined as of each event time: a published version of a feature set
    (its ``latest.json`` run under the same bucket/prefix as this pipeline) or a URI."""

    rules = (
        Rule("has(self.uri) != has(self.featureSet)",
             "a point-in-time feature needs exactly one of uri or featureSet",
             lambda m: (m.uri is None) != (m.feature_set is None)),
        Rule("has(self.featureSet) == has(self.version)",
             "a point-in-time feature's featureSet and version go together",
             lambda m: (m.feature_set is None) == (m.version is None)),
    )

    feature_set: Label | None = None
    version: Label | None = None
    uri: Annotated[str, Field(max_length=1024, pattern=S3_URI)] | None = None
    format: Annotated[Literal["parquet", "csv"], Field(description="Of uri; a feature set's "
                                                                  "published output is Parquet.")] = "parquet"
    timestamp: Annotated[Column, Field(description=(
        "When each value became known. A value counts at an event time when timestamp <= event "
        "time (ties included): the latest such value per entity is taken, never a later one."))]
    columns: Annotated[list[Column], Field(max_length=256, description=(
        "Feature columns to take; empty: all but the entity key and timestamp. A name already "
        "in the output fails the run."))] = []
    ttl: Duration | None = Field(None, description="Overrides pointInTime.ttl for this source.")


class PointInTime(ApiModel):
    """A training set without leakage: the entity/label frame joined with each feature source AS OF
    every row's event time (DuckDB ASOF LEFT JOIN), written as this version's output."""

    entities: Entities
    features: Annotated[list[PointInTimeFeature], Field(min_length=1, max_length=32)]
    ttl: Duration | None = Field(None, description=(
        "A value older than this at the event time is NULL (stale, as if unknown); absent: values "
        "never expire. Rows are kept either way, with NULL where no value is known."))


class Transform(ApiModel):
    rules = (Rule("[has(self.container), has(self.sql), has(self.pointInTime)]"
                  ".filter(x, x).size() == 1",
                  "exactly one of transform.container, transform.sql or transform.pointInTime "
                  "must be set",
                  lambda m: [m.container, m.sql, m.point_in_time].count(None) == 2),)

    container: Container | None = None
    sql: SqlTransform | None = None
    point_in_time: PointInTime | None = None


class Output(ApiModel):
    bucket: Annotated[str, Field(max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$")] | None = None
    prefix: Annotated[str, Field(max_length=512)] | None = None
    keep_last: Annotated[int, Field(ge=1, le=1000, description="Outputs retained per version.")] = 10


class RowCount(ApiModel):
    rules = (Rule("!has(self.min) || !has(self.max) || self.min <= self.max",
                  "rowCount.min must not exceed rowCount.max", lambda m: _ordered(m.min, m.max)),)

    min: Annotated[int, Field(ge=0)] | None = None
    max: Annotated[int, Field(ge=0)] | None = None


class Expectation(ApiModel):
    """Checks one column (or, with ``rowCount``, the whole output) before it is published."""

    rules = (
        Rule("has(self.column) || has(self.rowCount)", "an expectation needs a column or rowCount",
             lambda m: m.column is not None or m.row_count is not None),
        Rule("!has(self.min) || !has(self.max) || self.min <= self.max", "min must not exceed max",
             lambda m: _ordered(m.min, m.max)),
    )

    column: Annotated[str, Field(max_length=253)] | None = None
    type: Literal["int", "float", "string", "bool", "timestamp", "date"] | None = None
    not_null: bool = False
    unique: bool = False
    min: float | None = None
    max: float | None = None
    allowed_values: Annotated[list[Annotated[str, Field(max_length=253)]], Field(max_length=256)] = []
    row_count: RowCount | None = None


class Freshness(ApiModel):
    max_age: Duration


class Backfill(ApiModel):
    rules = (Rule("timestamp(self.from) < timestamp(self.to)",
                  "backfill.from must be before backfill.to",
                  lambda m: _timestamp(m.from_) < _timestamp(m.to)),)

    from_: Annotated[str, Field(alias="from", max_length=64, json_schema_extra={"format": "date-time"})]
    to: Annotated[str, Field(max_length=64, json_schema_extra={"format": "date-time"})]
    interval: Duration = "1d"
    parallelism: Annotated[int, Field(ge=1, le=64)] = 1


class FeaturePipelineSpec(ApiModel):
    rules = (Rule("!has(self.objectStore) || !has(self.s3Credentials)",
                  "set objectStore or the deprecated s3Credentials, not both",
                  lambda m: m.object_store is None or m.s3_credentials is None),)

    feature_set: Annotated[Label, Field(json_schema_extra=immutable("featureSet"))]
    version: Annotated[Label, Field(description="Feature version, e.g. v2; immutable.",
                                    json_schema_extra=immutable("version"))]
    schedule: Cron | None = Field(None, description="Cron schedule; absent: run once.")
    time_zone: Annotated[str, Field(max_length=64)] | None = None
    suspend: bool = False
    concurrency_policy: Literal["Allow", "Forbid", "Replace"] = "Forbid"
    transform: Transform
    output: Output = Output()
    expectations: Annotated[list[Expectation], Field(max_length=64)] = []
    freshness: Freshness | None = None
    backfill: Backfill | None = None
    object_store: ObjectStoreRef | None = Field(None, description=OBJECT_STORE)
    s3_credentials: SecretRef | None = Field(None, description=(
        "Deprecated alias of objectStore.secretRef, read as objectStore when that is unset."))
    description: Text | None = None



class RunRecord(StatusModel):
    state: Literal["Running", "Succeeded", "Failed"] | None = None
    time: str | None = None
    run_id: str | None = None
    rows: int | None = None
    duration_seconds: float | None = None
    output_uri: str | None = None


class SchemaColumn(StatusModel):
    name: str
    type: str


class PublishedSchema(StatusModel):
    columns: Annotated[list[SchemaColumn], Field(max_length=1024)] = []
    hash: str | None = None


class ExpectationResult(StatusModel):
    expectation: str
    passed: bool
    observed: str | None = None


class BackfillProgress(StatusModel):
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    running: int = 0
    pending: int = 0


class FeaturePipelineStatus(FerryStatus):
    backfill: BackfillProgress | None = None
    last_run: RunRecord | None = None
    last_successful_run: RunRecord | None = None
    latest_output_uri: str | None = None
    published_schema: PublishedSchema | None = Field(None, alias="schema")
    expectation_results: Annotated[list[ExpectationResult], Field(max_length=128)] = []
    used_by: Annotated[list[str], Field(max_length=256)] = []
