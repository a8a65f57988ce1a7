"""The tracking adapter (Tracker) against a real MLflow store (SQLite), with the race it must survive."""

from __future__ import annotations

from ferry.adapters.mlflow import Tracker


def test_an_experiment_created_by_a_concurrent_run_is_used_not_an_error(tmp_path):
    registry = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    real_get = registry.client.get_experiment_by_name
    winner = registry.client.create_experiment("fraud")  # the other run got there first ...
    calls = []

    def stale_get(name):  # ... after this run had looked and found nothing
        calls.append(name)
        return None if len(calls) == 1 else real_get(name)

    registry.client.get_experiment_by_name = stale_get
    run_id, experiment_id = registry.ensure_run("fraud", "uid-1", {"ferry.dev/name": "a"})
    assert experiment_id == winner and len(calls) == 2
    again = registry.ensure_run("fraud", "uid-1", {"ferry.dev/name": "a"})
    assert again == (run_id, experiment_id), "the run is created once"
