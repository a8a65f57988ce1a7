"""Explanations of `ferry serve` (``ferry.serving.explain``): exact linear SHAP, path-dependent
TreeSHAP against brute-force Shapley values, KernelSHAP against exact interventional Shapley
values, efficiency (attributions sum to value - base value) for each, and the HTTP route."""

import asyncio
import itertools
import math

import numpy as np
import pandas as pd
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sklearn.ensemble import (GradientBoostingClassifier, GradientBoostingRegressor, RandomForestClassifier,
                              RandomForestRegressor)
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeRegressor

from ferry.serving.config import ServeConfig
from ferry.serving.explain import Explainer, ExplainError, Options, options
from ferry.serving.model import LoadedModel
from ferry.serving.payload import Frame, ModelInputs
from ferry.serving.server import Server

COLUMNS = tuple("abcdef")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(300, len(COLUMNS)))
    labels = (x[:, 0] + x[:, 1] * x[:, 2] - 0.5 * x[:, 3] > 0).astype(int)
    target = 3 * x[:, 0] + x[:, 1] ** 2 - np.sin(x[:, 2]) + 0.1 * rng.normal(size=len(x))
    return pd.DataFrame(x, columns=list(COLUMNS)), labels, target


def explain(estimator, rows, **opts):
    explainer = Explainer(ModelInputs(COLUMNS), None, estimator)
    return explainer.explain(Frame("block", np.asarray(rows, dtype=np.float64), COLUMNS, len(rows)),
                             Options(**opts))


def assert_efficient(found, tolerance=1e-6):
    np.testing.assert_allclose(found.attributions.sum(axis=1), found.values - found.base_values,
                               atol=tolerance, rtol=0)


def test_logistic_regression_is_explained_exactly_in_log_odds(data):
    frame, labels, _ = data
    model = LogisticRegression().fit(frame, labels)
    rows, background = frame.to_numpy()[:20], frame.to_numpy()[100:150]
    found = explain(model, rows, background=background)
    assert found.method == "linear" and "log-odds of class 1" in found.output
    np.testing.assert_allclose(found.values, model.decision_function(frame.iloc[:20]), atol=1e-9)
    mean = background.mean(axis=0)
    np.testing.assert_allclose(found.attributions, model.coef_[0] * (rows - mean), atol=1e-12)
    np.testing.assert_allclose(found.base_values, model.coef_[0] @ mean + model.intercept_[0])
    assert_efficient(found)
    negative = explain(model, rows, background=background, target=0)
    np.testing.assert_allclose(negative.attributions, -found.attributions)


def test_a_scaled_pipeline_is_explained_over_its_input_features(data):
    frame, _, target = data
    pipeline = make_pipeline(StandardScaler(), LinearRegression()).fit(frame, target)
    rows = frame.to_numpy()[:10]
    found = explain(pipeline, rows, background=frame.to_numpy())
    assert found.method == "linear"
    np.testing.assert_allclose(found.values, pipeline.predict(frame.iloc[:10]), atol=1e-9)
    np.testing.assert_allclose(found.base_values, pipeline.predict(frame).mean(), atol=1e-9)
    assert_efficient(found)


def test_random_forest_explains_the_probability_of_class_1(data):
    frame, labels, _ = data
    model = RandomForestClassifier(n_estimators=30, random_state=0).fit(frame, labels)
    found = explain(model, frame.to_numpy()[:25])
    assert found.method == "tree" and found.output.startswith("predict_proba[:, 1]")
    np.testing.assert_allclose(found.values, model.predict_proba(frame.iloc[:25])[:, 1])
    assert np.ptp(found.base_values) < 1e-12  # the training data's mean probability, for every row
    assert_efficient(found)
    assert found.attributions[:, :4].std() > 3 * found.attributions[:, 4:].std()  # e, f are noise


def test_gradient_boosting_regressor_sums_to_its_prediction(data):
    frame, _, target = data
    model = GradientBoostingRegressor(n_estimators=60, random_state=0).fit(frame, target)
    found = explain(model, frame.to_numpy()[:25])
    np.testing.assert_allclose(found.values, model.predict(frame.iloc[:25]))
    assert np.ptp(found.base_values) < 1e-9
    assert_efficient(found)


def path_dependent_value(tree, x, subset, node=0):
    """E[f(x) | x_S] as path-dependent TreeSHAP defines it: unknown features follow the covers."""
    if tree.children_left[node] == -1:
        return tree.value[node, 0] / tree.value[node, 0].sum() if tree.value.shape[2] > 1 \
            else tree.value[node, 0]
    left, right = tree.children_left[node], tree.children_right[node]
    if tree.feature[node] in subset:
        child = left if x[tree.feature[node]] <= tree.threshold[node] else right
        return path_dependent_value(tree, x, subset, child)
    cover = tree.weighted_n_node_samples
    return (cover[left] * path_dependent_value(tree, x, subset, left)
            + cover[right] * path_dependent_value(tree, x, subset, right)) / cover[node]


def brute_force_shapley(value, width):
    phi = np.zeros(width)
    for i in range(width):
        others = [j for j in range(width) if j != i]
        for size in range(width):
            weight = math.factorial(size) * math.factorial(width - size - 1) / math.factorial(width)
            for subset in itertools.combinations(others, size):
                phi[i] += weight * (value(set(subset) | {i}) - value(set(subset)))
    return phi


@pytest.mark.parametrize("kind", ["tree", "forest", "boosting"])
def test_tree_shap_equals_brute_force_shapley_values(kind):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 3))
    y = x[:, 0] * x[:, 1] + (x[:, 2] > 0.3) + x[:, 0] ** 2
    if kind == "tree":  # deep enough that features repeat on a path
        model = DecisionTreeRegressor(max_depth=6, random_state=0).fit(x, y)
        trees, scale, column = [model], 1.0, 0
    elif kind == "forest":
        model = RandomForestClassifier(n_estimators=4, max_depth=5, random_state=0).fit(x, y > 1)
        trees, scale, column = model.estimators_, 0.25, 1
    else:
        model = GradientBoostingClassifier(n_estimators=5, max_depth=3, random_state=0).fit(x, y > 1)
        trees, scale, column = model.estimators_[:, 0], model.learning_rate, 0
    explainer = Explainer(ModelInputs(("p", "q", "r")), None, model)
    rows = x[:8]
    found = explainer.explain(Frame("block", rows, ("p", "q", "r"), len(rows)), Options())
    for row, attributions in zip(rows.astype(np.float32), found.attributions, strict=True):
        def value(subset, row=row):
            return scale * sum(np.atleast_1d(path_dependent_value(t.tree_, row, subset))[column]
                               for t in trees)
        np.testing.assert_allclose(attributions, brute_force_shapley(value, 3), atol=1e-10)
    assert_efficient(found)


class Smooth:
    """A pyfunc stand-in that is no scikit-learn model: f = a·b + sin(c) + d² − e·f (one column)."""

    def predict(self, table, params=None):
        z = table.to_numpy()
        return z[:, 0] * z[:, 1] + np.sin(z[:, 2]) + z[:, 3] ** 2 - z[:, 4] * z[:, 5]


def interventional_shapley(f, row, background):
    def value(subset):
        mixed = background.copy()
        mixed[:, list(subset)] = row[list(subset)]
        return f(mixed).mean()
    return brute_force_shapley(value, len(row))


def pyfunc_explainer(model=None):
    loaded = LoadedModel(model or Smooth(), ModelInputs(COLUMNS), [], [])
    return Explainer(loaded.inputs, loaded.predict, None)


def test_kernel_shap_is_exact_when_every_coalition_fits_the_budget(data):
    frame, _, _ = data
    rows, background = frame.to_numpy()[:3], frame.to_numpy()[50:70]
    found = pyfunc_explainer().explain(Frame("block", rows, COLUMNS, 3), Options(background=background))
    assert found.method == "kernel" and found.evaluations == 2 ** 6 - 2
    f = lambda z: Smooth().predict(pd.DataFrame(z))  # noqa: E731
    for row, attributions in zip(rows, found.attributions, strict=True):
        np.testing.assert_allclose(attributions, interventional_shapley(f, row, background), atol=1e-9)
    np.testing.assert_allclose(found.base_values, f(background).mean())
    assert_efficient(found, 1e-9)


def test_sampled_kernel_shap_keeps_efficiency_exact_and_stays_close():
    rng = np.random.default_rng(0)
    width = 12
    weights = rng.normal(size=width)

    class Wide:
        def predict(self, table, params=None):
            z = table.to_numpy()
            return z @ weights + z[:, 0] * z[:, 1] + np.tanh(z[:, 2] * z[:, 3])

    names = tuple(f"x{j}" for j in range(width))
    explainer = Explainer(ModelInputs(names), LoadedModel(Wide(), ModelInputs(names), [], []).predict)
    rows, background = rng.normal(size=(4, width)), rng.normal(size=(10, width))
    sampled = explainer.explain(Frame("block", rows, names, 4), Options(background=background, max_evals=600))
    exact = explainer.explain(Frame("block", rows, names, 4), Options(background=background, max_evals=5000))
    assert sampled.evaluations == 600 and exact.evaluations == 2 ** width - 2
    assert_efficient(sampled, 1e-9)
    assert_efficient(exact, 1e-9)
    assert np.abs(sampled.attributions - exact.attributions).max() < 0.1 * np.abs(exact.attributions).max()


def test_other_scikit_learn_models_fall_back_to_kernel_shap(data):
    frame, labels, _ = data
    model = SVC().fit(frame, labels)
    found = explain(model, frame.to_numpy()[:4], background=frame.to_numpy()[:20])
    assert found.method == "kernel" and found.output.startswith("decision_function")
    np.testing.assert_allclose(found.values, model.decision_function(frame.iloc[:4]))
    assert_efficient(found, 1e-9)


def test_what_cannot_be_explained_is_an_explain_error(data):
    frame, labels, target = data
    three = LogisticRegression().fit(frame, labels + (target > 2))
    with pytest.raises(ExplainError, match="parameters.target"):
        explain(three, frame.to_numpy()[:2])
    with pytest.raises(ExplainError, match="target is 5"):
        explain(RandomForestRegressor(3).fit(frame, target), frame.to_numpy()[:2], target=5)
    with pytest.raises(ExplainError, match="background rows have 2 values"):
        explain(three, frame.to_numpy()[:2], target=1, background=np.zeros((1, 2)))
    words = Frame("frame", pd.DataFrame({name: ["x"] for name in COLUMNS}), COLUMNS, 1)
    with pytest.raises(ExplainError, match="numeric"):
        Explainer(ModelInputs(COLUMNS), None, three).explain(words, Options(target=1))
    for bad in ({"target": -1}, {"max_evals": "many"}, {"background": [[1, "x"]]}, {"background": 3}):
        with pytest.raises(ExplainError):
            options(bad)
    assert options({"target": 1, "max_evals": 64, "mode": "fast"})[1] == {"mode": "fast"}


# -- HTTP -------------------------------------------------------------------------------------------


def served(model):
    return Server(ServeConfig.from_env({"FERRY_MODEL_URI": "models:/fraud/3"}), loader=lambda _uri: model)


def run(server, scenario):
    async def main():
        client = TestClient(TestServer(server.app()))
        await client.start_server()
        try:
            await server.load()
            return await scenario(client)
        finally:
            await client.close()
            await server.stop_background()
    return asyncio.run(main())


class FastPath:
    """What the scikit-learn fast path loads: the estimator behind ``predict``."""

    def __init__(self, estimator):
        self.estimator = estimator

    def predict(self, table, params=None):
        return self.estimator.predict(table)


def request(rows, **parameters):
    body = {"id": "e1", "inputs": [{"name": "x", "shape": list(np.shape(rows)), "datatype": "FP64",
                                    "data": np.asarray(rows).ravel().tolist()}]}
    if parameters:
        body["parameters"] = parameters
    return body


def test_the_explain_route_answers_attributions_base_values_and_feature_names(data, tmp_path):
    import mlflow.sklearn

    from ferry.serving import model as model_loader

    frame, labels, _ = data
    estimator = RandomForestClassifier(n_estimators=20, random_state=0).fit(frame, labels)
    linear = LogisticRegression().fit(frame, labels)
    mlflow.sklearn.save_model(linear, tmp_path / "linear", input_example=frame.iloc[:30])
    rows = frame.to_numpy()[:3]

    async def forest(client):
        answer = await client.post("/v2/models/fraud/explain", json=request(rows))
        versioned = await client.post("/v2/models/fraud/versions/3/explain", json=request(rows[:1]))
        bad = [(await client.post(path, json=body)).status for path, body in [
            ("/v2/models/fraud/explain", {"inputs": []}),
            ("/v2/models/fraud/explain", request(rows, target=7)),
            ("/v2/models/fraud/explain", request(rows[:, :2])),
            ("/v2/models/other/explain", request(rows))]]
        metrics = await (await client.get("/metrics")).text()
        return answer.status, await answer.json(), versioned.status, bad, metrics

    status, body, versioned, bad, metrics = run(
        served(LoadedModel(FastPath(estimator), ModelInputs(COLUMNS), [], [])), forest)
    assert status == 200 and versioned == 200
    assert bad == [400, 400, 400, 404]
    outputs = {output["name"]: output for output in body["outputs"]}
    assert body["id"] == "e1" and body["parameters"]["feature_names"] == list(COLUMNS)
    assert body["parameters"]["method"] == "tree"
    assert outputs["attributions"]["shape"] == [3, 6] and outputs["attributions"]["datatype"] == "FP64"
    assert outputs["base_value"]["shape"] == [3]
    attributions = np.reshape(outputs["attributions"]["data"], (3, 6))
    np.testing.assert_allclose(attributions.sum(axis=1) + outputs["base_value"]["data"],
                               estimator.predict_proba(frame.iloc[:3])[:, 1], atol=1e-6)
    assert 'route="/v2/models/{name}/explain"' in metrics

    loaded = model_loader.load(str(tmp_path / "linear"))  # the fast path, with the input example

    async def with_example(client):
        return await (await client.post("/v2/models/fraud/explain", json=request(rows))).json()

    body = run(served(loaded), with_example)
    outputs = {output["name"]: output["data"] for output in body["outputs"]}
    mean = frame.iloc[:30].to_numpy().mean(axis=0)
    np.testing.assert_allclose(outputs["base_value"], [linear.coef_[0] @ mean + linear.intercept_[0]] * 3)
    np.testing.assert_allclose(outputs["value"], linear.decision_function(frame.iloc[:3]))


def test_a_pyfunc_model_is_explained_over_http_with_the_requests_background(data):
    frame, _, _ = data
    rows, background = frame.to_numpy()[:2], frame.to_numpy()[10:15]

    async def scenario(client):
        answer = await client.post("/v2/models/fraud/explain",
                                   json=request(rows, background=background.tolist(), max_evals=40))
        refused = await client.post("/v2/models/fraud/explain", json=request(rows, background=[[1.0]]))
        return await answer.json(), refused.status, (await refused.json())["error"]

    body, refused, message = run(served(LoadedModel(Smooth(), ModelInputs(COLUMNS), [], [])), scenario)
    outputs = {output["name"]: np.asarray(output["data"]) for output in body["outputs"]}
    assert body["parameters"]["method"] == "kernel" and body["parameters"]["evaluations"] == 40
    f = Smooth().predict(pd.DataFrame(rows))
    np.testing.assert_allclose(outputs["value"], f)
    np.testing.assert_allclose(outputs["base_value"], Smooth().predict(pd.DataFrame(background)).mean())
    np.testing.assert_allclose(outputs["attributions"].reshape(2, 6).sum(axis=1), f - outputs["base_value"],
                               atol=1e-9)
    assert refused == 400 and "background rows have 1 values" in message
