"""The example trainer: features from S3 (or a local path) → a fraud classifier in MLflow.

Inside a TrainingRun it needs no arguments: everything comes from the operator's environment
(``FERRY_FEATURES_URI``, ``FERRY_PARAMETERS[_FILE]``, ``FERRY_CHECKPOINT_URI``, ``MLFLOW_*``).
From a shell::

    python -m ferry.examples.trainer --features s3://ferry/features/transactions/v2/ \\
        --target is_fraud --checkpoint /tmp/ckpt --experiment fraud --param epochs=10
    torchrun --nproc-per-node 2 -m ferry.examples.trainer --features data/ --param model=torch_mlp

Behaviour a platform relies on:

- it logs into the MLflow run the operator created (``MLFLOW_RUN_ID``) and leaves ending that run
  to the operator; without one it creates a run and ends it itself. Only rank 0 logs;
- per epoch it logs ``loss``, ``val_loss``, ``epoch`` and ``step`` (batches so far), at the end
  ``auc`` and ``accuracy`` on the held-out split, and the model (an MLflow pyfunc with an input
  signature) under the name ``model``;
- it checkpoints after every epoch and on SIGTERM (preemption, drain), and resumes from the newest
  checkpoint on start, logging ``resumed_from_step``;
- with ``NNODES``/``NPROC_PER_NODE`` set (a multi-worker TrainingRun) and not yet under torchrun,
  it re-launches itself through torchrun with the operator's rendezvous variables;
- exit codes: 0 done, 2 bad parameters or data (do not retry), 143 stopped by SIGTERM after
  saving a checkpoint, 1 anything else.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ferry.examples import config as settings
from ferry.examples.checkpoints import Checkpoints, Position, fingerprint
from ferry.examples.dataset import batches, epoch_order, prepare
from ferry.examples.models import World, learner, log_loss
from ferry.examples.storage import read_features

EXIT_CONFIG = 2
EXIT_STOPPED = 128 + signal.SIGTERM
DEFAULT_EXPERIMENT = "ferry-examples"
RESUMABLE_CHANGES = frozenset({"epochs", "min_epoch_seconds", "keep_checkpoints"})


class Stopped(Exception):
    """SIGTERM arrived; the position was saved (when checkpointing) and the process should exit."""

    def __init__(self, step: int) -> None:
        super().__init__(f"stopped at step {step}")
        self.step = step


class Tracking:
    """Rank 0's MLflow logging into one run; the operator's run is never ended here."""

    def __init__(self, tracking_uri: str | None, run_id: str | None, experiment: str | None) -> None:
        import mlflow
        from mlflow import MlflowClient

        if tracking_uri:
            mlflow.set_tracking_uri(tracking_uri)
        self.client = MlflowClient()
        self.owned = run_id is None
        if run_id is None:
            name = experiment or DEFAULT_EXPERIMENT
            found = self.client.get_experiment_by_name(name)
            experiment_id = found.experiment_id if found else self.client.create_experiment(name)
            run_id = self.client.create_run(experiment_id).info.run_id
        self.run_id = run_id
        self.experiment_id = self.client.get_run(run_id).info.experiment_id

    def params(self, values: dict[str, str]) -> None:
        """Log what is not logged yet (a resumed attempt logs the same values again)."""
        from mlflow.entities import Param

        logged = self.client.get_run(self.run_id).data.params
        new = [Param(k, v) for k, v in values.items() if k not in logged]
        for key in (k for k, v in values.items() if k in logged and logged[k] != v):
            print(f"warning: param {key} already logged as {logged[key]!r}", file=sys.stderr)
        if new:
            self.client.log_batch(self.run_id, params=new)

    def metrics(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step)
                                                    for k, v in values.items()])

    def tag(self, key: str, value: str) -> None:
        self.client.set_tag(self.run_id, key, value)

    def log_model(self, model, scaler, columns: list[str], example, predictions) -> None:
        import mlflow
        from mlflow.models import infer_signature

        # The logged model belongs to the run's experiment (the fluent default would be another).
        mlflow.set_experiment(experiment_id=self.experiment_id)
        model.log_model(self.run_id, scaler, columns, infer_signature(example, predictions))

    def end(self, status: str) -> None:
        if self.owned:
            self.client.set_terminated(self.run_id, status)


class Quiet:
    """What ranks other than 0 use instead of Tracking: they log nothing."""

    run_id = None

    def __getattr__(self, _name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


@dataclass
class Outcome:
    metrics: dict[str, float]
    resumed_from: int | None
    run_id: str | None


def train(config: settings.TrainConfig, features_uri: str, checkpoint_uri: str | None,
          tracking, world: World, stop: threading.Event, say=print) -> Outcome:
    data = prepare(read_features(features_uri), config)
    model = learner(config, len(data.columns), world)
    params = config.as_params()
    tracking.params(params | {"features_uri": features_uri, "world_size": str(world.size)})
    wanted = fingerprint(state_shaping(params), features_uri, os.environ.get("FERRY_RUN_UID"))
    checkpoints = Checkpoints(checkpoint_uri, wanted, config.keep_checkpoints) \
        if checkpoint_uri else None
    position, resumed_from = Position(), None
    found = checkpoints.latest() if checkpoints else None
    if found:
        meta, state = found
        model.restore(state)
        position, resumed_from = meta.position, meta.step
        say(f"resumed from {checkpoints.uri}{meta.path} (step {meta.step}, epoch {meta.epoch})")
        tracking.metrics({"resumed_from_step": meta.step}, meta.step)
        tracking.tag("resumed_from_step", str(meta.step))

    def save(at: Position) -> None:
        if checkpoints and world.leader and checkpoints.saved_step != at.step:
            checkpoints.save(at, model.state())
            say(f"checkpoint step {at.step} (epoch {at.epoch}, batch {at.batch})")

    rows = len(data.y_train)
    step = position.step
    for epoch in range(position.epoch, config.epochs):
        started = time.monotonic()
        chunks = batches(epoch_order(rows, config.seed, epoch), model.batch_size or rows,
                         minimum=world.size)
        for index in range(position.batch if epoch == position.epoch else 0, len(chunks)):
            if model.any_rank(stop.is_set()):
                save(Position(step, epoch, index))
                raise Stopped(step)
            mine = chunks[index][world.rank::world.size]
            model.fit_batch(data.x_train[mine], data.y_train[mine])
            step += 1
        metrics = {"loss": log_loss(data.y_train, model.predict_proba(data.x_train)),
                   "val_loss": log_loss(data.y_test, model.predict_proba(data.x_test)),
                   "epoch": epoch + 1, "step": step}
        tracking.metrics(metrics, step)
        say(f"epoch {epoch + 1}/{config.epochs} step {step} loss {metrics['loss']:.4f} "
            f"val_loss {metrics['val_loss']:.4f}")
        save(Position(step, epoch + 1, 0))
        if epoch + 1 < config.epochs:
            stop.wait(max(0.0, config.min_epoch_seconds - (time.monotonic() - started)))
    final = evaluate(data.y_test, model.predict_proba(data.x_test))
    tracking.metrics(final, step)
    say("final " + " ".join(f"{k} {v:.4f}" for k, v in final.items()))
    if world.leader:
        probabilities = model.predict_proba(data.x_test[:20])
        tracking.log_model(model, data.scaler, data.columns, data.raw_test.head(20),
                           (probabilities > 0.5).astype(np.int64))
    close = getattr(model, "close", None)
    if close:
        close()
    return Outcome(final, resumed_from, tracking.run_id)


def state_shaping(params: dict[str, str]) -> dict[str, str]:
    """The parameters a checkpoint depends on: more epochs or other pacing may still resume it."""
    return {k: v for k, v in params.items() if k not in RESUMABLE_CHANGES}


def evaluate(y: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Held-out accuracy and log loss, and ROC AUC when both classes are present."""
    from sklearn.metrics import roc_auc_score

    metrics = {"accuracy": float(np.mean((probabilities > 0.5) == y)),
               "val_loss": log_loss(y, probabilities)}
    if len(set(y.tolist())) == 2:
        metrics["auc"] = float(roc_auc_score(y, probabilities))
    return metrics


def torchrun_argv(env: dict[str, str], argv: list[str]) -> list[str] | None:
    """The torchrun command that runs this trainer on every worker of a multi-worker TrainingRun,
    or None when already under torchrun (RANK is set) or not in one (no NNODES)."""
    if "RANK" in env or "NNODES" not in env:
        return None
    return [sys.executable, "-m", "torch.distributed.run",
            "--nnodes", env["NNODES"], "--node-rank", env.get("NODE_RANK", "0"),
            "--nproc-per-node", env.get("NPROC_PER_NODE", "1"),
            "--master-addr", env.get("MASTER_ADDR", "127.0.0.1"),
            "--master-port", env.get("MASTER_PORT", "29500"),
            "-m", "ferry.examples.trainer", *argv]


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="python -m ferry.examples.trainer",
                                  description=__doc__.split("\n\n")[0])
    cli.add_argument("--features", default=os.environ.get("FERRY_FEATURES_URI"),
                     help="Parquet file, folder or s3:// prefix (default: $FERRY_FEATURES_URI)")
    cli.add_argument("--target", help="label column (parameter 'target'; default is_fraud)")
    cli.add_argument("--model", choices=settings.MODELS, help="parameter 'model'")
    cli.add_argument("--epochs", help="parameter 'epochs'")
    cli.add_argument("--seed", help="parameter 'seed'")
    cli.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                     help="any parameter (repeatable); see ferry.examples.config.TrainConfig")
    cli.add_argument("--checkpoint", default=os.environ.get("FERRY_CHECKPOINT_URI"),
                     help="s3:// prefix or folder (default: $FERRY_CHECKPOINT_URI; none: no "
                          "checkpoints)")
    cli.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"))
    cli.add_argument("--experiment", default=os.environ.get("MLFLOW_EXPERIMENT_NAME"),
                     help="used when no MLFLOW_RUN_ID is given (default: ferry-examples)")
    return cli


def load_config(args: argparse.Namespace, env=os.environ) -> settings.TrainConfig:
    path = env.get("FERRY_PARAMETERS_FILE")
    file_text = Path(path).read_text() if path and Path(path).exists() else None
    raw = settings.merge(file_text, env.get("FERRY_PARAMETERS"), args.param,
                         {"target": args.target, "model": args.model, "epochs": args.epochs,
                          "seed": args.seed})
    return settings.parse(raw)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    launch = torchrun_argv(dict(os.environ), argv)
    try:
        config = load_config(args)
        if not args.features:
            raise settings.ConfigError("no features: pass --features or set FERRY_FEATURES_URI")
        if launch and config.model != "torch_mlp":
            raise settings.ConfigError(f"model {config.model!r} trains in one process: use "
                                       "workers: 1, or model torch_mlp for distributed training")
    except settings.ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    if launch:
        os.execv(launch[0], launch)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    world = World.from_env()
    tracking = Tracking(args.tracking_uri, os.environ.get("MLFLOW_RUN_ID"), args.experiment) \
        if world.leader else Quiet()
    try:
        outcome = train(config, args.features, args.checkpoint, tracking, world, stop,
                        say=lambda line: print(f"[rank {world.rank}] {line}", flush=True))
    except settings.ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        tracking.end("FAILED")
        return EXIT_CONFIG
    except Stopped as stopped:
        print(f"stopped by SIGTERM at step {stopped.step}", flush=True)
        tracking.end("KILLED")
        return EXIT_STOPPED
    except BaseException:
        tracking.end("FAILED")
        raise
    tracking.end("FINISHED")
    if world.leader:
        print(f"mlflow run {outcome.run_id}: " +
              ", ".join(f"{k}={v:.4f}" for k, v in outcome.metrics.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
