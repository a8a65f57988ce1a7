"""The demo flow of ``ferry-dev up --examples`` and what ``ferry-dev down`` keeps, without a cluster."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ferry_dev import devenv

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"


def test_the_demo_examples_chain_by_name_and_pin_no_registry_number():
    """Pipeline -> run -> version -> service, each referring to the one before by name, so the
    demo serves what its own TrainingRun trained whatever versions the registry already holds."""
    objects = devenv.documents(EXAMPLES)
    of = {o["kind"]: o for o in objects}
    assert set(of) == {"FeaturePipeline", "TrainingRun", "ModelVersion", "InferenceService"}
    pipeline, run = of["FeaturePipeline"], of["TrainingRun"]
    version, service = of["ModelVersion"], of["InferenceService"]
    assert run["spec"]["features"] == pipeline["metadata"]["name"]
    assert "register" not in run["spec"]  # one ModelVersion per run: the explicit one
    assert version["spec"]["trainingRunRef"] == run["metadata"]["name"]
    assert version["spec"]["features"] == pipeline["metadata"]["name"]
    assert service["spec"]["model"]["modelVersion"] == version["metadata"]["name"]
    assert not re.search(r"-\d+$", version["metadata"]["name"])
    assert version["spec"]["approval"]["required"]  # the demo approves it as a named user


def test_the_sample_request_has_the_seeded_feature_columns():
    query = devenv.documents(EXAMPLES)[0]["spec"]["transform"]["sql"]["query"]
    for column in ("customer_id", "amount", "log_amount", "country"):
        assert column in query and column in devenv.SAMPLE


def test_gate_summary_says_what_each_gate_saw():
    summary = devenv.gate_summary([
        {"name": "metric auc", "verdict": "Passed", "observed": "0.97", "threshold": ">= 0.85"},
        {"name": "beatChampion auc", "verdict": "Passed", "observed": "0.97",
         "message": "no champion to beat"},
        {"name": "featuresReady", "verdict": "Passed", "observed": "Ready"}])
    assert summary == ("metric auc Passed (0.97 >= 0.85); beatChampion auc Passed (0.97, no "
                       "champion to beat); featuresReady Passed (Ready)")
    assert devenv.gate_summary([]) == "no gates"


def test_the_approver_is_named(monkeypatch):
    monkeypatch.setenv(devenv.APPROVER_ENV, "alice")
    assert devenv.demo_approver() == "alice"
    monkeypatch.delenv(devenv.APPROVER_ENV)
    assert devenv.demo_approver()  # the login name


def stopped_environment(state_dir: Path) -> Path:
    (state_dir / "services" / "seaweedfs").mkdir(parents=True)
    (state_dir / "services" / "mlflow.db").write_text("")
    (state_dir / "operator.log").write_text("")
    return state_dir


def test_down_says_what_it_keeps_and_how_to_wipe_it(tmp_path, monkeypatch):
    monkeypatch.setenv("FERRY_CACHE", str(tmp_path / "cache"))
    state_dir = stopped_environment(tmp_path / "dev")
    report = devenv.after_down(state_dir)
    assert f"Kept in {state_dir}" in report
    assert "services/mlflow.db" in report and "model registry" in report
    assert "services/seaweedfs" in report and "S3 data" in report
    assert "prometheus-data" not in report  # only what is there
    assert "ferry-dev down --wipe" in report and f"rm -rf {state_dir}" in report
    assert str(tmp_path / "cache" / "bin") in report
    assert "Nothing kept" in devenv.after_down(tmp_path / "absent")


def test_wipe_removes_the_state_but_not_a_running_environment_or_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FERRY_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache" / "bin").mkdir(parents=True)
    state_dir = stopped_environment(tmp_path / "dev")
    (state_dir / "dev.json").write_text("{}")
    with pytest.raises(RuntimeError, match="refusing"):
        devenv.wipe_state(state_dir)
    (state_dir / "dev.json").unlink()
    with pytest.raises(RuntimeError, match="refusing"):
        devenv.wipe_state(tmp_path / "cache")
    report = devenv.after_down(state_dir, wipe=True)
    assert "Wiped" in report and "MLflow registry" in report
    assert not state_dir.exists() and (tmp_path / "cache" / "bin").exists()
    assert "Nothing to wipe" in devenv.wipe_state(state_dir)


class FakeCluster:
    """kubectl against an in-memory demo namespace whose "operator" reacts at once."""

    kubeconfig = Path("kubeconfig")

    def __init__(self, gates_pass: bool = True):
        import yaml

        self.yaml, self.gates_pass = yaml, gates_pass
        self.applied: list[list[str]] = []
        self.status: dict[tuple[str, str], dict] = {}
        self.approved_by: str | None = None

    def result(self, stdout="", returncode=0):
        from types import SimpleNamespace

        return SimpleNamespace(stdout=stdout, stderr="", returncode=returncode)

    def kubectl(self, *args, input=None, check=True):
        import json

        if args[0] == "apply":
            docs = list(self.yaml.safe_load_all(input))
            self.applied.append([f"{d['kind']}/{d['metadata']['name']}" for d in docs])
            for doc in docs:
                self.react(doc)
            return self.result()
        if args[:2] == ("get", "cronjob"):
            return self.result()
        if args[:2] == ("create", "job"):
            run = {"runId": args[3], "state": "Succeeded", "rows": 500}
            self.status[("featurepipelines", "transactions-v2")] |= {
                "lastRun": run, "lastSuccessfulRun": run,
                "latestOutputUri": f"s3://ferry/features/transactions/v2/{args[3]}/"}
            return self.result()
        if args[:2] == ("get", "service"):
            return self.result(json.dumps({"spec": {"clusterIP": "10.96.0.20", "selector": {
                "ferry.dev/inferenceservice": "fraud"}, "ports": [
                {"name": "http", "port": 8080, "targetPort": "http"}]}}))
        if args[:2] == ("get", "pods"):
            return self.result(json.dumps({"items": []}))
        kind, name = args[1].split(".")[0], args[2]
        status = self.status.get((kind, name))
        if status is None:
            return self.result(returncode=1)
        return self.result(json.dumps({"status": status}))

    def react(self, doc):
        kind, name = doc["kind"].lower() + "s", doc["metadata"]["name"]
        if kind == "featurepipelines":
            self.status[(kind, name)] = {"phase": "Ready"}
        elif kind == "trainingruns":
            self.status[(kind, name)] = {"phase": "Succeeded", "mlflowRunId": "r1",
                                         "metrics": {"auc": 0.9668, "accuracy": 0.91}}
        elif kind == "modelversions":
            gates = [{"name": "metric auc", "verdict": "Passed" if self.gates_pass else "Failed",
                      "observed": "0.9668", "threshold": ">= 0.85"},
                     {"name": "signature", "verdict": "Passed",
                      "observed": "customer_id,amount,log_amount"}]
            self.status[(kind, name)] = {
                "mlflowVersion": "4", "source": "models:/m-1", "gates": gates,
                "phase": "AwaitingApproval" if self.gates_pass else "Rejected",
                "conditions": [{"type": "GatesPassed", "message": "metric auc: 0.9668 vs >= 0.99"}]}
        elif kind == "inferenceservices":
            self.status[(kind, name)] = {"phase": "Degraded", "message": "not approved"}

    def approve(self, argv, **_):
        by = argv[argv.index("--by") + 1]
        name = argv[argv.index("approve") + 1].split("/")[1]
        self.status[("modelversions", name)] |= {
            "phase": "Serving", "approval": {"by": by, "at": "2026-01-01T00:00:00Z"}}
        self.status[("inferenceservices", "fraud")] = {
            "phase": "Healthy", "stableVersion": name, "replicas": 2,
            "rollout": {"stable": {"modelName": "fraud", "mlflowVersion": "4"}}}


def fake_demo(monkeypatch, cluster):
    posted, champions = [], []
    monkeypatch.setattr(devenv.subprocess, "run", cluster.approve)
    monkeypatch.setattr(devenv, "http_post",
                        lambda url, body: posted.append((url, body)) or '{"predictions": [1]}')
    monkeypatch.setattr(devenv, "forget_earlier_champion", lambda env, model: champions.append(model))
    return posted, champions


def test_the_demo_runs_the_steps_in_order_and_approves_as_a_named_user(monkeypatch, capsys):
    import json

    cluster = FakeCluster()
    posted, champions = fake_demo(monkeypatch, cluster)
    devenv.run_demo(cluster, EXAMPLES, {"FERRY_MLFLOW_URI": "http://mlflow"}, approver="alice")
    assert champions == ["fraud"]
    assert cluster.applied[0] == ["FeaturePipeline/transactions-v2"]  # before the run reads it
    assert sorted(cluster.applied[1]) == ["InferenceService/fraud", "ModelVersion/fraud-fraud-train",
                                          "TrainingRun/fraud-train"]
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("demo: ")]
    steps = [line.split(": ")[1] for line in lines]
    assert steps == ["features computed", "trained", "registered", "gated", "approved by alice",
                     "rolled out", "prediction answered"]
    assert "-demo-" in lines[0] and "500 rows" in lines[0]
    assert "auc 0.9668" in lines[1]
    assert "fraud version 4" in lines[2]
    assert "ferry approve mv/fraud-fraud-train --by alice" in lines[4]
    assert "fraud v4" in lines[5]
    assert lines[6].endswith('-> {"predictions": [1]}')
    (url, body), = posted
    assert url == "http://10.96.0.20:8080/invocations"
    assert set(json.loads(body)["dataframe_records"][0]) == {"customer_id", "amount", "log_amount"}


def test_a_rejected_version_stops_the_demo_saying_why(monkeypatch):
    cluster = FakeCluster(gates_pass=False)
    fake_demo(monkeypatch, cluster)
    with pytest.raises(devenv.DemoError, match="fraud-fraud-train was Rejected: metric auc"):
        devenv.run_demo(cluster, EXAMPLES, {}, approver="alice")
