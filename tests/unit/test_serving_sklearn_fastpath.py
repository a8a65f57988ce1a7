"""`ferry serve`'s scikit-learn fast path against MLflow's own pyfunc, on models saved by MLflow.

Every answer of the fast path must equal ``mlflow.pyfunc.load_model(path).predict(frame)`` exactly,
every input MLflow refuses must be refused with an error the server answers 400, and every model the
fast path does not reproduce exactly must still load through ``mlflow.pyfunc``.
"""

from __future__ import annotations

import gc
import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import mlflow
import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
from mlflow.models import ModelSignature, infer_signature
from mlflow.types import ColSpec, Schema
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from ferry.serving import model as model_loader
from ferry.serving import sklearn_model
from ferry.serving.payload import ModelInputs, parse_invocations
from ferry.serving.server import classify
from ferry.serving.sklearn_model import SignatureError, SklearnModel

rng = np.random.default_rng(3)
TRAIN = pd.DataFrame({"a": rng.normal(size=300), "b": rng.integers(0, 10, size=300),
                      "c": rng.normal(size=300) * 3})
LABELS = ((TRAIN["a"] + TRAIN["b"] / 5 - TRAIN["c"] / 3) > 1).astype(int) + (TRAIN["a"] > 1)
QUERIES = pd.DataFrame({"a": rng.normal(size=40), "b": rng.integers(0, 10, size=40),
                        "c": rng.normal(size=40) * 3})


@pytest.fixture(autouse=True, scope="module")
def collector_unfrozen():
    """``model.load`` freezes the garbage collector, for a server; the test process undoes that."""
    yield
    gc.unfreeze()


def save(path, estimator, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlflow.sklearn.save_model(estimator, str(path), pip_requirements=[], **options)
    return path


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """name → model folder: the variants the fast path serves."""
    folder = tmp_path_factory.mktemp("models")
    forest = RandomForestClassifier(n_estimators=7, random_state=0).fit(TRAIN, LABELS)
    logistic = LogisticRegression(max_iter=500).fit(TRAIN, LABELS)
    signature = infer_signature(TRAIN, forest.predict(TRAIN))
    return {
        "forest-skops": save(folder / "forest-skops", forest, signature=signature,
                             skops_trusted_types=["sklearn.tree._tree.Tree"]),
        "logistic-cloudpickle-proba": save(
            folder / "logistic-cloudpickle-proba", logistic, serialization_format="cloudpickle",
            pyfunc_predict_fn="predict_proba",
            signature=infer_signature(TRAIN, logistic.predict_proba(TRAIN))),
        "logistic-pickle-log-proba": save(
            folder / "logistic-pickle-log-proba", logistic, serialization_format="pickle",
            pyfunc_predict_fn="predict_log_proba", signature=signature),
        "forest-no-signature": save(folder / "forest-no-signature", forest,
                                    serialization_format="cloudpickle", signature=False),
        "logistic-optional-column": save(
            folder / "logistic-optional-column", LogisticRegression().fit(TRAIN[["a", "b"]], LABELS),
            serialization_format="pickle",
            signature=ModelSignature(Schema([ColSpec("double", "a"), ColSpec("long", "b"),
                                             ColSpec("double", "c", required=False)]))),
    }


@pytest.fixture(scope="module")
def references(saved):
    return {name: mlflow.pyfunc.load_model(str(path)) for name, path in saved.items()}


@pytest.fixture(scope="module")
def fast(saved):
    return {name: model_loader.load(str(path)) for name, path in saved.items()}


def outcome(predict, data):
    """(answer, None) or (None, the HTTP status the server gives the error)."""
    try:
        return predict(data), None
    except Exception as error:  # noqa: BLE001 - MLflow's outcome and the fast path's are compared
        return None, classify(error)[0]


def assert_same(expected, actual):
    assert type(actual) is type(expected)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    np.testing.assert_array_equal(actual, expected, strict=True)


INPUTS = {
    "as trained": QUERIES,
    "other order and an extra column": QUERIES[["c", "b", "a"]].assign(extra="x"),
    "int32 and float32 (upcast)": QUERIES.astype({"b": np.int32, "a": np.float32}),
    "0/1 ints in a double column": QUERIES.assign(a=(QUERIES["a"] > 0).astype(np.int64)),
    "numbers as strings in a double column": QUERIES.assign(c=QUERIES["c"].astype(str).astype(object)),
    "object column of ints": QUERIES.astype({"b": object}),
    "a missing column": QUERIES[["a", "b"]],
    "floats in a long column": QUERIES.assign(b=QUERIES["b"] + 0.5),
    "int64 in a double column": QUERIES.assign(a=QUERIES["b"] * 3),
    "strings in a double column": QUERIES.assign(c="high"),
    "bools in a long column": QUERIES.assign(b=QUERIES["b"] > 3),
    "a numpy array": QUERIES.to_numpy(),
}


@pytest.mark.parametrize("name", ["forest-skops", "logistic-cloudpickle-proba",
                                  "logistic-pickle-log-proba", "forest-no-signature",
                                  "logistic-optional-column"])
@pytest.mark.parametrize("case", list(INPUTS))
def test_answers_and_refusals_equal_mlflow_pyfunc(fast, references, name, case):
    loaded = fast[name]
    assert isinstance(loaded.pyfunc, SklearnModel)
    data = INPUTS[case]
    expected, expected_status = outcome(references[name].predict, data.copy())
    actual, status = outcome(loaded.pyfunc.predict, data.copy())
    assert status == expected_status
    if expected_status is None:
        assert_same(expected, actual)


@pytest.mark.parametrize("name", ["forest-skops", "logistic-cloudpickle-proba"])
def test_requests_parsed_by_the_server_get_mlflow_answers(fast, references, name):
    loaded = fast[name]
    rows = QUERIES[["c", "a", "b"]]
    data = [[c, a, int(b)] for c, a, b in rows.itertuples(index=False)]
    body = json.dumps({"dataframe_split": {"columns": list(rows.columns), "data": data}}).encode()
    frame = parse_invocations(body, "application/json", loaded.inputs)
    assert_same(references[name].predict(rows), loaded.predict(frame))
    blocks = parse_invocations(json.dumps({"dataframe_split": {
        "columns": list(rows.columns), "data": rows.to_numpy().tolist()}}).encode(),
        "application/json", loaded.inputs)
    with pytest.raises(SignatureError, match="column b"):
        loaded.predict(blocks)  # b arrives as floats: MLflow refuses float → long as well


def test_metadata_equals_the_pyfunc_path(saved, fast):
    for name, path in saved.items():
        slow = model_loader._load_pyfunc(str(path))
        assert (fast[name].inputs, fast[name].signature_inputs, fast[name].signature_outputs) == (
            slow.inputs, slow.signature_inputs, slow.signature_outputs)
    assert fast["forest-no-signature"].inputs == ModelInputs(None)


def test_bad_input_is_a_400_error(fast):
    loaded = fast["forest-skops"]
    with pytest.raises(SignatureError) as missing:
        loaded.pyfunc.predict(QUERIES[["a", "c"]])
    assert "['b']" in str(missing.value)
    with pytest.raises(SignatureError) as wrong:
        loaded.pyfunc.predict(QUERIES.assign(b=QUERIES["b"] + 0.5))
    assert classify(missing.value)[0] == classify(wrong.value)[0] == 400
    assert "column b" in classify(wrong.value)[1]


class Echo(mlflow.pyfunc.PythonModel):
    """Returns its input: shows what MLflow's schema enforcement makes of a column."""

    def predict(self, context, model_input, params=None):
        return model_input


COLUMNS = {
    "int8": pd.Series([1, -2, 3], dtype=np.int8),
    "int32": pd.Series([1, -2, 3], dtype=np.int32),
    "int64": pd.Series([1, -2, 3], dtype=np.int64),
    "int64 0/1": pd.Series([0, 1, 1], dtype=np.int64),
    "uint8": pd.Series([1, 2, 3], dtype=np.uint8),
    "uint32": pd.Series([1, 2, 3], dtype=np.uint32),
    "float32": pd.Series([1.5, -2.0, 3.25], dtype=np.float32),
    "float64": pd.Series([1.5, -2.0, np.nan]),
    "float64 integral": pd.Series([1.0, 2.0, np.nan]),
    "bool": pd.Series([True, False, True]),
    "object bools and None": pd.Series([True, None, False], dtype=object),
    "object ints": pd.Series([1, 2, 3], dtype=object),
    "object floats": pd.Series([1.5, None, 2.0], dtype=object),
    "object numeric strings": pd.Series(["1.5", 2, "3"], dtype=object),
    "object words": pd.Series(["x", "y", None], dtype=object),
    "str": pd.Series(["x", "y", "z"]),
    "nullable Int64": pd.Series([1, None, 3], dtype="Int64"),
}


@pytest.fixture(scope="module")
def echoes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("echo")
    found = {}
    for kind in sklearn_model.COLUMN_TYPES:
        path = folder / kind
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mlflow.pyfunc.save_model(str(path), python_model=Echo(), pip_requirements=[],
                                     signature=ModelSignature(Schema([ColSpec(kind, "x")])))
        found[kind] = mlflow.pyfunc.load_model(str(path))
    return found


@pytest.mark.parametrize("kind", list(sklearn_model.COLUMN_TYPES))
def test_column_conversions_equal_mlflow_schema_enforcement(echoes, kind):
    columns = (sklearn_model.Column("x", kind),)
    for name, values in COLUMNS.items():
        frame = pd.DataFrame({"x": values.copy()})
        try:
            expected = echoes[kind].predict(frame.copy())
        except Exception:  # noqa: BLE001 - MLflow refuses: so must the fast path
            with pytest.raises(SignatureError):
                sklearn_model.enforce(frame, columns)
            continue
        actual = sklearn_model.enforce(frame, columns)
        pd.testing.assert_frame_equal(actual, expected, check_exact=True, obj=f"{name} → {kind}")


def test_other_models_load_through_mlflow_pyfunc(tmp_path, monkeypatch):
    python_model = tmp_path / "python-model"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlflow.pyfunc.save_model(str(python_model), python_model=Echo(), pip_requirements=[],
                                 signature=infer_signature(QUERIES, QUERIES))
    tensor = save(tmp_path / "tensor", LogisticRegression().fit(TRAIN.to_numpy(), LABELS),
                  serialization_format="pickle",
                  signature=infer_signature(TRAIN.to_numpy(), LABELS.to_numpy()))
    for path in (python_model, tensor):
        assert sklearn_model.plan(path) is None
        loaded = model_loader.load(str(path))
        assert isinstance(loaded.pyfunc, mlflow.pyfunc.PyFuncModel)
    reference = mlflow.pyfunc.load_model(str(tensor))
    loaded = model_loader.load(str(tensor))
    assert_same(reference.predict(QUERIES.to_numpy()), loaded.pyfunc.predict(QUERIES.to_numpy()))
    # MLflow's own refusal to unpickle stays MLflow's.
    forest = save(tmp_path / "forest", RandomForestClassifier(n_estimators=2).fit(TRAIN, LABELS),
                  serialization_format="pickle")
    assert sklearn_model.plan(forest) is not None
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    assert sklearn_model.plan(forest) is None


def test_params_are_ignored_as_mlflow_ignores_them(fast, references):
    loaded = fast["forest-skops"]
    assert_same(references["forest-skops"].predict(QUERIES, params={"k": 1}),
                loaded.pyfunc.predict(QUERIES, params={"k": 1}))


def test_the_fast_path_never_imports_mlflow(saved):
    script = ("import sys\n"
              "from ferry.serving import model, server\n"
              f"loaded = model.load({str(saved['forest-skops'])!r})\n"
              "print(type(loaded.pyfunc).__name__, sorted(m for m in sys.modules if m.startswith('mlflow')))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["SklearnModel", "[]"]


def test_remote_uris_are_downloaded_by_mlflow_in_a_child_process(saved, tmp_path):
    folder = model_loader.download_with_mlflow(saved["forest-skops"].as_uri(), tmp_path / "copy")
    assert folder.is_relative_to(tmp_path / "copy") and sklearn_model.plan(folder) is not None
    with pytest.raises(RuntimeError, match="MLflow could not download"):
        model_loader.download_with_mlflow((tmp_path / "nothing-here").as_uri(), tmp_path / "none")


def test_a_downloaded_folder_is_removed_once_the_fast_path_has_loaded_it(saved, tmp_path, monkeypatch):
    python_model = tmp_path / "python-model"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlflow.pyfunc.save_model(str(python_model), python_model=Echo(), pip_requirements=[])
    sources = {"models:/forest/1": saved["forest-skops"], "runs:/abc/probe": python_model}
    targets = []

    def download(uri, target):
        targets.append(target)
        return Path(shutil.copytree(sources[uri], target / "model"))

    monkeypatch.setattr(model_loader, "download_with_mlflow", download)
    assert isinstance(model_loader.load("models:/forest/1").pyfunc, SklearnModel)
    assert not targets[-1].exists()
    assert isinstance(model_loader.load("runs:/abc/probe").pyfunc, mlflow.pyfunc.PyFuncModel)
    assert (targets[-1] / "model" / "MLmodel").is_file()  # a pyfunc model may read it later
    shutil.rmtree(targets[-1])
