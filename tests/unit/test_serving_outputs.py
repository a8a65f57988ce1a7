"""Encoding model outputs for /invocations and v2, naming them for the log and the histogram."""

import json

import numpy as np
import pandas as pd
import pytest

from ferry.serving.outputs import first_numeric, invocations_json, output_columns, v2_outputs


@pytest.mark.parametrize("output,expected", [
    (np.array([0, 1, 1]), [0, 1, 1]),
    (np.array([0.25, 0.5]), [0.25, 0.5]),
    (np.array([[0.1, 0.9]]), [[0.1, 0.9]]),
    (np.array(["cat", "dog"], dtype=object), ["cat", "dog"]),
    (np.array([True, False]), [True, False]),
    (pd.Series([1.5, 2.5]), [1.5, 2.5]),
    (pd.DataFrame({"label": [1], "score": [0.75]}), [{"label": 1, "score": 0.75}]),
    ([1, 2], [1, 2]),
])
def test_invocations_json_matches_mlflow(output, expected):
    assert json.loads(invocations_json(output, ["r1"])) == {"predictions": expected, "ids": ["r1"]}


def plain(tensors):
    return [{**t, "data": list(t["data"])} for t in tensors]


def test_v2_outputs_of_an_array_series_and_frame():
    assert plain(v2_outputs(np.array([0, 1]))) == [
        {"name": "predict", "datatype": "INT64", "shape": [2], "data": [0, 1]}]
    [tensor] = v2_outputs(np.array([[0.5, 0.5]], dtype=np.float32))
    assert (tensor["datatype"], tensor["shape"]) == ("FP32", [1, 2])
    assert list(tensor["data"]) == [0.5, 0.5]
    [series] = v2_outputs(pd.Series([True], name="fraud"))
    assert (series["name"], series["datatype"]) == ("fraud", "BOOL")
    tensors = v2_outputs(pd.DataFrame({"label": ["a"], "score": [0.5]}))
    assert [(t["name"], t["datatype"], t["data"]) for t in tensors] == [
        ("label", "BYTES", ["a"]), ("score", "FP64", [0.5])]


def test_output_columns_for_the_log():
    assert [name for name, _ in output_columns(np.array([1, 0]))] == ["prediction"]
    assert [name for name, _ in output_columns(np.array([[0.1, 0.9]]))] == [
        "prediction_0", "prediction_1"]
    frame = pd.DataFrame({"label": [1], "score": [0.3]})
    assert [name for name, _ in output_columns(frame)] == ["prediction_label", "prediction_score"]
    assert [name for name, _ in output_columns(pd.DataFrame({"only": [1]}))] == ["prediction"]
    assert [name for name, _ in output_columns({"a": [1], "b": [2]})] == ["prediction_a", "prediction_b"]


def test_first_numeric_output_per_row():
    assert first_numeric(np.array([1, 0])).tolist() == [1.0, 0.0]
    assert first_numeric(np.array([[0.1, 0.9], [0.8, 0.2]])).tolist() == [0.1, 0.8]
    assert first_numeric(pd.DataFrame({"label": ["x"], "score": [0.3]})).tolist() == [0.3]
    assert first_numeric(np.array(["a", "b"], dtype=object)) is None
