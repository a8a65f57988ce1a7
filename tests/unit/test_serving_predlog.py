"""Prediction log: sampling, bounded buffer with drop counting, layout and columns."""

import io
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ferry.serving.payload import Frame
from ferry.serving.predlog import Entry, PredictionLog, combine, log_table, object_key
from ferry.serving.sampling import Sampler

T0 = int(datetime(2026, 11, 22, 23, 59, 59, tzinfo=UTC).timestamp() * 1000)


def block(rows):
    data = np.asarray(rows, dtype=np.float64)
    return Frame("block", data, ("a", "b"), len(data))


class FakeStore:
    """Records what would go to S3 (the real store is exercised in tests/integration)."""

    def __init__(self, fail=False):
        self.objects, self.fail = {}, fail

    def put_bytes(self, uri, data):
        if self.fail:
            raise ConnectionError("S3 is down")
        self.objects[uri] = pq.read_table(io.BytesIO(data))


def prediction_log(store, **overrides):
    counts = {"written": 0, "dropped": 0}
    settings = dict(sample_rate=1.0, batch_rows=1000, flush_seconds=60, max_rows=10)
    settings.update(overrides)
    log = PredictionLog("s3://bucket/logs/fraud", "7", "pod-a", **settings,
                        on_written=lambda n: counts.__setitem__("written", counts["written"] + n),
                        on_dropped=lambda n: counts.__setitem__("dropped", counts["dropped"] + n),
                        store=store)
    return log, counts


def test_object_key_layout():
    assert object_key("logs/fraud", "7", "pod-a", T0, 3) == (
        "logs/fraud/dt=2026-11-22-23/7-pod-a-1795391999000-3.parquet")
    assert object_key("", "v/1", "host name", T0, 1) == (
        "dt=2026-11-22-23/v_1-host_name-1795391999000-1.parquet")


def test_sampler_takes_exactly_the_share():
    for rate, offers, taken in [(0.1, 100, 10), (0.25, 8, 2), (1.0, 5, 5), (0.0, 50, 0), (0.5, 3, 1)]:
        sampler = Sampler(rate)
        assert sum(sampler.take() for _ in range(offers)) == taken


def test_log_table_has_the_contract_columns_and_types():
    table = log_table(block([[1.0, 2.0], [3.0, 4.0]]), np.array([0, 1]), "7", T0)
    assert table.column_names == ["a", "b", "prediction", "ferry_model_version", "ferry_timestamp",
                                  "ferry_prediction_id"]
    assert table.schema.field("a").type == pa.float64()
    assert table.schema.field("prediction").type == pa.int64()
    assert table.schema.field("ferry_model_version").type == pa.string()
    assert table.schema.field("ferry_timestamp").type == pa.timestamp("ms", tz="UTC")
    assert table.column("ferry_model_version").to_pylist() == ["7", "7"]


def test_log_table_keeps_original_input_types_and_names_each_output():
    frame = pd.DataFrame({"country": ["DE"], "amount": [5], "flag": [True]})
    parsed = Frame("frame", frame, ("country", "amount", "flag"), 1)
    output = pd.DataFrame({"label": [1], "score": [0.75]})
    table = log_table(parsed, output, "7", T0)
    assert table.column_names[:5] == ["country", "amount", "flag", "prediction_label", "prediction_score"]
    assert [table.schema.field(n).type for n in ("country", "amount", "flag")] == [
        pa.large_string() if table.schema.field("country").type == pa.large_string() else pa.string(),
        pa.int64(), pa.bool_()]


def test_entries_of_one_schema_become_one_table():
    tables = combine([Entry(block([[1.0, 2.0]]), np.array([1]), T0),
                      Entry(block([[3.0, 4.0]]), np.array([0]), T0 + 1),
                      Entry(Frame("block", np.array([[1, 2]]), ("a", "b"), 1), np.array([1]), T0 + 2)], "7")
    assert [t.num_rows for t in tables] == [2, 1]


def test_flush_writes_parquet_under_the_hour_partition():
    store = FakeStore()
    log, counts = prediction_log(store)
    assert log.offer(block([[1.0, 2.0], [3.0, 4.0]]), np.array([1, 0]))
    assert log.flush() == 2
    [(uri, table)] = store.objects.items()
    assert uri.startswith("s3://bucket/logs/fraud/dt=") and uri.endswith("-1.parquet")
    assert "/7-pod-a-" in uri
    assert table.column("prediction").to_pylist() == [1, 0]
    assert counts == {"written": 2, "dropped": 0}
    assert log.flush() == 0


def test_a_full_buffer_drops_and_counts_without_blocking():
    log, counts = prediction_log(FakeStore(), max_rows=3)
    assert log.offer(block([[1.0, 2.0], [3.0, 4.0]]), np.array([1, 0]))
    assert not log.offer(block([[1.0, 2.0], [3.0, 4.0]]), np.array([1, 0]))
    assert log.offer(block([[5.0, 6.0]]), np.array([1]))
    assert counts["dropped"] == 2
    assert log.flush() == 3


def test_a_failed_write_counts_the_rows_dropped():
    log, counts = prediction_log(FakeStore(fail=True))
    log.offer(block([[1.0, 2.0]]), np.array([1]))
    assert log.flush() == 0
    assert counts == {"written": 0, "dropped": 1}


def test_sampling_share_of_requests():
    store = FakeStore()
    log, counts = prediction_log(store, sample_rate=0.25)
    taken = [log.offer(block([[float(i), 0.0]]), np.array([i])) for i in range(8)]
    assert taken.count(True) == 2
    log.flush()
    [table] = store.objects.values()
    assert table.num_rows == 2


def test_batch_rows_wake_the_writer_and_close_flushes_the_rest():
    store = FakeStore()
    log, counts = prediction_log(store, batch_rows=2, flush_seconds=30, max_rows=100)
    log.start()
    log.offer(block([[1.0, 2.0], [3.0, 4.0]]), np.array([1, 0]))   # reaches batch_rows: written soon
    deadline = datetime.now().timestamp() + 10
    while counts["written"] < 2 and datetime.now().timestamp() < deadline:
        log._wake.wait(0.05)
    assert counts["written"] == 2
    log.offer(block([[5.0, 6.0]]), np.array([1]))                   # below batch_rows: only at close
    log.close()
    assert counts["written"] == 3 and len(store.objects) == 2


def test_rows_arrow_cannot_convert_are_dropped_and_counted():
    log, counts = prediction_log(FakeStore())
    odd = pd.DataFrame({"a": [object()]})
    log.offer(Frame("frame", odd, ("a",), 1), np.array([1]))
    assert log.flush() == 0
    assert counts == {"written": 0, "dropped": 1}
