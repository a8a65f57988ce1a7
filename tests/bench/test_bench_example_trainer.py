"""Figures of the example trainer on this machine: training time on the synthetic fraud data
(4,000 rows x 20 features, 5 epochs) per model, and the cost of its checkpoints. No MLflow here:
the tracking round trips are measured by the integration tests' wall time, not by this."""

from __future__ import annotations

import threading
import time

import pytest

from ferry.examples import config as settings
from ferry.examples import data as synthetic
from ferry.examples.models import World
from ferry.examples.trainer import Quiet, train


@pytest.fixture(scope="module")
def features(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("bench-features")
    synthetic.write(synthetic.transactions(4000, seed=0), f"{folder}/")
    return str(folder)


@pytest.mark.parametrize("model", ["logistic", "random_forest"])
def test_bench_training_time(features, tmp_path, model):
    config = settings.parse({"model": model, "epochs": "5"})
    train(settings.parse({"model": model, "epochs": "1"}), features, None, Quiet(), World(),
          threading.Event(), say=lambda _: None)  # warm-up: imports and caches
    for checkpoint in (None, str(tmp_path / "ckpt")):
        started = time.perf_counter()
        outcome = train(config, features, checkpoint, Quiet(), World(), threading.Event(),
                        say=lambda _: None)
        seconds = time.perf_counter() - started
        mode = "with local checkpoints" if checkpoint else "no checkpoints"
        print(f"BENCH example trainer {model}, 4000x20, 5 epochs, {mode}: {seconds:.2f} s "
              f"(auc {outcome.metrics['auc']:.3f})")
