"""`ferry serve` settings: flags over env, defaults from the model URI, errors name the setting."""

import pytest

from ferry.cli import build_parser
from ferry.serving.config import DEFAULT_BUCKETS, ConfigError, ServeConfig, names_from_uri, parse_buckets


@pytest.mark.parametrize("uri,expected", [
    ("models:/fraud/3", ("fraud", "3")),
    ("models:/fraud@champion", ("fraud", "champion")),
    ("runs:/abc123/model", ("model", "abc123")),
    ("runs:/abc123/artifacts/clf/", ("clf", "abc123")),
    ("s3://bucket/models/fraud", ("fraud", "unversioned")),
    ("/srv/models/churn/", ("churn", "unversioned")),
])
def test_names_from_uri(uri, expected):
    assert names_from_uri(uri) == expected


def test_defaults():
    config = ServeConfig.from_env({"FERRY_MODEL_URI": "models:/fraud/3"})
    assert (config.host, config.port, config.model_name, config.model_version) == (
        "0.0.0.0", 8080, "fraud", "3")
    assert config.prediction_log_uri is None and config.mirror_url is None
    assert (config.prediction_sample_rate, config.prediction_log_batch_rows,
            config.prediction_log_flush_seconds, config.prediction_log_max_rows) == (0.1, 1000, 10, 100_000)
    assert config.prediction_buckets == DEFAULT_BUCKETS and len(DEFAULT_BUCKETS) == 21
    assert DEFAULT_BUCKETS[0] == 0.0 and DEFAULT_BUCKETS[-1] == 1.0


def test_env_settings_and_flags_winning():
    env = {"FERRY_MODEL_URI": "models:/fraud/3", "POD_IP": "127.0.0.7", "FERRY_PORT": "9000",
           "FERRY_MODEL_NAME": "fraud-svc", "FERRY_MODEL_VERSION": "4",
           "FERRY_PREDICTION_LOG_URI": "s3://logs/fraud/", "FERRY_PREDICTION_SAMPLE_RATE": "0.5",
           "FERRY_PREDICTION_LOG_BATCH_ROWS": "10", "FERRY_PREDICTION_LOG_FLUSH_SECONDS": "0.5",
           "FERRY_PREDICTION_LOG_MAX_ROWS": "20", "FERRY_PREDICTION_BUCKETS": "1, 0.5,0.5",
           "FERRY_MIRROR_URL": "http://127.0.0.9:8080/", "FERRY_MIRROR_PERCENT": "25",
           "FERRY_SHUTDOWN_DELAY_SECONDS": "5", "FERRY_SHUTDOWN_TIMEOUT_SECONDS": "20",
           "FERRY_MAX_BATCH_ROWS": "1"}
    config = ServeConfig.from_env(env)
    assert (config.host, config.port, config.model_name, config.model_version) == (
        "127.0.0.7", 9000, "fraud-svc", "4")
    assert config.prediction_log_uri == "s3://logs/fraud"
    assert (config.prediction_sample_rate, config.prediction_log_batch_rows,
            config.prediction_log_flush_seconds, config.prediction_log_max_rows) == (0.5, 10, 0.5, 20)
    assert config.prediction_buckets == (0.5, 1.0)
    assert (config.mirror_url, config.mirror_percent) == ("http://127.0.0.9:8080", 25.0)
    assert (config.shutdown_delay_seconds, config.shutdown_timeout_seconds, config.max_batch_rows) == (
        5.0, 20.0, 1)
    flagged = ServeConfig.from_env(env, model_uri="runs:/r1/m", host="127.0.0.1", port=1234,
                                   model_name="x", model_version="9")
    assert (flagged.model_uri, flagged.host, flagged.port, flagged.model_name, flagged.model_version) == (
        "runs:/r1/m", "127.0.0.1", 1234, "x", "9")


@pytest.mark.parametrize("env,message", [
    ({}, "a model URI is required"),
    ({"FERRY_PORT": "http"}, "FERRY_PORT must be an integer"),
    ({"FERRY_PORT": "70000"}, "FERRY_PORT must be between 0 and 65535"),
    ({"FERRY_PREDICTION_SAMPLE_RATE": "1.5"}, "FERRY_PREDICTION_SAMPLE_RATE must be between 0 and 1"),
    ({"FERRY_PREDICTION_LOG_URI": "/tmp/logs"}, "must be an s3:// URI"),
    ({"FERRY_PREDICTION_LOG_MAX_ROWS": "0"}, "FERRY_PREDICTION_LOG_MAX_ROWS must be at least 1"),
    ({"FERRY_MIRROR_URL": "candidate:8080"}, "FERRY_MIRROR_URL must be http://host:port"),
    ({"FERRY_MIRROR_PERCENT": "101"}, "FERRY_MIRROR_PERCENT must be between 0 and 100"),
    ({"FERRY_PREDICTION_BUCKETS": "0.1,high"}, "comma list of numbers"),
])
def test_bad_settings_name_the_variable(env, message):
    if env:
        env = {"FERRY_MODEL_URI": "models:/m/1", **env}
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("/", "/")):
        ServeConfig.from_env(env)


def test_bucket_list_parsing():
    assert parse_buckets("") == DEFAULT_BUCKETS
    assert parse_buckets("3,1,2") == (1.0, 2.0, 3.0)


def test_serve_subcommand_flags():
    args = build_parser().parse_args(["serve", "--model-uri", "models:/m/1", "--port", "9001",
                                      "--host", "127.0.0.1", "--model-name", "m", "--model-version", "1"])
    assert (args.model_uri, args.port, args.host, args.model_name, args.model_version) == (
        "models:/m/1", 9001, "127.0.0.1", "m", "1")
