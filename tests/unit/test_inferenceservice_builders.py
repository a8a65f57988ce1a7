"""InferenceService manifests from a rollout plan (pure)."""

from __future__ import annotations

from ferry.api import parse_spec
from ferry.api.inferenceservice import ServedModel
from ferry.builders.inferenceservice import (
    Serving, build_children, deployment_name, label_value, prediction_log_uri)
from ferry.reconcilers.rollout import Plan

OWNER = {"apiVersion": "ferry.dev/v1alpha1", "kind": "InferenceService",
         "metadata": {"name": "fraud", "namespace": "team", "uid": "u-1"}}
SERVING = Serving(image="ferry:test", mlflow_uri="http://mlflow:5000", s3_endpoint="http://s3",
                  bucket="ferry")
V1 = ServedModel(model_version="fraud-1", mlflow_version="1", model_name="fraud",
                 uri="models:/fraud/1")
V2 = ServedModel(model_version="fraud-2", mlflow_version="2", model_name="fraud",
                 uri="models:/fraud/2")


def spec(**fields):
    return parse_spec("InferenceService", {"model": {"modelVersion": "fraud-1"}, **fields})


def canary_plan(**extra) -> Plan:
    plan = Plan(stable="fraud-1", active=None, canary="fraud-2", **extra)
    plan.add(V2, 1, "canary")
    plan.add(V1, 3, "stable")
    return plan


def by_kind(children):
    found: dict = {}
    for child in children:
        found.setdefault(child["kind"], {})[child["metadata"]["name"]] = child
    return found


def env_of(deployment):
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_one_deployment_per_version_with_the_server_contract():
    children = by_kind(build_children(OWNER, spec(replicas=4), canary_plan(), SERVING))
    deployments = children["Deployment"]
    assert set(deployments) == {"fraud-fraud-1", "fraud-fraud-2"}
    canary = deployments["fraud-fraud-2"]
    assert canary["spec"]["replicas"] == 1
    assert canary["metadata"]["labels"]["ferry.dev/role"] == "canary"
    assert canary["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    pod = canary["spec"]["template"]
    assert pod["metadata"]["labels"]["ferry.dev/model-version"] == "fraud-2"
    assert "ferry.dev/role" not in pod["metadata"]["labels"], "promotion must not restart pods"
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    container = pod["spec"]["containers"][0]
    assert container["command"] == ["ferry", "serve"] and container["image"] == "ferry:test"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    env = env_of(canary)
    assert env["FERRY_MODEL_URI"] == "models:/fraud/2" and env["FERRY_MODEL_VERSION"] == "2"
    assert env["FERRY_MODEL_NAME"] == "fraud" and env["FERRY_PORT"] == "8080"
    assert env["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    security = pod["spec"]["securityContext"]
    assert security["runAsNonRoot"] and security["seccompProfile"]["type"] == "RuntimeDefault"
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_services_follow_the_plan():
    children = by_kind(build_children(OWNER, spec(), canary_plan(), SERVING))
    services = children["Service"]
    assert services["fraud"]["spec"]["selector"] == {"ferry.dev/inferenceservice": "fraud"}
    assert services["fraud-canary"]["spec"]["selector"] == {
        "ferry.dev/inferenceservice": "fraud", "ferry.dev/model-version": "fraud-2"}
    plan = Plan(stable="fraud-1", active="fraud-1", preview="fraud-2")
    plan.add(V2, 1, "preview")
    plan.add(V1, 2, "stable")
    services = by_kind(build_children(OWNER, spec(), plan, SERVING))["Service"]
    assert services["fraud"]["spec"]["selector"]["ferry.dev/model-version"] == "fraud-1"
    assert services["fraud-preview"]["spec"]["selector"]["ferry.dev/model-version"] == "fraud-2"
    assert "fraud-canary" not in services


def test_gpus_autoscaling_pdb_and_topology():
    wanted = spec(runtime={"resources": {"gpus": 1, "cpu": "2", "memory": "4Gi"}},
                  autoscaling={"minReplicas": 2, "maxReplicas": 6}, minAvailable=1)
    children = by_kind(build_children(OWNER, wanted, canary_plan(), SERVING))
    pod = children["Deployment"]["fraud-fraud-1"]["spec"]["template"]["spec"]
    resources = pod["containers"][0]["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == "1" and resources["requests"]["cpu"] == "2"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in \
        pod["tolerations"]
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    hpa = children["HorizontalPodAutoscaler"]["fraud"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment_name("fraud", "fraud-1")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    pdb = children["PodDisruptionBudget"]["fraud"]
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == {"ferry.dev/inferenceservice": "fraud"}


def test_httproute_weights_and_mirror():
    gateway = spec(traffic={"gatewayRef": {"name": "web", "namespace": "infra"}})
    route = by_kind(build_children(OWNER, gateway, canary_plan(weights=(75, 25)),
                                   SERVING))["HTTPRoute"]["fraud"]
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["parentRefs"][0] == {"group": "gateway.networking.k8s.io",
                                              "kind": "Gateway", "name": "web",
                                              "namespace": "infra"}
    backends = route["spec"]["rules"][0]["backendRefs"]
    assert [(b["name"], b["weight"]) for b in backends] == [("fraud", 75), ("fraud-canary", 25)]
    shadow = Plan(stable="fraud-1", active="fraud-1", canary="fraud-2", mirror=("fraud-2", 30))
    shadow.add(V2, 1, "shadow")
    shadow.add(V1, 2, "stable")
    children = by_kind(build_children(OWNER, gateway, shadow, SERVING))
    rule = children["HTTPRoute"]["fraud"]["spec"]["rules"][0]
    assert [b["name"] for b in rule["backendRefs"]] == ["fraud"]
    assert rule["filters"][0]["requestMirror"] == {
        "backendRef": {"name": "fraud-canary", "port": 8080}, "percent": 30}
    assert "FERRY_MIRROR_URL" not in env_of(children["Deployment"]["fraud-fraud-1"]), \
        "the gateway mirrors, not the server"


def test_server_side_mirror_without_a_gateway_only_on_the_stable():
    shadow = Plan(stable="fraud-1", active="fraud-1", canary="fraud-2", mirror=("fraud-2", 30))
    shadow.add(V2, 1, "shadow")
    shadow.add(V1, 2, "stable")
    deployments = by_kind(build_children(OWNER, spec(), shadow, SERVING))["Deployment"]
    stable = env_of(deployments["fraud-fraud-1"])
    assert stable["FERRY_MIRROR_URL"] == "http://fraud-canary.team.svc.cluster.local:8080"
    assert stable["FERRY_MIRROR_PERCENT"] == "30"
    assert "FERRY_MIRROR_URL" not in env_of(deployments["fraud-fraud-2"])


def test_prediction_logging_and_user_env_override():
    wanted = spec(predictionLogging={"sampleRate": 0.25},
                  runtime={"env": [{"name": "FERRY_PORT", "value": "9000"},
                                   {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {
                                       "secretKeyRef": {"name": "s3", "key": "id"}}}]})
    assert prediction_log_uri(wanted, SERVING, "team", "fraud") == \
        "s3://ferry/predictions/team/fraud/"
    plan = Plan(stable="fraud-1", active="fraud-1")
    plan.add(V1, 1, "stable")
    env = env_of(by_kind(build_children(OWNER, wanted, plan, SERVING))["Deployment"]
                 ["fraud-fraud-1"])
    assert env["FERRY_PREDICTION_LOG_URI"] == "s3://ferry/predictions/team/fraud/"
    assert env["FERRY_PREDICTION_SAMPLE_RATE"] == "0.25"
    assert env["FERRY_PORT"] == "9000"
    assert env["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "s3", "key": "id"}}


def test_custom_image_runs_its_own_command_and_long_names_stay_valid():
    wanted = spec(runtime={"image": "my/server:1", "args": ["--port", "8080"]})
    plan = Plan(stable="fraud-1", active="fraud-1")
    plan.add(V1, 1, "stable")
    container = by_kind(build_children(OWNER, wanted, plan, SERVING))["Deployment"][
        "fraud-fraud-1"]["spec"]["template"]["spec"]["containers"][0]
    assert "command" not in container and container["args"] == ["--port", "8080"]
    long = "m" * 100
    assert len(label_value(long)) == 63 and label_value(long) != label_value(long + "x")
    assert len(deployment_name("fraud", long)) <= 63



def test_workers_follow_the_containers_cpu_and_the_service_exposes_grpc():
    for cpu, expected in [("500m", "1"), ("2", "2"), ("1500m", "2")]:
        wanted = spec(runtime={"resources": {"cpu": cpu}})
        children = by_kind(build_children(OWNER, wanted, canary_plan(), SERVING))
        assert env_of(children["Deployment"]["fraud-fraud-1"])["FERRY_WORKERS"] == expected
    children = by_kind(build_children(OWNER, spec(), canary_plan(), SERVING))
    deployment = children["Deployment"]["fraud-fraud-1"]
    assert "FERRY_WORKERS" not in env_of(deployment)  # the server counts its CPUs itself
    assert env_of(deployment)["FERRY_GRPC_PORT"] == "8081"
    ports = deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert {"name": "grpc", "containerPort": 8081, "protocol": "TCP"} in ports
    service_ports = children["Service"]["fraud"]["spec"]["ports"]
    assert [(p["name"], p["port"], p["targetPort"]) for p in service_ports] == [
        ("http", 8080, "http"), ("grpc", 8081, "grpc")]


def test_terminating_pods_keep_answering_until_endpoints_drop_them():
    """Ferry's server waits out the drain itself; a custom runtime gets a preStop sleep; the grace
    period covers the drain, in-flight requests and a margin."""
    pod = by_kind(build_children(OWNER, spec(), canary_plan(), SERVING))["Deployment"][
        "fraud-fraud-1"]["spec"]["template"]["spec"]
    env = env_of({"spec": {"template": {"spec": pod}}})
    delay, timeout = int(env["FERRY_SHUTDOWN_DELAY_SECONDS"]), int(env["FERRY_SHUTDOWN_TIMEOUT_SECONDS"])
    assert delay >= 5 and "lifecycle" not in pod["containers"][0]
    assert pod["terminationGracePeriodSeconds"] > delay + timeout
    custom = spec(runtime={"image": "my/server:1"})
    plan = Plan(stable="fraud-1", active="fraud-1")
    plan.add(V1, 1, "stable")
    container = by_kind(build_children(OWNER, custom, plan, SERVING))["Deployment"][
        "fraud-fraud-1"]["spec"]["template"]["spec"]["containers"][0]
    assert container["lifecycle"] == {"preStop": {"sleep": {"seconds": delay}}}
    assert "FERRY_SHUTDOWN_DELAY_SECONDS" not in env_of(
        {"spec": {"template": {"spec": {"containers": [container]}}}})


def test_traffic_objects_come_before_the_capacity_they_move_away_from():
    """A rollback applies the Service switch before the scale-down of the version it leaves."""
    plan = Plan(stable="fraud-1", active="fraud-1")
    plan.add(V1, 2, "stable")
    plan.add(V2, 0, "previous")
    kinds = [c["kind"] for c in build_children(OWNER, spec(traffic={"gatewayRef": {"name": "gw"}}),
                                               plan, SERVING)]
    assert kinds.index("Deployment") > max(kinds.index("Service"), kinds.index("HTTPRoute"))
