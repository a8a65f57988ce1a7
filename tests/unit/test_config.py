from ferry.config import OperatorConfig


def test_defaults_watch_all_namespaces_with_leader_election():
    config = OperatorConfig.from_env({})
    assert config.namespaces == []
    assert config.leader_election is True
    assert config.metrics_port == 8080


def test_every_field_reads_from_its_ferry_variable():
    config = OperatorConfig.from_env({
        "FERRY_NAMESPACES": "team-a, team-b,", "FERRY_METRICS_PORT": "9100",
        "FERRY_LEADER_ELECTION": "false", "FERRY_LEASE_DURATION_SECONDS": "6",
        "FERRY_LOG_FORMAT": "text"})
    assert config.namespaces == ["team-a", "team-b"]
    assert config.metrics_port == 9100
    assert config.leader_election is False
    assert config.lease_duration_seconds == 6
    assert config.log_format == "text"


def test_pod_identity_and_namespace_from_downward_api():
    config = OperatorConfig.from_env({"POD_NAME": "ferry-abc", "POD_NAMESPACE": "ferry-system"})
    assert config.identity == "ferry-abc"
    assert config.lease_namespace == "ferry-system"
    explicit = OperatorConfig.from_env({"POD_NAMESPACE": "x", "FERRY_LEASE_NAMESPACE": "y"})
    assert explicit.lease_namespace == "y"


def test_command_line_overrides_win_over_environment():
    config = OperatorConfig.from_env({"FERRY_METRICS_PORT": "9100"}, metrics_port=9200,
                                     namespaces=None)
    assert config.metrics_port == 9200
