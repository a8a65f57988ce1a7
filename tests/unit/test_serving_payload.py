"""Request parsing of `ferry serve`: every accepted format and every 400 case."""

import json

import numpy as np
import pandas as pd
import pytest

from ferry.serving.payload import (
    Frame, ModelInputs, PayloadError, merge, model_input, parse_invocations, parse_v2_infer)

COLUMNS = ("a", "b")
MODEL = ModelInputs(COLUMNS)
NO_SCHEMA = ModelInputs()


def invocations(document, model=MODEL, content_type="application/json"):
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    return parse_invocations(body, content_type, model)


def frame_of(parsed: Frame) -> pd.DataFrame:
    return model_input(parsed)


def test_split_of_floats_is_a_float_block():
    parsed = invocations({"dataframe_split": {"columns": ["a", "b"], "data": [[1.5, 2.5], [3.0, 4.0]]}})
    assert parsed.kind == "block" and parsed.rows == 2 and parsed.columns == COLUMNS
    assert parsed.data.dtype == np.float64
    pd.testing.assert_frame_equal(frame_of(parsed), pd.DataFrame({"a": [1.5, 3.0], "b": [2.5, 4.0]}))


def test_split_of_ints_is_an_int_block():
    parsed = invocations({"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}})
    assert parsed.kind == "block" and parsed.data.dtype == np.int64


@pytest.mark.parametrize("data", [
    [[1, 2.5], [3, 4.5]],          # an int column next to a float column
    [[1.0, "x"], [2.0, "y"]],      # strings
    [[1.0, None], [2.0, 3.0]],     # a null
    [[True, 1.0], [False, 2.0]],   # bools
])
def test_mixed_values_get_the_same_dtypes_as_pandas(data):
    parsed = invocations({"dataframe_split": {"columns": ["a", "b"], "data": data}})
    assert parsed.kind == "frame"
    pd.testing.assert_frame_equal(frame_of(parsed), pd.DataFrame(data, columns=["a", "b"]))


def test_split_without_columns_takes_the_signature_names():
    parsed = invocations({"dataframe_split": {"data": [[1.0, 2.0]]}})
    assert parsed.columns == COLUMNS


def test_records():
    parsed = invocations({"dataframe_records": [{"a": 1.0, "b": 2.0}, {"a": 3.0, "b": 4.0}]})
    assert parsed.kind == "block" and parsed.rows == 2
    pd.testing.assert_frame_equal(frame_of(parsed), pd.DataFrame({"a": [1.0, 3.0], "b": [2.0, 4.0]}))


def test_records_with_different_keys_fill_missing_values_like_pandas():
    records = [{"a": 1.0, "b": 2.0}, {"b": 4.0, "a": 3.0, "c": "x"}]
    parsed = invocations({"dataframe_records": records})
    pd.testing.assert_frame_equal(frame_of(parsed), pd.DataFrame(records))


@pytest.mark.parametrize("key", ["instances", "inputs"])
def test_instances_as_records_rows_and_columns(key):
    expected = pd.DataFrame({"a": [1.0, 3.0], "b": [2.0, 4.0]})
    as_records = invocations({key: [{"a": 1.0, "b": 2.0}, {"a": 3.0, "b": 4.0}]})
    as_rows = invocations({key: [[1.0, 2.0], [3.0, 4.0]]})
    as_columns = invocations({key: {"a": [1.0, 3.0], "b": [2.0, 4.0]}})
    for parsed in (as_records, as_rows, as_columns):
        pd.testing.assert_frame_equal(frame_of(parsed), expected)


def test_instances_for_a_tensor_model_stay_a_tensor():
    parsed = invocations({"instances": [[1, 2, 3], [4, 5, 6]]}, model=NO_SCHEMA)
    assert parsed.kind == "tensor" and parsed.columns is None and parsed.rows == 2
    assert parsed.data.shape == (2, 3)


def test_a_ragged_tensor_is_a_bad_request():
    with pytest.raises(PayloadError, match="not a rectangular tensor"):
        invocations({"instances": [[1, 2, 3], [4]]}, model=NO_SCHEMA)


def test_params_are_kept():
    parsed = invocations({"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, 2.0]]},
                          "params": {"threshold": 0.3}})
    assert parsed.params == {"threshold": 0.3}


def test_csv():
    parsed = invocations(b"a,b\n1.5,2\n3.5,4\n", content_type="text/csv; charset=utf-8")
    assert parsed.kind == "frame" and parsed.rows == 2
    pd.testing.assert_frame_equal(frame_of(parsed), pd.DataFrame({"a": [1.5, 3.5], "b": [2, 4]}))


def test_content_type_parameters_and_case_are_ignored():
    parsed = invocations({"inputs": [[1.0, 2.0]]}, content_type="Application/JSON; charset=utf-8")
    assert parsed.rows == 1


@pytest.mark.parametrize("body,content_type,message", [
    (b"", "application/json", "empty"),
    (b"{not json", "application/json", "not valid JSON"),
    (b"[1, 2]", "application/json", "must be an object"),
    (b'{"foo": 1}', "application/json", "exactly one of the keys"),
    (b'{"instances": [[1.0, 2.0]], "inputs": [[1.0, 2.0]]}', "application/json", "exactly one"),
    (b'{"instances": [[1.0, 2.0]], "extra": 1}', "application/json", "found: extra, instances"),
    (b'{"instances": [[1.0, 2.0]], "params": [1]}', "application/json", "params must be"),
    (b'{"dataframe_split": [[1.0, 2.0]]}', "application/json", "must be an object with 'columns'"),
    (b'{"dataframe_split": {"columns": ["a", "b"]}}', "application/json", "data must be a list"),
    (b'{"dataframe_split": {"columns": "a", "data": [[1.0]]}}', "application/json",
     "columns must be a list"),
    (b'{"dataframe_split": {"columns": ["a", "b"], "data": []}}', "application/json", "has no rows"),
    (b'{"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, 2.0], [1.0]]}}', "application/json",
     "dataframe_split.data[1] has 1 values, expected 2"),
    (b'{"dataframe_split": {"columns": ["a", "b"], "data": [1.0, 2.0]}}', "application/json",
     "must be a list of values"),
    (b'{"dataframe_split": {"columns": ["a", "a"], "data": [[1.0, 2.0]]}}', "application/json",
     "unique"),
    (b'{"dataframe_split": {"data": [[1.0, 2.0, 3.0]]}}', "application/json",
     "no column names were given"),
    (b'{"dataframe_records": {"a": 1}}', "application/json", "non-empty list of objects"),
    (b'{"dataframe_records": [1, 2]}', "application/json", "dataframe_records[0] must be an object"),
    (b'{"instances": []}', "application/json", "non-empty list"),
    (b'{"instances": {}}', "application/json", "empty object"),
    (b'{"inputs": {"a": [1.0], "b": 2.0}}', "application/json", "inputs.b must be a list"),
    (b'{"inputs": {"a": [1.0], "b": [1.0, 2.0]}}', "application/json", "same length"),
    (b'{"inputs": {"a": [], "b": []}}', "application/json", "no rows"),
    (b'{"instances": [[1, 2], [3]]}', "application/json", "instances[1] has 1 values, expected 2"),
    (b'{"instances": [1, "x"]}', "application/json", "mixes value types"),
    (b"a,b\n", "text/csv", "no rows"),
    (b"", "text/csv", "empty"),
    (b"a,b\n1,2", "application/xml", "unsupported content type"),
])
def test_bad_invocations_payloads_name_the_problem(body, content_type, message):
    with pytest.raises(PayloadError) as raised:
        invocations(body, content_type=content_type)
    assert message in str(raised.value)


def v2(inputs, model=MODEL, **extra):
    parsed = parse_v2_infer(json.dumps({"inputs": inputs, **extra}).encode(), model)
    return parsed.frame, parsed.id


def tensor(name, shape, datatype, data):
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def test_v2_one_column_per_input():
    parsed, request_id = v2([tensor("a", [2], "FP64", [1.0, 3.0]), tensor("b", [2, 1], "FP32", [2, 4])],
                            id="r1")
    assert request_id == "r1" and parsed.rows == 2
    pd.testing.assert_frame_equal(frame_of(parsed), pd.DataFrame(
        {"a": np.array([1.0, 3.0]), "b": np.array([2.0, 4.0], dtype=np.float32)}))


def test_v2_single_2d_input_takes_the_signature_columns():
    parsed, _ = v2([tensor("x", [2, 2], "FP64", [[1, 2], [3, 4]])])
    assert parsed.kind == "block" and parsed.columns == COLUMNS
    assert parsed.data.tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_v2_flat_data_is_reshaped():
    parsed, _ = v2([tensor("x", [2, 2], "INT64", [1, 2, 3, 4])])
    assert parsed.data.tolist() == [[1, 2], [3, 4]] and parsed.data.dtype == np.int64


def test_v2_tensor_model():
    parsed, _ = v2([tensor("x", [1, 3], "FP32", [1, 2, 3])], model=NO_SCHEMA)
    assert parsed.kind == "tensor" and parsed.data.dtype == np.float32 and parsed.rows == 1


def test_v2_bytes_and_bools():
    parsed, _ = v2([tensor("a", [2], "BYTES", ["x", "y"]), tensor("b", [2], "BOOL", [True, False])])
    assert frame_of(parsed)["b"].tolist() == [True, False]
    assert frame_of(parsed)["a"].tolist() == ["x", "y"]


def test_v2_parameters_become_params_without_content_type():
    parsed, _ = v2([tensor("a", [1], "FP64", [1.0])], parameters={"content_type": "pd", "k": 3})
    assert parsed.params == {"k": 3}


@pytest.mark.parametrize("document,message", [
    ([], "must be an object"),
    ({}, "'inputs' must be a non-empty list"),
    ({"inputs": []}, "non-empty list"),
    ({"inputs": [1]}, "inputs[0] must be an object"),
    ({"inputs": [{"name": "a"}]}, "inputs[0] lacks shape, datatype, data"),
    ({"inputs": [tensor("", [1], "FP64", [1.0])]}, "name must be a non-empty string"),
    ({"inputs": [tensor("a", "1", "FP64", [1.0])]}, "shape must be a list"),
    ({"inputs": [tensor("a", [-1], "FP64", [1.0])]}, "shape must be a list"),
    ({"inputs": [tensor("a", [1], "FLOAT", [1.0])]}, "unknown datatype 'FLOAT'"),
    ({"inputs": [tensor("a", [1], "FP64", 1.0)]}, "data must be a list"),
    ({"inputs": [tensor("a", [1], "FP64", ["x"])]}, "does not fit datatype FP64"),
    ({"inputs": [tensor("a", [3], "FP64", [1.0, 2.0])]}, "needs 3 values, data has 2"),
    ({"inputs": [tensor("a", [0], "FP64", [])]}, "has no rows"),
    ({"inputs": [tensor("a", [1], "FP64", [1.0]), tensor("a", [1], "FP64", [1.0])]}, "unique"),
    ({"inputs": [tensor("a", [1], "FP64", [1.0]), tensor("b", [2], "FP64", [1.0, 2.0])]},
     "same number of rows"),
    ({"inputs": [tensor("a", [1, 2], "FP64", [1.0, 2.0]), tensor("b", [1], "FP64", [1.0])]},
     "each one is a column"),
    ({"inputs": [tensor("a", [1], "FP64", [1.0])], "id": 5}, "'id' must be a string"),
    ({"inputs": [tensor("a", [1], "FP64", [1.0])], "parameters": [1]}, "'parameters' must be"),
])
def test_bad_v2_payloads_name_the_problem(document, message):
    with pytest.raises(PayloadError) as raised:
        parse_v2_infer(json.dumps(document).encode(), MODEL)
    assert message in str(raised.value)


def test_batch_keys_separate_what_cannot_be_concatenated():
    floats = invocations({"inputs": [[1.0, 2.0]]})
    more_floats = invocations({"inputs": [[3.0, 4.0], [5.0, 6.0]]})
    ints = invocations({"inputs": [[1, 2]]})
    other_columns = invocations({"dataframe_split": {"columns": ["b", "a"], "data": [[1.0, 2.0]]}})
    with_params = invocations({"inputs": [[1.0, 2.0]], "params": {"k": 1}})
    assert floats.batch_key() == more_floats.batch_key()
    keys = {f.batch_key() for f in (floats, ints, other_columns, with_params)}
    assert len(keys) == 4


def test_merge_keeps_row_order_and_dtypes():
    first = invocations({"inputs": [[1.0, 2.0]]})
    second = invocations({"inputs": [[3.0, 4.0], [5.0, 6.0]]})
    merged = merge([first, second])
    assert merged.rows == 3 and merged.data.tolist() == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
    strings = [invocations({"inputs": [{"a": "x", "b": 1.0}]}),
               invocations({"inputs": [{"a": "y", "b": 2.0}]})]
    merged = merge(strings)
    assert merged.kind == "frame" and frame_of(merged)["a"].tolist() == ["x", "y"]
    assert frame_of(merged).index.tolist() == [0, 1]
