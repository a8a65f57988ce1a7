"""Sweep trial generation and selection (pure)."""

import math

import pytest
from pydantic import ValidationError

from ferry.api import parse_spec
from ferry.reconcilers.sweep import (
    TrialView, best_trial, decide_sweep, effective_seed, format_value, grid_size, grid_values,
    to_start, trial_count, trial_parameters)
from ferry.status import find_condition


def sweep(**fields):
    base = {"parameters": [{"name": "lr", "values": ["0.1", "0.01"]}], "maxTrials": 4,
            "objective": {"metric": "auc"}}
    return parse_spec("TrainingRun", {"image": "x", "sweep": base | fields}).sweep


def trial(index, phase=None, auc=None, **extra):
    metrics = {"auc": auc} if auc is not None else {}
    return TrialView(index=index, name=f"run-t{index}", parameters={}, phase=phase,
                     metrics=metrics, **extra)


def test_grid_of_values_is_the_cartesian_product_first_parameter_slowest():
    s = sweep(parameters=[{"name": "lr", "values": ["0.1", "0.01"]},
                          {"name": "depth", "values": ["2", "4", "8"]}], maxTrials=10)
    assert trial_count(s) == 6  # the grid is smaller than maxTrials
    combos = [trial_parameters(s, 0, i) for i in range(6)]
    assert combos[0] == {"lr": "0.1", "depth": "2"}
    assert combos[2] == {"lr": "0.1", "depth": "8"}
    assert combos[3] == {"lr": "0.01", "depth": "2"}
    assert len({tuple(c.items()) for c in combos}) == 6


def test_grid_is_cut_at_max_trials():
    s = sweep(parameters=[{"name": "a", "values": ["1", "2", "3"]},
                          {"name": "b", "values": ["x", "y"]}], maxTrials=4)
    assert grid_size(s) == 6 and trial_count(s) == 4
    with pytest.raises(IndexError):
        trial_parameters(s, 0, 4)


def test_grid_over_a_range_uses_evenly_spaced_points():
    s = sweep(parameters=[{"name": "dropout", "min": 0.0, "max": 0.5, "gridPoints": 3}])
    assert grid_values(s.parameters[0]) == ["0", "0.25", "0.5"]


def test_grid_over_a_log_range_is_geometric():
    s = sweep(parameters=[{"name": "lr", "min": 0.0001, "max": 0.1, "logScale": True,
                           "gridPoints": 4}])
    assert grid_values(s.parameters[0]) == ["0.0001", "0.001", "0.01", "0.1"]


def test_integer_ranges_round_and_merge_duplicate_points():
    s = sweep(parameters=[{"name": "layers", "min": 1, "max": 2, "gridPoints": 5,
                           "integer": True}])
    assert grid_values(s.parameters[0]) == ["1", "2"]


def test_random_trials_depend_only_on_spec_seed_and_index():
    s = sweep(algorithm="random", maxTrials=20, seed=7,
              parameters=[{"name": "lr", "min": 1e-4, "max": 1e-1, "logScale": True},
                          {"name": "opt", "values": ["adam", "sgd"]}])
    first = [trial_parameters(s, 7, i) for i in range(20)]
    assert first == [trial_parameters(s, 7, i) for i in range(20)]
    # index 5 alone gives the same answer as when computed in a sequence
    assert trial_parameters(s, 7, 5) == first[5]
    assert [trial_parameters(s, 8, i) for i in range(20)] != first
    assert len({p["lr"] for p in first}) == 20


def test_random_log_scale_samples_stay_in_range_and_spread_over_decades():
    s = sweep(algorithm="random", maxTrials=200, seed=1,
              parameters=[{"name": "lr", "min": 1e-5, "max": 1.0, "logScale": True}])
    values = [float(trial_parameters(s, 1, i)["lr"]) for i in range(200)]
    assert all(1e-5 <= v <= 1.0 for v in values)
    decades = {math.floor(math.log10(v)) for v in values}
    assert len(decades) >= 4  # a uniform sample would put ~all in the last decade
    assert sum(v < 1e-2 for v in values) > 60


def test_random_linear_samples_are_uniform_and_integer_when_asked():
    s = sweep(algorithm="random", maxTrials=100, seed=3,
              parameters=[{"name": "batch", "min": 16, "max": 256, "integer": True}])
    values = [trial_parameters(s, 3, i)["batch"] for i in range(100)]
    assert all(v.isdigit() and 16 <= int(v) <= 256 for v in values)
    assert trial_count(s) == 100


def test_random_values_are_drawn_from_the_list():
    s = sweep(algorithm="random", maxTrials=30, seed=0,
              parameters=[{"name": "opt", "values": ["adam", "sgd", "rmsprop"]}])
    assert {trial_parameters(s, 0, i)["opt"] for i in range(30)} == {"adam", "sgd", "rmsprop"}


def test_the_default_seed_comes_from_the_uid_and_an_explicit_one_wins():
    s = sweep(algorithm="random")
    assert effective_seed(s, "uid-a") == effective_seed(s, "uid-a")
    assert effective_seed(s, "uid-a") != effective_seed(s, "uid-b")
    assert effective_seed(sweep(algorithm="random", seed=42), "uid-a") == 42


def test_format_value():
    assert format_value(0.1) == "0.1"
    assert format_value(1e-05) == "1e-05"
    assert format_value(3.7, integer=True) == "4"


def test_parameters_need_values_or_a_range_and_log_scale_a_positive_min():
    with pytest.raises(ValidationError, match="either values or min and max"):
        sweep(parameters=[{"name": "lr", "min": 0.1}])
    with pytest.raises(ValidationError, match="min must be below max"):
        sweep(parameters=[{"name": "lr", "min": 1.0, "max": 0.1}])
    with pytest.raises(ValidationError, match="logScale needs a positive min"):
        sweep(parameters=[{"name": "lr", "min": 0.0, "max": 1.0, "logScale": True}])
    with pytest.raises(ValidationError, match="parallelism must not exceed"):
        sweep(maxTrials=2, parallelism=3)


def test_to_start_fills_free_slots_with_the_lowest_missing_indices():
    assert to_start(4, 2, {}) == [0, 1]
    assert to_start(4, 2, {0: None, 1: "Running"}) == []
    assert to_start(4, 2, {0: "Succeeded", 1: "Running"}) == [2]
    assert to_start(4, 2, {0: "Succeeded", 1: "Failed"}) == [2, 3]
    assert to_start(4, 2, {0: "Succeeded", 1: "Failed", 2: "Succeeded", 3: "Running"}) == []


def test_to_start_never_exceeds_parallelism_even_with_gaps():
    # trial 1 was created and is running; 0 is missing (e.g. deleted): only one slot is free
    assert to_start(5, 2, {1: "Running"}) == [0]
    assert to_start(5, 1, {1: "Pending"}) == []


def test_best_trial_maximize_minimize_and_ties():
    trials = [trial(0, "Succeeded", 0.7), trial(1, "Succeeded", 0.9), trial(2, "Failed", 0.99),
              trial(3, "Running", 0.95), trial(4, "Succeeded", 0.9)]
    assert best_trial(trials, "auc", "maximize").index == 1  # tie with 4 → lower index
    assert best_trial(trials, "auc", "minimize").index == 0
    assert best_trial([trial(0, "Succeeded")], "auc", "maximize") is None


def test_decide_while_running_lists_trials_and_the_best_so_far():
    s = sweep()
    fields, events = decide_sweep(s, {}, 1, [
        trial(0, "Succeeded", 0.8, mlflow_run_id="r0", start_time="2026-01-01T00:00:00Z"),
        trial(1, "Running")])
    assert fields["phase"] == "Running"
    assert fields["trials"][0] == {"name": "run-t0", "parameters": {}, "phase": "Succeeded",
                                   "objective": 0.8, "mlflowRunId": "r0"}
    assert fields["trials"][1]["phase"] == "Running"
    assert fields["bestTrial"] == "run-t0" and fields["bestObjective"] == 0.8
    assert fields["startTime"] == "2026-01-01T00:00:00Z"
    assert find_condition(fields["conditions"], "Succeeded")["reason"] == "Sweeping"
    assert events == []


def test_decide_succeeds_when_all_trials_finished_and_copies_the_best_metrics():
    s = sweep(objective={"metric": "loss", "goal": "minimize"})
    trials = [TrialView(i, f"run-t{i}", {}, "Succeeded", {"loss": loss, "auc": 1 - loss},
                        completion_time=f"2026-01-01T00:00:0{i}Z")
              for i, loss in enumerate([0.5, 0.2, 0.3, 0.4])]
    fields, events = decide_sweep(s, {}, 1, trials)
    assert fields["phase"] == "Succeeded"
    assert fields["bestTrial"] == "run-t1" and fields["bestObjective"] == 0.2
    assert fields["metrics"] == {"loss": 0.2, "auc": 0.8}
    assert fields["completionTime"] == "2026-01-01T00:00:03Z"
    assert [e.reason for e in events] == ["BestTrialSelected"]
    again, events = decide_sweep(s, fields, 1, trials)
    assert events == []  # no second Event for the same transition


def test_decide_fails_when_no_trial_succeeded_or_none_logged_the_objective():
    s = sweep()
    fields, events = decide_sweep(s, {}, 1, [trial(i, "Failed") for i in range(4)])
    assert fields["phase"] == "Failed"
    assert find_condition(fields["conditions"], "Succeeded")["reason"] == "NoTrialSucceeded"
    assert events[0].type == "Warning"
    fields, _ = decide_sweep(s, {}, 1, [trial(i, "Succeeded") for i in range(4)])
    assert find_condition(fields["conditions"], "Succeeded")["reason"] == "ObjectiveNotLogged"
    assert "auc" in fields["message"]


def test_decide_is_pending_before_the_first_trial_exists():
    fields, _ = decide_sweep(sweep(), {}, 1, [])
    assert fields["phase"] == "Pending" and fields["trials"] == []
