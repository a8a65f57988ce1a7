"""``ferry get``: the tree it prints for each kind (pure renderer) and its ``kind/NAME`` parsing."""

from __future__ import annotations

import pytest

from ferry.api import KINDS
from ferry.builders.inferenceservice import build_deployment, Serving
from ferry.api.inferenceservice import InferenceServiceSpec, ServedModel
from ferry.cli import build_parser, main
from ferry.targets import TargetError, parse_target
from ferry.tree import (
    Style, pod_state, render_featurepipeline, render_inferenceservice, render_modelversion,
    render_trainingrun)

T0 = "2026-12-02T12:00:00Z"


def condition(type_, status, reason, message=""):
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": T0, "observedGeneration": 2}


SPEC = {"model": {"modelName": "fraud", "policy": "latestApproved"}, "replicas": 2,
        "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {"duration": "1m"}},
                                          {"setWeight": 50}, {"pause": {}}]}}}
OWNER = {"apiVersion": "ferry.dev/v1alpha1", "kind": "InferenceService",
         "metadata": {"name": "fraud", "namespace": "team", "uid": "u-1", "generation": 2},
         "spec": SPEC}


def deployment(model_version, mlflow_version, role, ready, replicas=2):
    """A Deployment as the builder makes it, with the status the apiserver adds."""
    built = build_deployment(OWNER, InferenceServiceSpec.model_validate(SPEC),
                             ServedModel(model_version=model_version, mlflow_version=mlflow_version,
                                         model_name="fraud"), replicas, role, Serving(image="ferry"))
    return built | {"status": {"replicas": replicas, "readyReplicas": ready}}


def pod(name, deployment_, ready=True, waiting=None, restarts=0):
    state = {"waiting": {"reason": waiting}} if waiting else {"running": {"startedAt": T0}}
    return {"metadata": {"name": name, "namespace": "team", "creationTimestamp": T0,
                         "labels": deployment_["spec"]["template"]["metadata"]["labels"]},
            "spec": {"containers": [{"name": "server"}]},
            "status": {"phase": "Running" if ready else "Pending",
                       "containerStatuses": [{"name": "server", "ready": ready, "restartCount": restarts,
                                              "state": state}]}}


def served(mv, version):
    return {"modelVersion": mv, "mlflowVersion": version, "modelName": "fraud",
            "uri": f"models:/fraud/{version}"}


CANARY = {
    **OWNER,
    "status": {
        "observedGeneration": 2, "phase": "Progressing",
        "message": "canary 50%: waiting for a passing measurement",
        "url": "http://fraud.team.svc.cluster.local", "selector": "ferry.dev/inferenceservice=fraud",
        "replicas": 3, "stableVersion": "fraud-6", "canaryVersion": "fraud-7",
        "canaryWeight": 50, "currentStep": 2,
        "analysis": [
            {"name": "errorRate", "verdict": "Passed", "value": 0.002, "threshold": 0.01, "op": "<=",
             "time": "2026-12-02T11:59:30Z", "version": "7"},
            {"name": "errorRate", "verdict": "Failed", "value": 0.09, "threshold": 0.01, "op": "<=",
             "time": T0, "version": "7"},
            {"name": "latencyP99", "verdict": "Inconclusive", "threshold": 1.0, "op": "<=",
             "time": T0, "version": "7", "message": "no data"}],
        "rollout": {"strategy": "canary", "stable": served("fraud-6", "6"),
                    "candidate": served("fraud-7", "7"), "step": 2, "weight": 50,
                    "stepStartedAt": T0, "analysisFailures": 1},
        "drift": {"time": T0, "window": "1h", "verdict": "Drifted",
                  "driftedFeatures": {"amount": 0.31, "country": 0.2}, "driftShare": 0.67,
                  "featuresChecked": 3, "rows": 1200, "referenceRows": 5000,
                  "reportUri": "s3://ferry/drift/team/fraud/drift.json",
                  "htmlReportUri": "s3://ferry/drift/team/fraud/drift.html"},
        "retrain": {"reportUri": "s3://ferry/drift/team/fraud/drift.json", "decision": "Triggered",
                    "count": 2, "lastRun": "fraud-retrain-2", "lastTriggerTime": T0},
        "conditions": [
            condition("Ready", "True", "Serving", "fraud-6: 2 ready replica(s)"),
            condition("Progressing", "True", "Analysing", "waiting for a passing measurement"),
            condition("FeaturesReady", "False", "FeaturesNotReady", "fraud-features is Stale"),
        ],
    },
}


def canary_children():
    stable = deployment("fraud-6", "6", "stable", ready=2)
    canary = deployment("fraud-7", "7", "canary", ready=0, replicas=1)
    pods = [pod("fraud-fraud-6-aaa-1", stable), pod("fraud-fraud-6-aaa-2", stable),
            pod("fraud-fraud-7-bbb-1", canary, ready=False, waiting="CrashLoopBackOff", restarts=4)]
    return [canary, stable], pods


def test_inferenceservice_shows_versions_step_weight_and_each_deployments_pods():
    deployments, pods = canary_children()
    text = "\n".join(render_inferenceservice(CANARY, deployments, pods))
    assert "Phase:" in text and "Progressing" in text
    assert "Stable:    fraud-6  (fraud v6)" in text
    assert "Candidate: fraud-7  (fraud v7)" in text
    assert "Canary  step 3/4  weight 50%" in text
    lines = text.splitlines()
    root = lines.index("InferenceService fraud  Progressing")
    assert lines[root + 1:] == [
        "|-- Deployment fraud-fraud-6  stable  fraud-6 (v6)  ready 2/2",
        "|   |-- Pod fraud-fraud-6-aaa-1  Running  ready 1/1",
        "|   `-- Pod fraud-fraud-6-aaa-2  Running  ready 1/1",
        "`-- Deployment fraud-fraud-7  canary  fraud-7 (v7)  ready 0/1",
        "    `-- Pod fraud-fraud-7-bbb-1  CrashLoopBackOff  ready 0/1, restarts 4",
    ]


def test_inferenceservice_shows_the_newest_result_of_each_check():
    text = "\n".join(render_inferenceservice(CANARY, *canary_children()))
    assert "errorRate  Failed  0.09 (pass: <= 0.01)  7  2026-12-02T12:00:00Z" in text
    assert "0.002" not in text
    assert "latencyP99  Inconclusive  - (pass: <= 1)" in text and "no data" in text


def test_inferenceservice_shows_drift_retraining_and_only_conditions_not_true():
    text = "\n".join(render_inferenceservice(CANARY, *canary_children()))
    assert "Drift  Drifted  share 0.67 of 3 features  rows 1200  window 1h" in text
    assert "drifted: amount=0.31, country=0.2" in text
    assert "report: s3://ferry/drift/team/fraud/drift.html" in text
    assert "Retraining  Triggered  runs 2  last fraud-retrain-2 at 2026-12-02T12:00:00Z" in text
    conditions = text[text.index("Conditions (not True):"):text.index("InferenceService fraud")]
    assert "FeaturesReady=False FeaturesNotReady: fraud-features is Stale" in conditions
    assert "  Ready=" not in conditions and "Progressing" not in conditions


def test_a_healthy_service_has_no_candidate_analysis_or_conditions_section():
    stable = deployment("fraud-6", "6", "stable", ready=2)
    healthy = {**OWNER, "status": {
        "phase": "Healthy", "message": "fraud-6: 2 ready replica(s)", "stableVersion": "fraud-6",
        "replicas": 2, "rollout": {"strategy": "canary", "stable": served("fraud-6", "6")},
        "conditions": [condition("Ready", "True", "Serving"),
                       condition("Progressing", "False", "Serving")]}}
    text = "\n".join(render_inferenceservice(healthy, [stable], [pod("p-1", stable)]))
    assert "Strategy:  Canary\n" in text and "Candidate" not in text
    assert "Analysis" not in text and "Conditions" not in text and "Monitoring" not in text


def test_a_terminal_gets_symbols_and_colour_and_a_pipe_does_not():
    deployments, pods = canary_children()
    plain = "\n".join(render_inferenceservice(CANARY, deployments, pods))
    coloured = "\n".join(render_inferenceservice(CANARY, deployments, pods, Style(tty=True)))
    assert plain.isascii() and "\x1b[" not in plain
    assert "\x1b[31m✖ CrashLoopBackOff\x1b[0m" in coloured and "├── Deployment" in coloured


def test_pods_of_other_versions_and_the_drift_monitor_are_not_listed_under_a_deployment():
    stable = deployment("fraud-6", "6", "stable", ready=1)
    monitor = {"metadata": {"name": "fraud-drift-123-x", "labels": {
        "ferry.dev/inferenceservice": "fraud", "app.kubernetes.io/component": "drift-monitor"}},
        "status": {"phase": "Succeeded"}}
    text = "\n".join(render_inferenceservice(CANARY, [stable], [monitor]))
    assert "fraud-drift" not in text


def test_pod_state_reads_like_kubectl():
    assert pod_state({"metadata": {"deletionTimestamp": T0}, "status": {"phase": "Running"}}) \
        == "Terminating"
    assert pod_state({"metadata": {}, "status": {"phase": "Running", "containerStatuses": [
        {"state": {"terminated": {"reason": "OOMKilled"}}}]}}) == "OOMKilled"
    assert pod_state({"metadata": {}, "status": {"phase": "Succeeded", "containerStatuses": [
        {"state": {"terminated": {"reason": "Completed"}}}]}}) == "Succeeded"
    assert pod_state({"metadata": {}}) == "Pending"


# --- ModelVersion --------------------------------------------------------------------------------


MODEL_VERSION = {
    "apiVersion": "ferry.dev/v1alpha1", "kind": "ModelVersion",
    "metadata": {"name": "fraud-fraud-train", "namespace": "team"},
    "spec": {"modelName": "fraud", "trainingRunRef": "fraud-train", "features": "fraud-features",
             "approval": {"required": True, "approvedBy": "alice", "comment": "reviewed AUC"}},
    "status": {
        "phase": "Serving", "mlflowVersion": "7", "source": "runs:/abc123/model",
        "lineage": {"trainingRun": "fraud-train", "runId": "abc123", "experiment": "4",
                    "image": "ghcr.io/ferry-dev/ferry:0.1.0", "featurePipeline": "fraud-features",
                    "featureVersion": "v2", "dataUri": "s3://ferry/features/fraud/v2/run-9/",
                    "parameters": {"lr": "0.1"}, "metrics": {"auc": 0.93}},
        "gates": [{"name": "auc", "observed": "0.93", "threshold": ">= 0.9", "verdict": "Passed"},
                  {"name": "beatChampion", "verdict": "Passed", "message": "no champion yet"}],
        "approval": {"by": "alice", "at": T0, "comment": "reviewed AUC"},
        "servedBy": ["fraud"],
        "conditions": [condition("Ready", "True", "Serving"),
                       condition("RegistryReachable", "True", "Reachable")],
    },
}


def test_modelversion_shows_registry_gates_approval_and_the_lineage_chain():
    run = {"metadata": {"name": "fraud-train"}, "status": {"phase": "Succeeded"}}
    pipeline = {"metadata": {"name": "fraud-features"}, "spec": {"version": "v2"},
                "status": {"phase": "Ready"}}
    lines = render_modelversion(MODEL_VERSION, run, pipeline)
    text = "\n".join(lines)
    assert "MLflow:    fraud version 7" in text and "Source:    runs:/abc123/model" in text
    assert "Approval:  approved by alice at 2026-12-02T12:00:00Z: reviewed AUC" in text
    assert "Served by: fraud" in text
    assert "|-- auc  Passed  observed 0.93  threshold >= 0.9" in text
    assert "`-- beatChampion  Passed  no champion yet" in text
    lineage = lines[lines.index("Lineage:"):]
    assert lineage[:2] == ["Lineage:", "`-- TrainingRun fraud-train  Succeeded"]
    assert "    |-- MLflow run: abc123" in lineage and "    |-- metrics: auc=0.93" in lineage
    assert lineage[-2:] == ["    `-- FeaturePipeline fraud-features v2  Ready",
                            "        `-- data: s3://ferry/features/fraud/v2/run-9/"]


def test_modelversion_awaiting_approval_whose_run_is_gone():
    waiting = {**MODEL_VERSION, "status": {
        **MODEL_VERSION["status"], "phase": "AwaitingApproval", "approval": None, "servedBy": [],
        "conditions": [condition("Ready", "False", "AwaitingApproval", "approval.required")]}}
    text = "\n".join(render_modelversion(waiting, None, None))
    assert "Approval:  required, not yet approved" in text and "Served by" not in text
    assert "TrainingRun fraud-train  (not found)" in text
    assert "Ready=False AwaitingApproval: approval.required" in text


# --- TrainingRun and FeaturePipeline -------------------------------------------------------------


def job(name, **status):
    return {"metadata": {"name": name, "creationTimestamp": T0}, "status": status}


def test_trainingrun_shows_progress_jobs_and_trials():
    run = {"metadata": {"name": "sweep", "namespace": "team"}, "spec": {"image": "x"}, "status": {
        "phase": "Running", "mlflowRunId": "r1", "experimentId": "4",
        "progress": {"step": 120, "epoch": 3, "metrics": {"loss": 0.12}},
        "trials": [{"name": "sweep-t0", "phase": "Succeeded", "objective": 0.91,
                    "parameters": {"lr": "0.1"}},
                   {"name": "sweep-t1", "phase": "Running", "parameters": {"lr": "0.01"}}],
        "bestTrial": "sweep-t0", "bestObjective": 0.91,
        "conditions": [condition("Succeeded", "Unknown", "Running")]}}
    jobs = [job("sweep-0", failed=1, conditions=[{"type": "Failed", "status": "True"}]),
            job("sweep-1", active=2)]
    lines = render_trainingrun(run, jobs)
    text = "\n".join(lines)
    assert "Progress:   step 120, epoch 3, loss=0.12" in text
    assert "MLflow run: r1  (experiment 4)" in text and "Best trial: sweep-t0 (0.91)" in text
    assert "Succeeded=Unknown Running" in text
    assert lines[lines.index("TrainingRun sweep  Running") + 1:] == [
        "|-- Job sweep-0  Failed  failed 1",
        "|-- Job sweep-1  Running  active 2",
        "|-- TrainingRun sweep-t0  Succeeded  objective 0.91  lr=0.1",
        "`-- TrainingRun sweep-t1  Running  lr=0.01",
    ]


def test_featurepipeline_shows_runs_output_failed_expectations_and_jobs():
    pipeline = {"metadata": {"name": "fraud-features", "namespace": "team"},
                "spec": {"featureSet": "fraud", "version": "v2", "schedule": "0 * * * *"},
                "status": {"phase": "Stale",
                           "lastRun": {"state": "Failed", "time": T0},
                           "lastSuccessfulRun": {"state": "Succeeded", "time": "2026-12-02T11:00:00Z",
                                                 "rows": 5000, "outputUri": "s3://ferry/f/v2/9/"},
                           "latestOutputUri": "s3://ferry/f/v2/9/",
                           "expectationResults": [
                               {"expectation": "amount notNull", "passed": False, "observed": "3 nulls"},
                               {"expectation": "rowCount", "passed": True}],
                           "usedBy": ["trainingrun/fraud-train"],
                           "conditions": [condition("Ready", "False", "Stale", "older than 2h")]}}
    lines = render_featurepipeline(pipeline, [job("fraud-features-29000", succeeded=1, conditions=[
        {"type": "Complete", "status": "True"}])])
    text = "\n".join(lines)
    assert "Feature set:  fraud v2" in text and "Schedule:     0 * * * *" in text
    assert "Last run:     Failed 2026-12-02T12:00:00Z" in text
    assert "Last success: Succeeded 2026-12-02T11:00:00Z rows 5000 s3://ferry/f/v2/9/" in text
    assert "`-- amount notNull  observed 3 nulls" in text and "rowCount" not in text
    assert "Ready=False Stale: older than 2h" in text
    assert lines[-1] == "`-- Job fraud-features-29000  Complete  succeeded 1"


# --- kind/NAME -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kubectl_name_of_a_kind_is_accepted(kind):
    info = KINDS[kind]
    for word in (*info.short_names, info.singular, info.plural, info.kind, f"{info.plural}.ferry.dev"):
        assert parse_target(f"{word}/x") == (info, "x")


def test_unknown_kinds_and_missing_names_are_refused_with_what_is_accepted():
    with pytest.raises(TargetError, match="unknown kind 'deploy': use fp/featurepipeline/"):
        parse_target("deploy/x")
    with pytest.raises(TargetError, match="is not KIND/NAME"):
        parse_target("infsvc/")
    with pytest.raises(TargetError, match="unknown kind 'tr': use mv/modelversion/modelversions$"):
        parse_target("tr/x", ("ModelVersion",))


def test_get_parses_target_namespace_and_watch():
    args = build_parser().parse_args(["get", "infsvc/fraud", "-n", "team", "--watch"])
    assert (args.target, args.namespace, args.watch) == ("infsvc/fraud", "team", True)


def test_get_of_an_unknown_kind_exits_2_before_reaching_a_cluster(capsys):
    assert main(["get", "deployment/fraud", "--kubeconfig", "/nonexistent"]) == 2
    assert "ferry get: unknown kind 'deployment'" in capsys.readouterr().err


@pytest.mark.parametrize("argv, kind", [(["promote", "mv/x"], "mv"), (["approve", "infsvc/x"], "infsvc")])
def test_the_other_object_commands_share_the_parsing(capsys, argv, kind):
    assert main([*argv, "--kubeconfig", "/nonexistent"]) == 2
    assert f"unknown kind '{kind}'" in capsys.readouterr().err


def test_the_kubectl_plugin_is_the_same_entry_point():
    """`kubectl ferry ...` finds `kubectl-ferry` on PATH; every subcommand works through it."""
    import tomllib
    from pathlib import Path

    scripts = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())[
        "project"]["scripts"]
    assert scripts["kubectl-ferry"] == scripts["ferry"] == "ferry.cli:main"


# --- the shell: --watch and a missing object -----------------------------------------------------


@pytest.fixture
def frames(monkeypatch):
    """`ferry get` against a fake cluster whose view goes through ``frames`` (an exception in it
    is raised); each poll's sleep moves to the next, Ctrl-C after the last."""
    import ferry.get_cli
    import ferry.targets

    shown: list = []
    monkeypatch.setattr(ferry.targets, "connect", lambda kubeconfig, namespace: (None, namespace))
    monkeypatch.setattr(ferry.get_cli, "Reader", lambda api_client, namespace: None)

    def view(reader, kind, name, style):
        frame = shown[0]
        if isinstance(frame, Exception):
            raise frame
        return [f"{kind} {name}", frame]

    def sleep(seconds):
        assert seconds == ferry.get_cli.WATCH_INTERVAL
        shown.pop(0)
        if not shown:
            raise KeyboardInterrupt

    monkeypatch.setattr(ferry.get_cli, "view", view)
    monkeypatch.setattr(ferry.get_cli.time, "sleep", sleep)
    return shown


def test_watch_redraws_only_when_the_text_changes_and_ctrl_c_exits_0(frames, capsys):
    frames += ["ready 1/2", "ready 1/2", "ready 2/2", "ready 2/2"]
    assert main(["get", "infsvc/fraud", "-n", "team", "--watch"]) == 0
    assert capsys.readouterr().out == ("InferenceService fraud\nready 1/2\n\n"
                                       "InferenceService fraud\nready 2/2\n")


def test_without_watch_it_prints_once(frames, capsys):
    frames += ["one", "two"]
    assert main(["get", "tr/train", "-n", "team"]) == 0
    assert capsys.readouterr().out == "TrainingRun train\none\n"


def test_a_missing_object_is_named_with_its_namespace(frames, capsys):
    from kubernetes.client import ApiException

    frames.append(ApiException(status=404, reason="Not Found"))
    assert main(["get", "mv/nope", "-n", "team"]) == 1
    assert capsys.readouterr().err == "ferry get: modelversion.ferry.dev/nope not found in namespace team\n"
