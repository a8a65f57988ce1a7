import json

from ferry.api import parse_spec
from ferry.builders.trainingrun import Tracking, build_children, build_job, service_name
from ferry.reconcilers.trainingrun import Observed, decide, failure_reason, scheduling_problem
from ferry.status import find_condition

OWNER = {"apiVersion": "ferry.dev/v1alpha1", "kind": "TrainingRun",
         "metadata": {"name": "fraud", "namespace": "ml", "uid": "uid-7"}}
TRACKING = Tracking(tracking_uri="http://mlflow", experiment="fraud", run_id="r123",
                    features_uri="s3://f/tx/v2/run/")


def spec(**extra):
    return parse_spec("TrainingRun", {"image": "trainer:1", "command": ["python", "train.py"],
                                      **extra})


def env(job):
    return {e["name"]: e.get("value", e.get("valueFrom"))
            for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_single_worker_job_with_documented_env():
    job = build_job(OWNER, spec(parameters={"lr": "0.1"}), TRACKING)
    assert job["metadata"]["name"] == "fraud" and "completionMode" not in job["spec"]
    values = env(job)
    assert values["MLFLOW_RUN_ID"] == "r123" and values["MLFLOW_TRACKING_URI"] == "http://mlflow"
    assert values["MLFLOW_EXPERIMENT_NAME"] == "fraud"
    assert values["FERRY_FEATURES_URI"] == "s3://f/tx/v2/run/"
    assert values["FERRY_RUN_UID"] == "uid-7"
    assert json.loads(values["FERRY_PARAMETERS"]) == {"lr": "0.1"}
    assert values["FERRY_PARAMETERS_FILE"] == "/etc/ferry/parameters.json"
    template = job["spec"]["template"]
    assert json.loads(template["metadata"]["annotations"]["ferry.dev/parameters"]) == {"lr": "0.1"}
    (volume,) = [v for v in template["spec"]["volumes"] if v["name"] == "parameters"]
    assert volume["downwardAPI"]["items"] == [{"path": "parameters.json", "fieldRef": {
        "fieldPath": "metadata.annotations['ferry.dev/parameters']"}}]
    assert "MASTER_ADDR" not in values


def test_gpus_become_limits_with_the_default_toleration():
    pod = build_job(OWNER, spec(resources={"gpus": 4, "cpu": "8", "memory": "32Gi"}),
                    TRACKING)["spec"]["template"]["spec"]
    resources = pod["containers"][0]["resources"]
    assert resources["limits"] == {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "4"}
    assert resources["requests"] == {"cpu": "8", "memory": "32Gi"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists",
                                   "effect": "NoSchedule"}]
    cpu_only = build_job(OWNER, spec(), TRACKING)["spec"]["template"]["spec"]
    assert cpu_only["tolerations"] == []


def test_distributed_run_is_an_indexed_job_with_headless_service_and_torchrun_env():
    children = build_children(OWNER, spec(workers=3, resources={"gpus": 2}), TRACKING)
    kinds = [c["kind"] for c in children]
    assert kinds == ["Service", "Job"]
    service, job = children
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {"batch.kubernetes.io/job-name": "fraud"}
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["parallelism"] == job["spec"]["completions"] == 3
    assert job["spec"]["template"]["spec"]["subdomain"] == service_name("fraud")
    values = env(job)
    assert values["MASTER_ADDR"] == f"fraud-0.{service_name('fraud')}"
    assert values["NNODES"] == "3" and values["NPROC_PER_NODE"] == "2"
    assert values["WORLD_SIZE"] == "6"
    assert "job-completion-index" in values["NODE_RANK"]["fieldRef"]["fieldPath"]


def test_kueue_failure_policy_deadline_and_scheduling_fields():
    job = build_job(OWNER, spec(queueName="team-a", activeDeadlineSeconds=3600, backoffLimit=5,
                                nonRetryableExitCodes=[2, 2, 3], priorityClassName="high",
                                nodeSelector={"pool": "a100"}, serviceAccountName="trainer",
                                imagePullSecrets=[{"name": "regcred"}], shmSize="8Gi"), TRACKING)
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert job["spec"]["suspend"] is True
    assert job["spec"]["activeDeadlineSeconds"] == 3600 and job["spec"]["backoffLimit"] == 5
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
    assert rules[1]["onExitCodes"]["values"] == [2, 3]
    pod = job["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "high" and pod["nodeSelector"] == {"pool": "a100"}
    assert pod["serviceAccountName"] == "trainer"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert {"/dev/shm", "/etc/ferry"} <= mounts
    # Pod Security "restricted", enforced by the test namespaces on the real node.
    assert pod["securityContext"] == {"runAsNonRoot": True,
                                      "seccompProfile": {"type": "RuntimeDefault"}}
    container = pod["containers"][0]["securityContext"]
    assert container == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def test_a_run_that_needs_root_opts_out_to_baseline():
    """``podSecurity: baseline`` drops exactly what ``restricted`` adds over baseline: the
    non-root requirement and the container's hardening; seccomp stays RuntimeDefault."""
    job = build_job(OWNER, spec(podSecurity="baseline"), TRACKING)
    pod = job["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
    assert "securityContext" not in pod["containers"][0]


def pending_pod(message):
    return {"status": {"conditions": [{"type": "PodScheduled", "status": "False",
                                       "reason": "Unschedulable", "message": message}]}}


def test_scheduling_problem_names_insufficient_gpu():
    assert scheduling_problem([pending_pod("0/5 nodes: 4 Insufficient nvidia.com/gpu")])[0] == \
        "InsufficientGPU"
    assert scheduling_problem([pending_pod("0/5 nodes: node(s) had untolerated taint")])[0] == \
        "Unschedulable"
    assert scheduling_problem([{"status": {}}]) is None


def test_failure_reasons_prefer_oom_and_image_errors():
    oom = {"status": {"containerStatuses": [{"name": "trainer", "state": {"terminated": {
        "reason": "OOMKilled", "exitCode": 137}}}]}}
    assert failure_reason(None, [oom])[0] == "OOMKilled"
    image = {"status": {"containerStatuses": [{"name": "trainer", "state": {"waiting": {
        "reason": "ImagePullBackOff", "message": "not found"}}}]}}
    assert failure_reason(None, [image]) == ("ImagePullError", "not found")
    job = {"status": {"conditions": [{"type": "Failed", "status": "True",
                                      "reason": "BackoffLimitExceeded", "message": "too many"}]}}
    assert failure_reason(job, []) == ("BackoffLimitExceeded", "too many")
    target = {"status": {"conditions": [{"type": "FailureTarget", "status": "True",
                                         "reason": "PodFailurePolicy", "message": "exit 2"}]}}
    assert failure_reason(target, []) == ("PodFailurePolicy", "exit 2")


def job(conditions=(), **status):
    return {"metadata": {"name": "fraud", "creationTimestamp": "2026-11-22T12:00:00Z"},
            "status": {"conditions": list(conditions), **status}}


def test_decide_phases_and_metrics():
    fields, _, requeue = decide(spec(), {}, 1, Observed(job=job(active=1),
                                                         metrics={"loss": 0.5, "step": 7}))
    assert fields["phase"] == "Running" and fields["progress"] == {
        "metrics": {"loss": 0.5, "step": 7}, "step": 7}
    assert requeue == 5.0
    done, events, _ = decide(spec(), fields, 1, Observed(
        job=job([{"type": "Complete", "status": "True"}], succeeded=1,
                completionTime="2026-11-22T12:05:00Z"), metrics={"auc": 0.9}))
    assert done["phase"] == "Succeeded" and done["metrics"] == {"auc": 0.9}
    assert find_condition(done["conditions"], "Succeeded")["status"] == "True"
    assert any(e.reason == "Completed" for e in events)
    failed, _, _ = decide(spec(), {}, 1, Observed(job=job(
        [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}], failed=3)))
    assert failed["phase"] == "Failed" and failed["attempts"] == 3


def test_attempts_count_failures_the_job_has_not_counted_yet():
    # FailureTarget can arrive while the last failed pod is still in uncountedTerminatedPods.
    target = [{"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded"}]
    fields, _, _ = decide(spec(), {}, 1, Observed(job=job(
        target, failed=1, uncountedTerminatedPods={"failed": ["uid-2"]})))
    assert fields["attempts"] == 2
    failed_pod = {"status": {"phase": "Failed"}}
    fields, _, _ = decide(spec(), {}, 1, Observed(job=job(target, failed=1),
                                                  pods=[failed_pod, failed_pod]))
    assert fields["attempts"] == 2


def bound_pod(at="2026-11-22T12:00:01Z"):
    return {"metadata": {"name": "fraud-x"}, "spec": {"nodeName": "kwok-gpu-0"},
            "status": {"phase": "Running", "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": at}]}}


def test_placement_at_the_first_try_is_no_event_but_recovering_from_a_problem_is():
    running = job(active=1)
    waiting, events, _ = decide(spec(), {}, 1, Observed(job=running))
    assert find_condition(waiting["conditions"], "Scheduled")["status"] == "Unknown"
    fields, events, _ = decide(spec(), waiting, 1, Observed(job=running, pods=[bound_pod()]))
    assert find_condition(fields["conditions"], "Scheduled")["status"] == "True"
    assert [e.reason for e in events] == []
    problem, events, _ = decide(spec(), {}, 1, Observed(job=job(), pods=[
        pending_pod("0/5 nodes: 4 Insufficient nvidia.com/gpu")]))
    assert [e.reason for e in events] == ["InsufficientGPU"]
    placed, events, _ = decide(spec(), problem, 1, Observed(job=running, pods=[bound_pod()]))
    assert [(e.type, e.reason) for e in events] == [("Normal", "Scheduled")]


def test_credentials_arrive_by_secret_reference_and_the_s3_endpoint_by_default():
    from dataclasses import replace

    run = spec(mlflow={"credentials": {"name": "mlflow-creds"}},
               checkpoint={"uri": "s3://ckpt/fraud/", "credentials": {"name": "s3-creds"}})
    job = build_job(OWNER, run, replace(TRACKING, s3_endpoint="http://s3.local:8333"))
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": "mlflow-creds"}},
                                    {"secretRef": {"name": "s3-creds"}}]
    values = env(job)
    assert values["AWS_ENDPOINT_URL_S3"] == values["MLFLOW_S3_ENDPOINT_URL"] == "http://s3.local:8333"
    assert values["FERRY_CHECKPOINT_URI"] == "s3://ckpt/fraud/"
    assert not any("SECRET" in name or "PASSWORD" in name for name in values)

    shared = spec(mlflow={"credentials": {"name": "creds"}},
                  checkpoint={"uri": "s3://ckpt/x/", "credentials": {"name": "creds"}})
    assert build_job(OWNER, shared, TRACKING)["spec"]["template"]["spec"]["containers"][0][
        "envFrom"] == [{"secretRef": {"name": "creds"}}]
    own = spec(env=[{"name": "AWS_ENDPOINT_URL_S3", "value": "http://mine"}])
    job = build_job(OWNER, own, replace(TRACKING, s3_endpoint="http://s3.local:8333"))
    names = [e["name"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]]
    assert names.count("AWS_ENDPOINT_URL_S3") == 1 and env(job)["AWS_ENDPOINT_URL_S3"] == \
        "http://mine", "the spec's own value wins, once"


def test_each_sweep_trial_checkpoints_under_its_own_prefix():
    from ferry.builders.trainingrun import build_trial

    owner = {**OWNER, "spec": {"image": "trainer:1", "checkpoint": {"uri": "s3://ckpt/fraud"},
                               "sweep": {"parameters": {}}}}
    first, second = (build_trial(owner, index, {"lr": str(index)}, None) for index in (0, 1))
    assert first["spec"]["checkpoint"]["uri"] == "s3://ckpt/fraud/fraud-t0/"
    assert second["spec"]["checkpoint"]["uri"] == "s3://ckpt/fraud/fraud-t1/"
    assert owner["spec"]["checkpoint"]["uri"] == "s3://ckpt/fraud", "the sweep's spec is untouched"


def namespace_enforcing(level):
    return {"metadata": {"name": "team", "labels": {"pod-security.kubernetes.io/enforce": level}}}


def test_a_baseline_run_in_a_restricted_namespace_waits_with_the_reason_and_one_warning():
    from ferry.reconcilers.trainingrun import pod_security_refusal

    run = spec(podSecurity="baseline")
    assert pod_security_refusal(run, namespace_enforcing("baseline")) is None
    assert pod_security_refusal(run, namespace_enforcing("privileged")) is None
    assert pod_security_refusal(run, {"metadata": {"name": "team"}}) is None
    assert pod_security_refusal(spec(), namespace_enforcing("restricted")) is None
    refused = pod_security_refusal(run, namespace_enforcing("restricted"))
    assert "spec.podSecurity is baseline" in refused and "enforces Pod Security restricted" in refused
    fields, events, _ = decide(run, {}, 1, Observed(job=None, refused=refused))
    assert fields["phase"] == "Pending" and fields["message"] == refused
    assert find_condition(fields["conditions"], "Succeeded")["reason"] == "PodSecurityForbidden"
    assert [(e.type, e.reason) for e in events] == [("Warning", "PodSecurityForbidden")]
    again, events, _ = decide(run, fields, 1, Observed(job=None, refused=refused))
    assert events == [], "one Warning, not one per retry"
