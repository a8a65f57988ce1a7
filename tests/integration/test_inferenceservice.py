"""InferenceService rollouts on the real control plane: `ferry serve` pods from Ferry's image on the
real node answer real HTTP through their Service (kube-proxy), real Prometheus discovers and
scrapes them, real MLflow holds the models and the aliases."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
import requests
import yaml

from ferry.status import find_condition
from ferry_dev.tools import gateway_api_crds
from support.cluster import create_namespace, start_operator
from support.metrics import sample_total
from support.objects import apply_manifests, get_resource
from support.rollouts import (
    CANARY_ANALYSIS, alias, deployment_uids, event_reasons, ferry, healthy_on, inference_service,
    infsvc, model_version, patch_spec, registered, status_of)
from support.serving import Traffic, endpoint_addresses, predict
from support.waiting import wait_for



# --- canary ------------------------------------------------------------------------------------


def test_canary_of_a_good_model_goes_through_every_step_and_moves_champion(
        cluster, namespace, operator, scraped, runs):
    services = scraped
    model = f"fraud-{namespace}"
    apply_manifests(cluster, model_version(namespace, "fraud-1", model, runs["double"]))
    registered(cluster, namespace, "fraud-1", "1")
    apply_manifests(cluster, inference_service(namespace, "fraud", {"modelVersion": "fraud-1"}, replicas=1,
                                     strategy={"canary": {
                                         "steps": [{"setWeight": 50}, {"pause": {"duration": "2s"}}],
                                         "analysis": CANARY_ANALYSIS}}))
    stable = healthy_on(cluster, namespace, "fraud", "fraud-1")
    assert stable["url"] == f"http://fraud.{namespace}.svc.cluster.local"
    assert alias(services, model, "champion") == "1"
    with Traffic(cluster.api_client, namespace, "fraud") as traffic:
        wait_for(lambda: len(traffic.answers) > 10, timeout=30, message="traffic flows")
        assert {a.prediction for a in traffic.answers if a.code == 200} == {2.0, -2.0}
        apply_manifests(cluster, model_version(namespace, "fraud-2", model, runs["triple"]))
        registered(cluster, namespace, "fraud-2", "2")
        patch_spec(cluster, namespace, "fraud", {"model": {"modelVersion": "fraud-2"}})
        seen = set()

        def promoted():
            status = status_of(cluster, namespace, "fraud")
            if status.get("canaryVersion"):
                seen.add((status.get("currentStep"), status.get("canaryWeight")))
                if alias(services, model, "challenger") == "2":
                    seen.add("challenger")
            return status.get("stableVersion") == "fraud-2" and status.get("phase") == "Healthy" \
                and status
        final = wait_for(promoted, timeout=180, interval=0.5, message="canary promoted")
    assert (0, 50) in seen and (1, 50) in seen, seen
    assert "challenger" in seen, "the canary holds the challenger alias while it runs"
    assert alias(services, model, "champion") == "2"
    assert alias(services, model, "challenger") is None
    assert {r["verdict"] for r in final["analysis"]} == {"Passed"}
    assert {r["name"] for r in final["analysis"]} == {"errorRate", "latencyP99"}
    reasons = event_reasons(cluster, namespace, "fraud")
    assert reasons.count("StepCompleted") == 2 and "Promoted" in reasons
    assert "RolledBack" not in reasons
    assert not traffic.lost(), f"every request is answered through the rollout: {traffic.lost()}"
    codes = {a.code for a in traffic.answers}
    assert codes == {200}, f"no request failed with an HTTP error: {codes}"
    assert 3.0 in {a.prediction for a in traffic.answers}, "the canary served real traffic"
    wait_for(lambda: set(deployment_uids(cluster, namespace, "fraud")) == {"fraud-fraud-2"},
             timeout=60, message="the old version's Deployment removed")
    mv = get_resource(cluster, namespace, "modelversion.ferry.dev", "fraud-2")
    wait_for(lambda: get_resource(cluster, namespace, "modelversion.ferry.dev", "fraud-2")["status"]
             .get("phase") == "Serving", timeout=60, message="fraud-2 Serving")
    assert mv["metadata"]["name"] == "fraud-2"


def test_canary_of_a_bad_model_is_rolled_back_and_stable_traffic_never_stops(
        cluster, namespace, operator, scraped, runs):
    services = scraped
    model = f"bad-{namespace}"
    apply_manifests(cluster, model_version(namespace, "bad-1", model, runs["double"]))
    registered(cluster, namespace, "bad-1", "1")
    apply_manifests(cluster, inference_service(namespace, "svc", {"modelVersion": "bad-1"}, replicas=1,
                                     strategy={"canary": {
                                         "steps": [{"setWeight": 50}, {"pause": {}}],
                                         "analysis": CANARY_ANALYSIS}}))
    healthy_on(cluster, namespace, "svc", "bad-1")
    with Traffic(cluster.api_client, namespace, "svc") as traffic:
        wait_for(lambda: len(traffic.answers) > 10, timeout=30, message="traffic flows")
        started = time.monotonic()
        apply_manifests(cluster, model_version(namespace, "bad-2", model, runs["flaky"]))
        registered(cluster, namespace, "bad-2", "2")
        patch_spec(cluster, namespace, "svc", {"model": {"modelVersion": "bad-2"}})
        rolled_back = wait_for(
            lambda: (s := status_of(cluster, namespace, "svc")).get("phase") == "RolledBack" and s,
            timeout=180, interval=0.5, message="canary rolled back")
        back = time.monotonic()
        wait_for(lambda: get_resource(cluster, namespace, "service", "svc")["spec"]["selector"].get(
            "ferry.dev/model-version") == "bad-1", timeout=30, message="canary out of the Service")
        wait_for(lambda: len(traffic.since(back)) > 20, timeout=30, message="traffic after")
        ended = time.monotonic()
    assert any(a.code == 500 for a in traffic.since(started)), "the flaky canary got traffic"
    assert not traffic.lost(), f"every request is answered through the rollback: {traffic.lost()}"
    assert traffic.longest_gap_without_success(started, ended) < 5, "stable traffic never stops"
    assert rolled_back["stableVersion"] == "bad-1" and not rolled_back.get("canaryVersion")
    failed = [r for r in rolled_back["analysis"] if r["verdict"] == "Failed"]
    assert [r["name"] for r in failed] == ["errorRate"] and failed[0]["value"] > 0.05
    assert "errorRate" in rolled_back["message"]
    assert find_condition(rolled_back["conditions"], "Ready")["status"] == "True"
    assert alias(services, model, "champion") == "1"
    assert alias(services, model, "challenger") is None
    wait_for(lambda: get_resource(cluster, namespace, "deployment", "svc-bad-2")["spec"][
        "replicas"] == 0, timeout=30, message="the rolled-back canary scaled down once traffic left")
    assert "RolledBack" in event_reasons(cluster, namespace, "svc")
    # The spec still names bad-2: it is not tried again.
    assert status_of(cluster, namespace, "svc")["phase"] == "RolledBack"


def proxied_after_switch(cluster, namespace: str, service: str, version: str) -> None:
    """Wait until the Service's EndpointSlices list only ``version``'s ready pods and kube-proxy's
    rules on the node send the Service to exactly those pods (read from the nat table itself: its
    sync timestamp has only the slices' whole-second times to compare with): from then on every
    new connection reaches that version."""
    def pods_of_version() -> set[str] | None:
        pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-l",
                                          f"ferry.dev/model-version={version}", "-o",
                                          "json").stdout)["items"]
        ips = {p["status"].get("podIP") for p in pods}
        found = {a.rsplit(":", 1)[0] for a in endpoint_addresses(cluster.api_client, namespace,
                                                                    service)}
        return found if found and found <= ips else None
    wanted = wait_for(pods_of_version, timeout=60, message=f"{service}'s endpoints on {version} only")
    wait_for(lambda: service_rule_targets(namespace, service) == wanted, timeout=60,
             message=f"kube-proxy's rules for {service} on {version}'s pods {sorted(wanted)}")


def service_rule_targets(namespace: str, service: str) -> set[str]:
    """The pod IPs kube-proxy's iptables rules balance ``service``'s http port over (this test
    session runs in the cluster's network namespace, where the node's rules are)."""
    rules = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True,
                           check=True).stdout
    marker = f'--comment "{namespace}/{service}:http -> '
    return {line.split(marker, 1)[1].split(":", 1)[0] for line in rules.splitlines()
            if line.startswith("-A KUBE-SVC-") and marker in line}


def test_a_version_failing_after_promotion_is_rolled_back_inside_the_watch_window(
        cluster, namespace, operator, scraped, runs):
    """The flaky model only fails on positive inputs: the canary sees negative ones and passes,
    then positive traffic arrives after promotion; the postPromotion analysis catches it and the
    version kept warm takes the traffic back, champion with it."""
    services = scraped
    model = f"pp-{namespace}"
    apply_manifests(cluster, model_version(namespace, "pp-1", model, runs["double"]))
    registered(cluster, namespace, "pp-1", "1")
    apply_manifests(cluster, inference_service(namespace, "watch", {"modelVersion": "pp-1"}, replicas=1,
                                     strategy={"canary": {"steps": [{"setWeight": 100}],
                                                          "analysis": CANARY_ANALYSIS,
                                                          "postPromotion": "10m"}}))
    healthy_on(cluster, namespace, "watch", "pp-1")
    with Traffic(cluster.api_client, namespace, "watch", inputs=(-1.0,)):
        apply_manifests(cluster, model_version(namespace, "pp-2", model, runs["flaky"]))
        registered(cluster, namespace, "pp-2", "2")
        patch_spec(cluster, namespace, "watch", {"model": {"modelVersion": "pp-2"}})
        promoted = wait_for(
            lambda: (s := status_of(cluster, namespace, "watch")).get("stableVersion") == "pp-2"
            and s, timeout=180, message="pp-2 promoted after a passing canary")
    assert promoted["rollout"]["previous"]["modelVersion"] == "pp-1"
    assert promoted["rollout"]["postPromotionUntil"]
    assert get_resource(cluster, namespace, "deployment", "watch-pp-1")["spec"]["replicas"] >= 1, \
        "the previous version stays warm inside the window"
    wait_for(lambda: alias(services, model, "champion") == "2", timeout=60,
             message="champion moved to the promoted version")

    with Traffic(cluster.api_client, namespace, "watch", inputs=(1.0, -1.0)) as traffic:
        rolled_back = wait_for(
            lambda: (s := status_of(cluster, namespace, "watch")).get("phase") == "RolledBack"
            and s, timeout=120, interval=0.5, message="rolled back inside the watch window")
        wait_for(lambda: get_resource(cluster, namespace, "service", "watch")["spec"]["selector"].get(
            "ferry.dev/model-version") == "pp-1", timeout=30, message="traffic back on pp-1")
        proxied_after_switch(cluster, namespace, "watch", "pp-1")
        settled = time.monotonic()
        wait_for(lambda: len(traffic.since(settled)) > 20, timeout=30, message="traffic after")
    assert any(a.code == 500 for a in traffic.answers), "the promoted version failed on traffic"
    assert not traffic.lost(), f"every request is answered through the rollback: {traffic.lost()}"
    assert rolled_back["stableVersion"] == "pp-1"
    assert rolled_back["rollout"]["rolledBack"]["reason"] == "PostPromotionAnalysisFailed"
    assert "errorRate" in rolled_back["message"]
    late = traffic.since(settled)
    assert {(a.code, a.prediction) for a in late} == {(200, 2.0), (200, -2.0)}, \
        "pp-1 answers every request again"
    wait_for(lambda: alias(services, model, "champion") == "1", timeout=60,
             message="champion back on the version that serves")
    assert "RolledBack" in event_reasons(cluster, namespace, "watch")


def test_a_version_whose_features_are_not_ready_is_not_rolled_out_until_they_are(
        cluster, namespace, operator, scraped, runs):
    """The ModelVersion was approved without the featuresReady gate; serving checks again: no
    Deployment for it while its FeaturePipeline is missing or not Ready, the stable one keeps
    serving; once the pipeline publishes, the rollout goes ahead (at the next resync)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from ferry_dev.services import BUCKET

    services = scraped
    model = f"fr-{namespace}"
    apply_manifests(cluster, model_version(namespace, "fr-1", model, runs["double"]))
    registered(cluster, namespace, "fr-1", "1")
    apply_manifests(cluster, inference_service(namespace, "feat", {"modelVersion": "fr-1"}, replicas=1))
    healthy_on(cluster, namespace, "feat", "fr-1")
    apply_manifests(cluster, model_version(namespace, "fr-2", model, runs["triple"], features="fr-tx",
                                 gates={"featuresReady": False}))
    registered(cluster, namespace, "fr-2", "2")
    patch_spec(cluster, namespace, "feat", {"model": {"modelVersion": "fr-2"}})
    blocked = wait_for(lambda: (c := find_condition(status_of(cluster, namespace, "feat").get(
        "conditions"), "FeaturesReady")) and c["status"] == "False" and c,
        timeout=60, message="FeaturesReady=False")
    assert blocked["reason"] == "FeaturesNotReady" and "fr-tx: not found" in blocked["message"]
    status = status_of(cluster, namespace, "feat")
    assert status["stableVersion"] == "fr-1" and not status.get("canaryVersion")
    assert cluster.kubectl("get", "deployment", "feat-fr-2", "-n", namespace,
                           check=False).returncode != 0, "nothing deployed for fr-2"

    table = pa.table({"x0": [float(i) for i in range(20)]})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    services.s3_client().put_object(Bucket=BUCKET, Key=f"raw/{namespace}/fr/part-0.parquet",
                                    Body=buffer.getvalue())
    env = services.env()
    apply_manifests(cluster,
          {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "fr-s3", "namespace": namespace},
           "stringData": {k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                              "AWS_DEFAULT_REGION")}},
          {"apiVersion": "ferry.dev/v1alpha1", "kind": "FeaturePipeline",
           "metadata": {"name": "fr-tx", "namespace": namespace},
           "spec": {"featureSet": f"fr-{namespace}", "version": "v1",
                    "s3Credentials": {"name": "fr-s3"},
                    "transform": {"sql": {"sources": [{
                        "name": "raw", "uri": f"s3://{BUCKET}/raw/{namespace}/fr/*.parquet"}],
                        "query": "select x0 from raw"}}}})
    healthy_on(cluster, namespace, "feat", "fr-2", timeout=240)
    ready = find_condition(status_of(cluster, namespace, "feat")["conditions"], "FeaturesReady")
    assert ready["status"] == "True" and "fr-tx is Ready" in ready["message"]
    assert "FeaturesNotReady" in event_reasons(cluster, namespace, "feat")


def test_prometheus_down_holds_the_canary_and_it_resumes_when_back(
        cluster, namespace, operator, scraped, runs):
    services = scraped
    prometheus = next(s for s in services.services if s.name == "prometheus")
    model = f"prom-{namespace}"
    apply_manifests(cluster, model_version(namespace, "p-1", model, runs["double"]))
    registered(cluster, namespace, "p-1", "1")
    apply_manifests(cluster, inference_service(namespace, "held", {"modelVersion": "p-1"}, replicas=1,
                                     strategy={"canary": {"steps": [{"setWeight": 50}],
                                                          "analysis": CANARY_ANALYSIS}}))
    healthy_on(cluster, namespace, "held", "p-1")
    with Traffic(cluster.api_client, namespace, "held"):
        apply_manifests(cluster, model_version(namespace, "p-2", model, runs["triple"]))
        registered(cluster, namespace, "p-2", "2")
        patch_spec(cluster, namespace, "held", {"model": {"modelVersion": "p-2"}})
        wait_for(lambda: status_of(cluster, namespace, "held").get("rollout", {})
                 .get("stepReadyAt"), timeout=120, message="canary ready at its step")
        prometheus.stop()
        try:
            held = wait_for(
                lambda: (s := status_of(cluster, namespace, "held")).get("phase") == "Paused"
                and s["analysis"][0]["verdict"] == "Inconclusive" and s,
                timeout=60, message="analysis inconclusive")
            first = held["rollout"]["lastAnalysisAt"]
            # Two more measurements while Prometheus is down: still held, never promoted.
            again = wait_for(
                lambda: (s := status_of(cluster, namespace, "held"))["rollout"].get(
                    "lastAnalysisAt", first) > first and s, timeout=30,
                message="another inconclusive measurement")
            assert again["phase"] == "Paused" and again["stableVersion"] == "p-1"
            assert again["canaryVersion"] == "p-2" and again["currentStep"] == 0
            assert "Prometheus unavailable" in again["analysis"][0]["message"]
            assert alias(services, model, "champion") == "1"
        finally:
            prometheus.start()
        healthy_on(cluster, namespace, "held", "p-2", timeout=120)
    reasons = event_reasons(cluster, namespace, "held")
    assert "AnalysisInconclusive" in reasons and "AnalysisResumed" in reasons
    assert alias(services, model, "champion") == "2"


def test_killing_the_operator_mid_canary_resumes_at_the_same_step(cluster, services, scraped,
                                                                  runs, tmp_path):
    namespace = create_namespace(cluster, "is")
    env = {**services.env(), "FERRY_LEASE_NAME": f"ferry-{namespace}"}
    first = start_operator(cluster, tmp_path, namespace, **env)
    second = None
    try:
        model = f"kill-{namespace}"
        apply_manifests(cluster, model_version(namespace, "k-1", model, runs["double"]))
        registered(cluster, namespace, "k-1", "1")
        apply_manifests(cluster, inference_service(namespace, "api", {"modelVersion": "k-1"}, replicas=1,
                                         strategy={"canary": {"steps": [
                                             {"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]}}))
        healthy_on(cluster, namespace, "api", "k-1")
        apply_manifests(cluster, model_version(namespace, "k-2", model, runs["triple"]))
        registered(cluster, namespace, "k-2", "2")
        patch_spec(cluster, namespace, "api", {"model": {"modelVersion": "k-2"}})
        paused = wait_for(lambda: (s := status_of(cluster, namespace, "api")).get("phase")
                          == "Paused" and s, timeout=150, message="paused at step 2")
        assert paused["currentStep"] == 1 and paused["canaryWeight"] == 50
        children = deployment_uids(cluster, namespace, "api")
        with Traffic(cluster.api_client, namespace, "api") as traffic:
            first.stop(signal.SIGKILL)
            second = start_operator(cluster, tmp_path, namespace, **env)
            wait_for(lambda: sample_total(second.metrics(), "ferry_reconcile_total",
                                          kind="InferenceService", result="success") >= 2,
                     timeout=60, message="the new operator reconciled the service")
            resumed = status_of(cluster, namespace, "api")
            assert resumed["phase"] == "Paused" and resumed["currentStep"] == 1
            assert resumed["rollout"]["stepStartedAt"] == paused["rollout"]["stepStartedAt"]
            assert deployment_uids(cluster, namespace, "api") == children, "nothing recreated"
            ferry(cluster, "promote", "infsvc/api", "-n", namespace)
            assert infsvc(cluster, namespace, "api")["spec"]["rollout"]["promote"] == "k-2"
            healthy_on(cluster, namespace, "api", "k-2")
            wait_for(lambda: set(deployment_uids(cluster, namespace, "api")) == {"api-k-2"},
                     timeout=60, message="the old version's Deployment removed")
        assert not traffic.lost(), f"every request is answered across the restart: {traffic.lost()}"
        assert {a.code for a in traffic.answers} == {200}
        reasons = event_reasons(cluster, namespace, "api")
        assert reasons.count("RolloutStarted") == 1 and reasons.count("Promoted") == 1
    finally:
        for handle in (first, second):
            if handle is not None:
                handle.stop(signal.SIGKILL)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_latest_approved_rolls_out_a_newly_approved_version_without_a_spec_change(
        cluster, namespace, operator, scraped, runs):
    services = scraped
    model = f"cd-{namespace}"
    apply_manifests(cluster, model_version(namespace, "cd-1", model, runs["double"]))
    registered(cluster, namespace, "cd-1", "1")
    apply_manifests(cluster, inference_service(namespace, "cd", {"modelName": model,
                                                       "policy": "latestApproved"},
                                     replicas=1, strategy={"canary": {"steps": [{"setWeight": 50}]}}))
    healthy_on(cluster, namespace, "cd", "cd-1")
    apply_manifests(cluster, model_version(namespace, "cd-2", model, runs["triple"],
                                 approval={"required": True}))
    registered(cluster, namespace, "cd-2", "2")
    wait_for(lambda: get_resource(cluster, namespace, "modelversion.ferry.dev", "cd-2")["status"]
             .get("phase") == "AwaitingApproval", timeout=60, message="cd-2 awaits approval")
    assert status_of(cluster, namespace, "cd").get("canaryVersion") is None
    ferry(cluster, "approve", "mv/cd-2", "--by", "alice", "-n", namespace)
    started = wait_for(lambda: (s := status_of(cluster, namespace, "cd")).get("canaryVersion")
                       == "cd-2" or s.get("stableVersion") == "cd-2", timeout=60,
                       message="canary of cd-2 started")
    assert started
    healthy_on(cluster, namespace, "cd", "cd-2")
    assert infsvc(cluster, namespace, "cd")["metadata"]["generation"] == 1, "spec untouched"
    assert alias(services, model, "champion") == "2"


# --- blue-green --------------------------------------------------------------------------------


def test_blue_green_previews_switches_atomically_and_rolls_back_instantly(
        cluster, namespace, operator, scraped, runs):
    model = f"bg-{namespace}"
    apply_manifests(cluster, model_version(namespace, "blue", model, runs["double"]))
    registered(cluster, namespace, "blue", "1")
    apply_manifests(cluster, inference_service(namespace, "web", {"modelVersion": "blue"}, replicas=1,
                                     strategy={"blueGreen": {"scaleDownDelaySeconds": 300}}))
    healthy_on(cluster, namespace, "web", "blue")
    apply_manifests(cluster, model_version(namespace, "green", model, runs["triple"]))
    registered(cluster, namespace, "green", "2")
    patch_spec(cluster, namespace, "web", {"model": {"modelVersion": "green"}})
    wait_for(lambda: status_of(cluster, namespace, "web").get("phase") == "Paused",
             timeout=150, message="preview ready, awaiting promotion")
    preview = endpoint_addresses(cluster.api_client, namespace, "web-preview")
    active = endpoint_addresses(cluster.api_client, namespace, "web")
    assert preview and active and set(preview).isdisjoint(active)
    assert predict(preview[0], 1.0) == (200, 3.0), "the preview serves the new model"
    assert predict(active[0], 1.0) == (200, 2.0), "clients still get the old one"
    blue_pods = active

    with Traffic(cluster.api_client, namespace, "web") as traffic:
        ferry(cluster, "promote", "infsvc/web", "-n", namespace)
        wait_for(lambda: get_resource(cluster, namespace, "service", "web")["spec"]["selector"].get(
            "ferry.dev/model-version") == "green", timeout=60, message="active Service switched")
        switched = healthy_on(cluster, namespace, "web", "green")
        assert switched["rollout"]["previous"]["modelVersion"] == "blue", "old colour kept"
        wait_for(lambda: endpoint_addresses(cluster.api_client, namespace, "web") == preview,
                 timeout=30, message="endpoints are the former preview pods")
        assert predict(preview[0], 1.0) == (200, 3.0)
        proxied_after_switch(cluster, namespace, "web", "green")
        on_green = time.monotonic()
        wait_for(lambda: len(traffic.since(on_green)) > 10, timeout=30, message="traffic on green")

        # Rollback = revert the one field in Git: blue is still warm, so it is instant.
        patch_spec(cluster, namespace, "web", {"model": {"modelVersion": "blue"}})
        wait_for(lambda: get_resource(cluster, namespace, "service", "web")["spec"]["selector"].get(
            "ferry.dev/model-version") == "blue", timeout=30, message="switched back")
        wait_for(lambda: endpoint_addresses(cluster.api_client, namespace, "web") == blue_pods,
                 timeout=30, message="the old colour's pods, still running, serve again")
        assert predict(blue_pods[0], 1.0) == (200, 2.0)
        proxied_after_switch(cluster, namespace, "web", "blue")
        settled = time.monotonic()
        wait_for(lambda: len(traffic.since(settled)) > 10, timeout=30, message="traffic after")
    assert not traffic.lost(), f"every request is answered through both switches: {traffic.lost()}"
    assert {a.code for a in traffic.answers} == {200}
    assert {a.prediction for a in traffic.answers} >= {3.0, -3.0}, "green served in between"
    assert {a.prediction for a in traffic.since(settled)} == {2.0, -2.0}, "blue serves again"
    assert "SwitchedBack" in event_reasons(cluster, namespace, "web")


# --- scaling ----------------------------------------------------------------------------------


def serving_pods(cluster, namespace: str, name: str) -> list[str]:
    pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-l",
                                      f"ferry.dev/inferenceservice={name}", "-o", "json").stdout)
    return [pod["metadata"]["name"] for pod in pods["items"]]


def test_scaling_in_under_load_loses_no_request(cluster, namespace, operator, scraped, runs):
    """Autoscaling bounds lowered from 3 to 1 under load: two of three serving pods go away (the
    HPA and the operator both clamp to the new maximum) and not one request fails."""
    model = f"scale-{namespace}"
    apply_manifests(cluster, model_version(namespace, "s-1", model, runs["double"]))
    registered(cluster, namespace, "s-1", "1")
    apply_manifests(cluster, inference_service(namespace, "api", {"modelVersion": "s-1"},
                                               autoscaling={"minReplicas": 3, "maxReplicas": 3}))
    healthy_on(cluster, namespace, "api", "s-1")
    wait_for(lambda: len(endpoint_addresses(cluster.api_client, namespace, "api")) == 3,
             timeout=120, message="three ready endpoints")
    with Traffic(cluster.api_client, namespace, "api") as traffic:
        wait_for(lambda: len(traffic.answers) > 50, timeout=30, message="traffic flows")
        patch_spec(cluster, namespace, "api", {"autoscaling": {"minReplicas": 1, "maxReplicas": 1}})
        wait_for(lambda: len(serving_pods(cluster, namespace, "api")) == 1, timeout=120,
                 message="two of the three pods gone")
        settled = time.monotonic()
        wait_for(lambda: len(traffic.since(settled)) > 50, timeout=30, message="traffic after")
    assert len(endpoint_addresses(cluster.api_client, namespace, "api")) == 1
    assert not traffic.lost(), f"requests lost while scaling in: {traffic.lost()[:10]}"
    assert {a.code for a in traffic.answers} == {200}
    assert get_resource(cluster, namespace, "hpa", "api")["spec"]["maxReplicas"] == 1
    print(f"scale-in: {len(traffic.answers)} requests at {traffic.rate():.0f} req/s, "
          f"{len(traffic.lost())} lost")


# --- HTTPRoute ---------------------------------------------------------------------------------


def install_httproute_crd(cluster, version: str | None = None) -> None:
    """The Gateway API project's own HTTPRoute CRD (standard channel) at ``version`` (the pin)."""
    (crd,) = [f for f in gateway_api_crds(version) if f.name.endswith("_httproutes.yaml")]
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
    wanted = yaml.safe_load(crd.read_text())["metadata"]["annotations"][
        "gateway.networking.k8s.io/bundle-version"]
    wait_for(lambda: (c := get_resource(cluster, "default", "crd", "httproutes.gateway.networking.k8s.io"))
             ["metadata"]["annotations"]["gateway.networking.k8s.io/bundle-version"] == wanted
             and find_condition(c["status"].get("conditions"), "Established")["status"] == "True",
             timeout=30, message=f"HTTPRoute CRD {wanted} established")


@pytest.fixture
def gateway_api(cluster):
    install_httproute_crd(cluster)
    yield
    install_httproute_crd(cluster)  # a test may have installed another version


def test_httproute_weights_match_each_canary_step(cluster, namespace, operator, scraped, runs,
                                                  gateway_api):
    model = f"gw-{namespace}"
    apply_manifests(cluster, model_version(namespace, "gw-1", model, runs["double"]))
    registered(cluster, namespace, "gw-1", "1")
    steps = [{"setWeight": 20}, {"pause": {"duration": "2s"}}, {"setWeight": 60},
             {"pause": {"duration": "2s"}}]
    apply_manifests(cluster, inference_service(namespace, "gw", {"modelVersion": "gw-1"}, replicas=1,
                                     traffic={"gatewayRef": {"name": "public",
                                                             "namespace": "infra"}},
                                     strategy={"canary": {"steps": steps}}))
    healthy_on(cluster, namespace, "gw", "gw-1")

    def route_weights():
        route = get_resource(cluster, namespace, "httproutes.gateway.networking.k8s.io", "gw")
        return {b["name"]: b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]}

    assert route_weights() == {"gw": 100}
    apply_manifests(cluster, model_version(namespace, "gw-2", model, runs["triple"]))
    registered(cluster, namespace, "gw-2", "2")
    patch_spec(cluster, namespace, "gw", {"model": {"modelVersion": "gw-2"}})
    observed = []

    def promoted():
        status = status_of(cluster, namespace, "gw")
        weights = route_weights()
        if status.get("canaryVersion") and status.get("canaryWeight") is not None:
            observed.append((status["canaryWeight"], weights))
        return status.get("stableVersion") == "gw-2" and status.get("phase") == "Healthy"
    wait_for(promoted, timeout=180, interval=0.3, message="promoted through the gateway")
    pairs = {(w, weights.get("gw-canary"), weights.get("gw")) for w, weights in observed}
    assert (20, 20, 80) in pairs and (60, 60, 40) in pairs, pairs
    assert all(stable + canary == 100 for _, canary, stable in pairs if canary is not None)
    route = get_resource(cluster, namespace, "httproutes.gateway.networking.k8s.io", "gw")
    assert route["spec"]["parentRefs"][0]["name"] == "public"
    assert route_weights() == {"gw": 100}
    canary = get_resource(cluster, namespace, "deployment", "gw-gw-2")
    assert canary["spec"]["replicas"] == 1


# --- shadow ------------------------------------------------------------------------------------


def test_a_mirror_the_installed_gateway_api_cannot_express_is_refused_not_widened(
        cluster, namespace, operator, scraped, runs, gateway_api):
    """Gateway API v1.2's standard channel has no RequestMirror ``percent``: the apiserver would
    prune it and the Gateway would mirror every request. Ferry refuses to write that route and
    says why; once v1.6 is installed, the next reconcile writes the 10 % mirror."""
    install_httproute_crd(cluster, "v1.2.1")
    model = f"gwm-{namespace}"
    apply_manifests(cluster, model_version(namespace, "gwm-1", model, runs["double"]))
    registered(cluster, namespace, "gwm-1", "1")
    apply_manifests(cluster, inference_service(
        namespace, "gwm", {"modelVersion": "gwm-1"}, replicas=1,
        traffic={"gatewayRef": {"name": "public", "namespace": "infra"}},
        strategy={"shadow": {"mirrorPercent": 10, "duration": "1h"}}))
    healthy_on(cluster, namespace, "gwm", "gwm-1")
    apply_manifests(cluster, model_version(namespace, "gwm-2", model, runs["triple"]))
    registered(cluster, namespace, "gwm-2", "2")
    patch_spec(cluster, namespace, "gwm", {"model": {"modelVersion": "gwm-2"}})
    refused = wait_for(lambda: (c := find_condition(status_of(cluster, namespace, "gwm").get(
        "conditions"), "TrafficRouted")) and c["status"] == "False" and c, timeout=150,
        message="TrafficRouted=False for the mirror")
    assert refused["reason"] == "GatewayAPIUnsupported"
    assert "v1.2.1 (standard)" in refused["message"]
    assert "requestMirror.percent" in refused["message"]
    route = get_resource(cluster, namespace, "httproutes.gateway.networking.k8s.io", "gwm")
    assert not route["spec"]["rules"][0].get("filters"), "no mirror without its percent"

    install_httproute_crd(cluster)
    mirrored = wait_for(lambda: (r := get_resource(
        cluster, namespace, "httproutes.gateway.networking.k8s.io", "gwm"))["spec"]["rules"][0]
        .get("filters") and r, timeout=120, message="the mirror written on v1.6")
    assert mirrored["spec"]["rules"][0]["filters"][0]["requestMirror"]["percent"] == 10
    routed = find_condition(status_of(cluster, namespace, "gwm")["conditions"], "TrafficRouted")
    assert routed["status"] == "True" and "v1.6.3 (standard)" in routed["message"]


def test_shadow_candidate_gets_mirrored_requests_and_clients_only_see_stable_answers(
        cluster, namespace, operator, scraped, runs):
    """Without a gateway the stable pods mirror to ``<name>-canary.<ns>.svc.cluster.local``,
    which CoreDNS resolves to that Service's IP and kube-proxy to the candidate pod: Prometheus
    shows the candidate (version 2) answering the mirrored requests and the stable servers counting them
    ``ok``, while clients only ever get the stable model's answers."""
    services = scraped
    model = f"sh-{namespace}"
    apply_manifests(cluster, model_version(namespace, "sh-1", model, runs["double"]))
    registered(cluster, namespace, "sh-1", "1")
    apply_manifests(cluster, inference_service(namespace, "mirror", {"modelVersion": "sh-1"}, replicas=1,
                                     strategy={"shadow": {"mirrorPercent": 100,
                                                          "duration": "1h"}}))
    healthy_on(cluster, namespace, "mirror", "sh-1")
    apply_manifests(cluster, model_version(namespace, "sh-2", model, runs["triple"]))
    registered(cluster, namespace, "sh-2", "2")
    patch_spec(cluster, namespace, "mirror", {"model": {"modelVersion": "sh-2"}})
    wait_for(lambda: status_of(cluster, namespace, "mirror").get("message", "").startswith(
        "mirroring"), timeout=150, message="shadow ready and mirroring")
    stable = get_resource(cluster, namespace, "deployment", "mirror-sh-1")
    env = {e["name"]: e.get("value") for e in
           stable["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FERRY_MIRROR_URL"] == \
        f"http://mirror-canary.{namespace}.svc.cluster.local:8080"
    assert env["FERRY_MIRROR_PERCENT"] == "100"
    assert endpoint_addresses(cluster.api_client, namespace, "mirror-canary"), "candidate runs"

    def scraped_total(metric, **labels):
        selector = ",".join(f'{k}="{v}"' for k, v in {"namespace": namespace, **labels}.items())
        result = requests.get(f"{services.endpoints['prometheus']}/api/v1/query",
                              params={"query": f"sum({metric}{{{selector}}})"},
                              timeout=5).json()["data"]["result"]
        return float(result[0]["value"][1]) if result else 0.0

    with Traffic(cluster.api_client, namespace, "mirror") as traffic:
        wait_for(lambda: len(traffic.answers) > 30, timeout=60, message="traffic")
        wait_for(lambda: scraped_total("ferry_serve_requests_total", version="2",
                                       route="/invocations", code="200") > 0,
                 timeout=90, message="the candidate answers mirrored requests")
        wait_for(lambda: scraped_total("ferry_serve_mirrored_total", version="1",
                                       result="ok") > 0,
                 timeout=60, message="the stable servers see the candidate's answers")
        assert status_of(cluster, namespace, "mirror")["stableVersion"] == "sh-1"
        # Aborting rolls the stable pods (their mirror settings go): under load, nothing is lost.
        ferry(cluster, "abort", "infsvc/mirror", "-n", namespace)
        wait_for(lambda: status_of(cluster, namespace, "mirror").get("phase") == "RolledBack",
                 timeout=60, message="shadow aborted")
        wait_for(lambda: "FERRY_MIRROR_URL" not in {
            e["name"] for e in get_resource(cluster, namespace, "deployment", "mirror-sh-1")["spec"]
            ["template"]["spec"]["containers"][0]["env"]}, timeout=60, message="mirroring stopped")
        wait_for(lambda: (d := get_resource(cluster, namespace, "deployment", "mirror-sh-1"))[
            "status"].get("updatedReplicas") == d["spec"]["replicas"] == d["status"].get(
            "readyReplicas") and not d["status"].get("unavailableReplicas"), timeout=120,
            message="the stable pods rolled without the mirror")
        proxied_after_switch(cluster, namespace, "mirror", "sh-1")
        settled = time.monotonic()
        wait_for(lambda: len(traffic.since(settled)) > 10, timeout=30, message="traffic after")
    answers = {a.prediction for a in traffic.answers if a.code == 200}
    assert answers == {2.0, -2.0}, f"clients only see the stable model's answers: {answers}"
    assert not traffic.lost(), f"every request is answered through the abort: {traffic.lost()}"
    assert {a.code for a in traffic.answers} == {200}
