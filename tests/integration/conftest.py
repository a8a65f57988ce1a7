"""Fixtures shared by the integration modules: Prometheus scraping the serving pods and real
MLflow models to serve."""

import pytest

from support.environ import services_environment


def pytest_collection_modifyitems(items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def scraped(cluster, services):
    """Prometheus discovers the cluster's annotated serving pods through the apiserver and scrapes
    them at their pod IPs, every second."""
    services.scrape_pods(cluster.local.kubeconfig)
    return services


@pytest.fixture(scope="session")
def runs(services) -> dict[str, str]:
    """Three real MLflow models: y = 2·x0 and y = 3·x0 (scikit-learn), and a flaky pyfunc that
    fails on every row with x0 > 0 (half of the test traffic). Values are model sources: the
    logged models' URIs (``models:/m-…``; MLflow 3 keeps a logged model's files there, not under
    the run), and ``runs:/<run>/model`` for the first."""
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression

    class Flaky(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            if (model_input["x0"] > 0).any():
                raise RuntimeError("flaky model: cannot score positive x0")
            return model_input["x0"] * 3

    with services_environment(services):
        mlflow.set_tracking_uri(services.endpoints["mlflow"])
        mlflow.set_experiment("inferenceservice-tests")
        rng = np.random.default_rng(7)
        frame = pd.DataFrame({"x0": rng.normal(size=64), "x1": rng.normal(size=64)})
        found = {}
        for name, factor in (("double", 2.0), ("triple", 3.0)):
            model = LinearRegression().fit(frame, frame["x0"] * factor)
            with mlflow.start_run(run_name=name) as run:
                found[name] = mlflow.sklearn.log_model(
                    model, name="model", signature=infer_signature(frame, frame["x0"])).model_uri
            if name == "double":  # the usual way to name a run's model works too
                found[name] = f"runs:/{run.info.run_id}/model"
        with mlflow.start_run(run_name="flaky"):
            found["flaky"] = mlflow.pyfunc.log_model(
                name="model", python_model=Flaky(),
                signature=infer_signature(frame, frame["x0"])).model_uri
        return found


def pytest_terminal_summary(terminalreporter):
    """The chaos table, when chaos trials ran (``make chaos`` greps its CHAOS lines)."""
    from support.chaos import RECORDS, report

    if RECORDS:
        for line in report(RECORDS):
            terminalreporter.write_line(line)
