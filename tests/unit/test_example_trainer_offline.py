"""The example trainer's pure parts, and short real training runs on local files (no MLflow)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import numpy as np
import pytest

from ferry.examples import checkpoints as ck
from ferry.examples import config as settings
from ferry.examples import data as synthetic
from ferry.examples.dataset import batches, epoch_order, feature_columns, labels, prepare, \
    split_indices
from ferry.examples.models import World
from ferry.examples.trainer import Quiet, Stopped, state_shaping, torchrun_argv, train

# --- parameters ---------------------------------------------------------------------------------


def test_parameters_are_typed_and_keep_their_text_for_mlflow():
    config = settings.parse({"target": "label", "epochs": "7", "lr": "0.010", "features": "a, b"})
    assert (config.target, config.epochs, config.lr, config.features) == ("label", 7, 0.01,
                                                                          ("a", "b"))
    params = config.as_params()
    assert params["lr"] == "0.010"          # as given, so a resumed attempt logs the same value
    assert params["batch_size"] == "256"    # defaults are logged too
    assert params["features"] == "a, b"


@pytest.mark.parametrize("raw, message", [
    ({"epoch": "3"}, "unknown parameter 'epoch'"),
    ({"epochs": "three"}, "is not a int"),
    ({"epochs": "0"}, "out of range"),
    ({"model": "xgboost"}, "out of range"),
    ({"test_fraction": "1"}, "out of range"),
])
def test_bad_parameters_are_configuration_errors(raw, message):
    with pytest.raises(settings.ConfigError, match=message):
        settings.parse(raw)


def test_sources_merge_file_then_env_then_params_then_flags():
    merged = settings.merge('{"epochs": "1", "lr": "0.1", "seed": "4"}', '{"epochs": "2"}',
                            ["lr=0.2", "model=random_forest"],
                            {"model": "logistic", "target": None})
    assert merged == {"epochs": "2", "lr": "0.2", "seed": "4", "model": "logistic"}


@pytest.mark.parametrize("file_text, env_json, pairs", [
    ("{not json", None, []), (None, '["a"]', []), (None, None, ["novalue"])])
def test_malformed_sources_are_configuration_errors(file_text, env_json, pairs):
    with pytest.raises(settings.ConfigError):
        settings.merge(file_text, env_json, pairs, {})


def test_pacing_and_epochs_do_not_change_which_checkpoints_fit():
    one = settings.parse({"epochs": "3", "min_epoch_seconds": "2"}).as_params()
    two = settings.parse({"epochs": "9"}).as_params()
    assert state_shaping(one) == state_shaping(two)
    assert state_shaping(one) != state_shaping(settings.parse({"lr": "0.3"}).as_params())


# --- data ---------------------------------------------------------------------------------------


def test_synthetic_transactions_are_deterministic_and_drift_shifts_only_chosen_features():
    base = synthetic.transactions(3000, seed=1)
    assert base.column_names == [*synthetic.feature_names(), "is_fraud"]
    assert base.equals(synthetic.transactions(3000, seed=1))
    assert not base.equals(synthetic.transactions(3000, seed=2))
    fraud_rate = np.mean(base.column("is_fraud").to_numpy())
    assert 0.03 < fraud_rate < 0.2
    drifted = synthetic.transactions(3000, seed=1, drift=2.0, drift_features=3)
    shift = [np.mean(drifted.column(c).to_numpy()) - np.mean(base.column(c).to_numpy())
             for c in synthetic.feature_names()]
    assert shift[:3] == pytest.approx([2.0] * 3)
    assert shift[3:] == pytest.approx([0.0] * 17)


def test_data_command_writes_parquet_into_a_folder(tmp_path):
    import pyarrow.parquet as pq

    assert synthetic.main(["--rows", "50", "--out", f"{tmp_path}/set/"]) == 0
    assert pq.read_table(tmp_path / "set" / "part-0.parquet").num_rows == 50


def test_split_is_seeded_disjoint_and_complete():
    train_a, test_a = split_indices(100, 0.2, seed=3)
    train_b, test_b = split_indices(100, 0.2, seed=3)
    assert np.array_equal(test_a, test_b) and np.array_equal(train_a, train_b)
    assert len(test_a) == 20 and len(train_a) == 80
    assert sorted([*train_a, *test_a]) == list(range(100))
    assert not np.array_equal(test_a, split_indices(100, 0.2, seed=4)[1])
    assert len(split_indices(2, 0.01, seed=0)[1]) == 1  # at least one held-out row
    with pytest.raises(settings.ConfigError):
        split_indices(1, 0.2, seed=0)


def test_epoch_order_is_the_same_on_every_attempt_and_differs_between_epochs():
    assert np.array_equal(epoch_order(50, 1, 2), epoch_order(50, 1, 2))
    assert not np.array_equal(epoch_order(50, 1, 2), epoch_order(50, 1, 3))


def test_batches_fold_a_tail_too_small_for_every_rank_into_the_previous_batch():
    assert [len(b) for b in batches(np.arange(10), 4)] == [4, 4, 2]
    assert [len(b) for b in batches(np.arange(9), 4, minimum=2)] == [4, 5]
    assert [len(b) for b in batches(np.arange(3), 4, minimum=2)] == [3]


def test_feature_columns_are_numeric_non_target_unless_named():
    import pyarrow as pa

    schema = pa.schema([("id", pa.int64()), ("country", pa.string()), ("amount", pa.float64()),
                        ("flag", pa.bool_()), ("is_fraud", pa.bool_())])
    assert feature_columns(schema, "is_fraud", ()) == ["id", "amount", "flag"]
    assert feature_columns(schema, "is_fraud", ("amount",)) == ["amount"]
    with pytest.raises(settings.ConfigError, match="target column 'label'"):
        feature_columns(schema, "label", ())
    with pytest.raises(settings.ConfigError, match="not found: nope"):
        feature_columns(schema, "is_fraud", ("nope",))


def test_labels_must_be_binary():
    assert labels(np.array([True, False]), "t").tolist() == [1, 0]
    with pytest.raises(settings.ConfigError, match="binary"):
        labels(np.array([0, 1, 2]), "t")


def test_prepare_standardizes_on_the_training_split():
    config = settings.parse({"test_fraction": "0.25"})
    data = prepare(synthetic.transactions(400, seed=5), config)
    assert data.columns == synthetic.feature_names()
    assert len(data.y_test) == 100 and len(data.y_train) == 300
    assert np.allclose(data.x_train.mean(axis=0), 0.0, atol=1e-9)
    assert list(data.raw_test.columns) == data.columns


# --- checkpoints --------------------------------------------------------------------------------


def meta(step: int, fp: str = "fp") -> ck.Meta:
    return ck.Meta(step, step // 10, 0, fp, ck.step_dir(step))


def test_complete_checkpoints_are_those_with_meta_newest_first():
    names = ["latest.json", "step-000000010/state.bin", "step-000000010/meta.json",
             "step-000000030/state.bin", "step-000000020/state.bin", "step-000000020/meta.json"]
    assert ck.complete_steps(names) == [20, 10]


def test_the_pointer_wins_when_it_names_a_complete_checkpoint_of_this_configuration():
    metas = [meta(10), meta(20)]
    assert ck.choose(meta(10), metas, "fp") == meta(10)


@pytest.mark.parametrize("pointer", [None, meta(30), meta(10, "other")])
def test_without_a_usable_pointer_the_newest_complete_checkpoint_is_resumed(pointer):
    assert ck.choose(pointer, [meta(10), meta(20)], "fp") == meta(20)


def test_checkpoints_of_another_configuration_are_never_resumed():
    assert ck.choose(meta(20, "old"), [meta(10, "old"), meta(20, "old")], "new") is None
    assert ck.choose(None, [meta(10, "old"), meta(5)], "fp") == meta(5)


def test_pruning_keeps_the_newest_and_the_current_and_drops_dead_partial_writes():
    names = [f"step-{s:09d}/{f}" for s in (10, 20, 30) for f in ("state.bin", "meta.json")]
    names += ["step-000000015/state.bin", "step-000000040/state.bin", "latest.json"]
    stale = ck.prunable(names, keep=2, current=30)
    assert sorted(stale) == ["step-000000010/meta.json", "step-000000010/state.bin",
                             "step-000000015/state.bin"]


def test_a_local_folder_round_trips_and_resumes_the_newest(tmp_path):
    store = ck.Checkpoints(str(tmp_path / "c"), "fp", keep=2)
    assert store.latest() is None
    for step in (5, 10, 15):
        store.save(ck.Position(step, step // 5, 0), f"state {step}".encode())
    found, state = store.latest()
    assert (found.step, found.epoch, state) == (15, 3, b"state 15")
    assert json.loads((tmp_path / "c" / "latest.json").read_text())["path"] == "step-000000015/"
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [
        "latest.json", "step-000000010", "step-000000015"]


def test_a_broken_pointer_falls_back_to_the_listing(tmp_path):
    store = ck.Checkpoints(str(tmp_path), "fp")
    store.save(ck.Position(3, 1, 0), b"three")
    (tmp_path / "latest.json").write_text("{half a write")
    found, state = store.latest()
    assert (found.step, state) == (3, b"three")
    assert ck.Checkpoints(str(tmp_path), "other").latest() is None


# --- launching ----------------------------------------------------------------------------------


def test_a_multi_worker_run_relaunches_through_torchrun_with_the_operators_rendezvous():
    env = {"NNODES": "2", "NODE_RANK": "1", "NPROC_PER_NODE": "4", "MASTER_ADDR": "run-0.run",
           "MASTER_PORT": "29500"}
    argv = torchrun_argv(env, ["--param", "model=torch_mlp"])
    assert argv[1:] == ["-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", "1",
                        "--nproc-per-node", "4", "--master-addr", "run-0.run",
                        "--master-port", "29500", "-m", "ferry.examples.trainer",
                        "--param", "model=torch_mlp"]
    assert torchrun_argv(env | {"RANK": "0"}, []) is None
    assert torchrun_argv({}, []) is None


def test_world_comes_from_torchruns_environment():
    assert World.from_env({}) == World(0, 1, 0)
    world = World.from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (world.rank, world.size, world.local_rank, world.leader) == (3, 4, 1, False)


def test_the_command_exits_2_on_bad_parameters(tmp_path):
    result = subprocess.run([sys.executable, "-m", "ferry.examples.trainer", "--features",
                             str(tmp_path), "--param", "epochz=3"], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin"}, timeout=120)
    assert result.returncode == 2
    assert "unknown parameter 'epochz'" in result.stderr


# --- training (real scikit-learn, local files) ----------------------------------------------------


@pytest.fixture(scope="module")
def features(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("features")
    synthetic.write(synthetic.transactions(2000, seed=7), f"{folder}/")
    return str(folder)


def run(features, checkpoint, stop_after=None, **params):
    """Train; with ``stop_after``, SIGTERM is simulated right after that many checkpoints."""
    config = settings.parse({"epochs": "4", **params})
    stop, seen = threading.Event(), []

    def say(line: str) -> None:
        seen.append(line)
        if stop_after and sum(s.startswith("checkpoint") for s in seen) == stop_after:
            stop.set()

    return train(config, features, checkpoint, Quiet(), World(), stop, say=say), seen


@pytest.mark.parametrize("model", ["logistic", "random_forest"])
def test_training_learns_the_fraud_concept(features, model):
    outcome, lines = run(features, None, model=model)
    assert outcome.metrics["auc"] > 0.85
    assert 0 < outcome.metrics["accuracy"] <= 1
    assert sum(line.startswith("epoch") for line in lines) == 4


@pytest.mark.parametrize("model", ["logistic", "random_forest"])
def test_a_stopped_run_resumes_at_its_checkpoint_and_ends_with_the_same_model(features, tmp_path,
                                                                             model):
    uninterrupted, _ = run(features, str(tmp_path / "straight"), model=model)
    with pytest.raises(Stopped) as stopped:
        run(features, str(tmp_path / "stopped"), stop_after=2, model=model)
    resumed, lines = run(features, str(tmp_path / "stopped"), model=model)
    assert resumed.resumed_from == stopped.value.step > 0
    assert lines[0].startswith(f"resumed from {tmp_path}/stopped/step-")
    assert sum(line.startswith("epoch") for line in lines) == 2
    assert resumed.metrics == uninterrupted.metrics


def test_sigterm_mid_epoch_saves_the_batch_position(features, tmp_path):
    config = settings.parse({"epochs": "2", "batch_size": "100"})
    stop = threading.Event()
    stop.set()  # SIGTERM before the first batch: position 0 of epoch 0 is saved
    with pytest.raises(Stopped):
        train(config, features, str(tmp_path), Quiet(), World(), stop, say=lambda _: None)
    assert ck.Checkpoints(str(tmp_path), "any").latest() is None  # another fingerprint
    saved = json.loads((tmp_path / "latest.json").read_text())
    assert (saved["step"], saved["epoch"], saved["batch"]) == (0, 0, 0)


def test_a_multi_worker_run_of_a_single_process_model_exits_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "ferry.examples.trainer", "--features",
                             str(tmp_path)], capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "NNODES": "2", "NPROC_PER_NODE": "1"})
    assert result.returncode == 2
    assert "model 'logistic' trains in one process" in result.stderr
