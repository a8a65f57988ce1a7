from pathlib import Path

from ferry_dev.services import (
    ACCESS_KEY, SEAWEED_COMPONENTS, client_env, prometheus_config, seaweed_command,
    seaweed_identities)


def test_seaweed_gets_every_port_explicitly_and_optional_servers_off():
    ports = {c: 1000 + i for i, c in enumerate(SEAWEED_COMPONENTS)}
    ports |= {f"{c}.grpc": 2000 + i for i, c in enumerate(SEAWEED_COMPONENTS)}
    argv = seaweed_command("weed", Path("/d"), Path("/c.json"), ports)
    assert argv[:2] == ["weed", "mini"]
    assert "-s3.port=1000" in argv and "-s3.port.grpc=2000" in argv
    assert "-ip.bind=127.0.0.1" in argv
    assert {"-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false"} <= set(argv)
    assert len([a for a in argv if ".port" in a]) == 2 * len(SEAWEED_COMPONENTS) + 2


def test_identities_grant_the_dev_key_admin():
    identity = seaweed_identities()["identities"][0]
    assert identity["credentials"][0]["accessKey"] == ACCESS_KEY
    assert "Admin" in identity["actions"]


def test_prometheus_config_scrapes_pushgateway_with_honor_labels_and_file_sd():
    config = prometheus_config("127.0.0.1:9091", Path("/t.json"), ["127.0.0.1:8080"])
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["pushgateway"]["honor_labels"] is True
    assert jobs["ferry"]["file_sd_configs"][0]["files"] == ["/t.json"]
    assert jobs["static"]["static_configs"][0]["targets"] == ["127.0.0.1:8080"]
    assert "static" not in {j["job_name"] for j in
                            prometheus_config("g", Path("/t"), [])["scrape_configs"]}


def test_client_env_names_every_endpoint():
    env = client_env("http://s3", "http://mlflow", "http://prom", "http://gw")
    assert env["MLFLOW_S3_ENDPOINT_URL"] == env["FERRY_S3_ENDPOINT"] == "http://s3"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow"
    assert env["FERRY_PROMETHEUS_URL"] == "http://prom"
    assert env["FERRY_PUSHGATEWAY_URL"] == "http://gw"
    assert "MLFLOW_TRACKING_URI" not in client_env("http://s3", None, None, None)


def test_pods_job_discovers_annotated_running_pods_through_the_apiserver():
    from ferry_dev.services import pods_job

    job = pods_job(Path("/kubeconfig"))
    assert job["kubernetes_sd_configs"] == [{"role": "pod", "kubeconfig_file": "/kubeconfig"}]
    keep = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
    assert [r["source_labels"][0] for r in keep] == [
        "__meta_kubernetes_pod_annotation_prometheus_io_scrape", "__meta_kubernetes_pod_phase"]
    address = next(r for r in job["relabel_configs"] if r.get("target_label") == "__address__")
    assert address["replacement"] == "$1:$2"
    assert {r.get("target_label") for r in job["relabel_configs"]} >= {"namespace", "pod"}
