"""The label reader: feedback Parquet and user files under one prefix, one row per id."""

import io
import os
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ferry.quality.labels import LabelFileError, read_labels
from ferry.quality.layout import labels_uri
from ferry.serving.feedback import LabelWriter, parse_feedback

LOG = "s3://bucket/predictions/prod/fraud"
MODIFIED = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


class Store:
    def __init__(self):
        self.objects = {}

    def put_bytes(self, uri, data):
        self.objects[uri] = data

    def get_bytes(self, uri):
        return self.objects.get(uri)

    def list(self, prefix):
        return [{"uri": uri, "size": len(data), "modified": MODIFIED}
                for uri, data in self.objects.items() if uri.startswith(prefix)]


def ms(text):
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def by_id(table):
    return {row["id"]: (row["label"], row["time"].isoformat()) for row in table.to_pylist()}


def test_labels_live_next_to_the_prediction_log_partitions():
    assert labels_uri(LOG) == f"{LOG}/labels/"
    assert labels_uri(LOG + "/") == f"{LOG}/labels/"


def test_feedback_parquet_and_a_user_csv_merge_latest_time_first():
    store = Store()
    writer = LabelWriter(LOG, "pod-a", store)
    writer.write(parse_feedback(b'{"labels": [{"id": "tx-1", "label": 1, "time": "2026-11-22T10:00:00Z"},'
                                b'{"id": "tx-2", "label": 0, "time": "2026-11-22T10:00:00Z"}]}',
                                ms("2026-11-22T10:05:00+00:00")), ms("2026-11-22T10:05:00+00:00"))
    store.put_bytes(f"{LOG}/labels/manual/2026-11-22.csv",
                    b"id,label,time,note\n"
                    b"tx-1,0,2026-11-22T12:00:00Z,corrected\n"      # later: wins over the feedback
                    b"tx-2,1,2026-11-22T09:00:00Z,stale\n"          # earlier: the feedback wins
                    b"007,1,,no time\n")                             # the object's modified time
    store.put_bytes(f"{LOG}/labels/README.txt", b"ignored")
    store.put_bytes(f"{LOG}/dt=2026-11-22-10/3-pod-a-1-1.parquet", b"not a label file")
    labels = read_labels(labels_uri(LOG), store)
    assert labels.schema == pa.schema([("id", pa.string()), ("label", pa.int64()),
                                       ("time", pa.timestamp("ms", tz="UTC"))])
    assert by_id(labels) == {"tx-1": (0, "2026-11-22T12:00:00+00:00"),
                             "tx-2": (0, "2026-11-22T10:00:00+00:00"),
                             "007": (1, MODIFIED.isoformat())}


def test_equal_times_keep_the_later_object_then_the_later_row(tmp_path):
    (tmp_path / "a.csv").write_text("id,label,time\nx,1,2026-11-22T10:00:00Z\nx,2,2026-11-22T10:00:00Z\n")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "c.csv").write_text("id,label,time\ny,5,2026-11-22T10:00:00Z\n")
    (tmp_path / "b" / "d.csv").write_text("id,label,time\ny,6,2026-11-22T10:00:00Z\n")
    assert {k: v[0] for k, v in by_id(read_labels(str(tmp_path))).items()} == {"x": 2, "y": 6}


def test_a_local_user_parquet_without_time_uses_the_files_mtime_and_naive_times_are_utc(tmp_path):
    pq.write_table(pa.table({"id": [1, 2], "label": ["spam", "ham"]}), tmp_path / "user.parquet")
    os.utime(tmp_path / "user.parquet", (MODIFIED.timestamp(), MODIFIED.timestamp()))
    (tmp_path / "naive.csv").write_text("id,label,time\n3,spam,2026-11-22 10:00:00\n")
    assert by_id(read_labels(str(tmp_path))) == {"1": ("spam", MODIFIED.isoformat()),
                                                 "2": ("ham", MODIFIED.isoformat()),
                                                 "3": ("spam", "2026-11-22T10:00:00+00:00")}


def test_label_types_that_disagree_between_files_become_strings(tmp_path):
    (tmp_path / "numbers.csv").write_text("id,label\na,1\n")
    (tmp_path / "words.csv").write_text("id,label\nb,yes\n")
    labels = read_labels(str(tmp_path))
    assert labels.schema.field("label").type == pa.string()
    assert {k: v[0] for k, v in by_id(labels).items()} == {"a": "1", "b": "yes"}


def test_ints_and_floats_merge_as_floats(tmp_path):
    (tmp_path / "ints.csv").write_text("id,label\na,1\n")
    (tmp_path / "floats.csv").write_text("id,label\nb,0.5\n")
    labels = read_labels(str(tmp_path))
    assert labels.schema.field("label").type == pa.float64()
    assert {k: v[0] for k, v in by_id(labels).items()} == {"a": 1.0, "b": 0.5}


def test_nothing_there_is_an_empty_table(tmp_path):
    labels = read_labels(str(tmp_path / "missing"))
    assert labels.num_rows == 0 and labels.column_names == ["id", "label", "time"]
    assert read_labels(labels_uri(LOG), Store()).num_rows == 0


@pytest.mark.parametrize(("content", "problem"), [
    (b"id,outcome\na,1\n", "no column 'label'"),
    (b"label\n1\n", "no column 'id'"),
    (b"id,label\na,1\n,0\n", "row 1 has no id"),
    (b"id,label\na,\n", "row 0 has no label"),
    (b"id,label,time\na,1,someday\n", "column 'time' has a value that is not a time"),
])
def test_bad_user_files_are_reported_by_name(content, problem):
    store = Store()
    store.put_bytes(f"{LOG}/labels/bad.csv", content)
    with pytest.raises(LabelFileError) as refused:
        read_labels(labels_uri(LOG), store)
    assert f"{LOG}/labels/bad.csv" in str(refused.value) and problem in str(refused.value)


def test_a_corrupt_parquet_file_is_reported_by_name():
    store = Store()
    buffer = io.BytesIO()
    pq.write_table(pa.table({"id": ["a"], "label": [1]}), buffer)
    store.put_bytes(f"{LOG}/labels/cut.parquet", buffer.getvalue()[:20])
    with pytest.raises(LabelFileError, match="cut.parquet: not a readable parquet file"):
        read_labels(labels_uri(LOG), store)
