"""The learners the example trainer drives, one step per batch, with their state as bytes.

``logistic`` (default) is scikit-learn's SGDClassifier fed by ``partial_fit``; ``random_forest``
grows ``trees_per_epoch`` trees per epoch with ``warm_start``; ``torch_mlp`` is a small PyTorch
MLP, on CUDA when available and wrapped in DistributedDataParallel under torchrun. Batches come
in a seeded order and the state is restored exactly, so a resumed run ends with the same model
as an uninterrupted one.
"""

from __future__ import annotations

import io
import os
import pickle
from dataclasses import dataclass

import mlflow.pyfunc
import numpy as np

from ferry.examples.config import ConfigError, TrainConfig


@dataclass(frozen=True)
class World:
    """This process's place in a (torchrun) job; a plain process is rank 0 of 1."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls, env=os.environ) -> World:
        return cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)),
                   int(env.get("LOCAL_RANK", 0)))

    @property
    def leader(self) -> bool:
        return self.rank == 0


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


class Logistic:
    """Logistic regression by SGD; one ``partial_fit`` per batch."""

    def __init__(self, config: TrainConfig) -> None:
        from sklearn.linear_model import SGDClassifier

        self.model = SGDClassifier(loss="log_loss", alpha=config.alpha, learning_rate="constant",
                                   eta0=config.lr, shuffle=False, random_state=config.seed)
        self.batch_size = config.batch_size

    def fit_batch(self, x: np.ndarray, y: np.ndarray) -> None:
        self.model.partial_fit(x, y, classes=np.array([0, 1]))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(x)[:, 1]

    def any_rank(self, flag: bool) -> bool:
        return flag  # one process

    def state(self) -> bytes:
        return pickle.dumps(self.model)

    def restore(self, state: bytes) -> None:
        self.model = pickle.loads(state)  # our own checkpoint, written by this trainer

    def log_model(self, run_id: str, scaler, columns: list[str], signature) -> None:
        _log_sklearn(self.model, run_id, scaler, signature)


class RandomForest(Logistic):
    """A forest that grows ``trees_per_epoch`` trees per epoch: one step per epoch."""

    def __init__(self, config: TrainConfig) -> None:
        from sklearn.ensemble import RandomForestClassifier

        self.model = RandomForestClassifier(n_estimators=0, warm_start=True,
                                            max_depth=config.max_depth or None,
                                            random_state=config.seed, n_jobs=1)
        self.grow = config.trees_per_epoch
        self.batch_size = 0  # the whole training split is one batch

    def fit_batch(self, x: np.ndarray, y: np.ndarray) -> None:
        self.model.set_params(n_estimators=self.model.n_estimators + self.grow)
        self.model.fit(x, y)


def _log_sklearn(model, run_id: str, scaler, signature) -> None:
    import mlflow.sklearn
    import sklearn
    from sklearn.pipeline import make_pipeline

    mlflow.sklearn.log_model(make_pipeline(scaler, model), name="model", run_id=run_id,
                             signature=signature,
                             pip_requirements=[f"scikit-learn=={sklearn.__version__}",
                                               f"numpy=={np.__version__}"])


class TorchMLP:
    """Two hidden layers, BCE loss, Adam; DDP (gloo on CPU, nccl on GPU) when WORLD_SIZE > 1."""

    def __init__(self, config: TrainConfig, features: int, world: World) -> None:
        import torch
        from torch import nn

        self.torch, self.world = torch, world
        cuda = torch.cuda.is_available()
        self.device = torch.device(f"cuda:{world.local_rank}" if cuda else "cpu")
        if world.size > 1 and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if cuda else "gloo")
        torch.manual_seed(config.seed)
        self.net = nn.Sequential(nn.Linear(features, config.hidden), nn.ReLU(),
                                 nn.Linear(config.hidden, config.hidden), nn.ReLU(),
                                 nn.Linear(config.hidden, 1)).to(self.device)
        self.model = self.net
        if world.size > 1:
            self.model = nn.parallel.DistributedDataParallel(
                self.net, device_ids=[world.local_rank] if cuda else None)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.loss_fn = nn.BCEWithLogitsLoss()
        self.batch_size = config.batch_size

    def _tensor(self, values: np.ndarray):
        return self.torch.as_tensor(values, dtype=self.torch.float32, device=self.device)

    def fit_batch(self, x: np.ndarray, y: np.ndarray) -> None:
        self.optimizer.zero_grad()
        loss = self.loss_fn(self.model(self._tensor(x)).squeeze(1), self._tensor(y))
        loss.backward()  # DDP averages the gradients of all ranks here
        self.optimizer.step()

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            return self.torch.sigmoid(self.net(self._tensor(x))).squeeze(1).cpu().numpy()

    def any_rank(self, flag: bool) -> bool:
        """True on every rank when it is True on one (so all ranks stop at the same batch)."""
        if self.world.size == 1:
            return flag
        value = self.torch.tensor([1.0 if flag else 0.0], device=self.device)
        self.torch.distributed.all_reduce(value, op=self.torch.distributed.ReduceOp.MAX)
        return bool(value.item())

    def state(self) -> bytes:
        buffer = io.BytesIO()
        self.torch.save({"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict()},
                        buffer)
        return buffer.getvalue()

    def restore(self, state: bytes) -> None:
        saved = self.torch.load(io.BytesIO(state), map_location=self.device)
        self.net.load_state_dict(saved["net"])
        self.optimizer.load_state_dict(saved["optimizer"])

    def log_model(self, run_id: str, scaler, columns: list[str], signature) -> None:
        layers = [(m.weight.detach().cpu().numpy().T, m.bias.detach().cpu().numpy())
                  for m in self.net if hasattr(m, "weight")]
        # Model.log, unlike pyfunc.log_model, logs into a given run without making it active.
        from mlflow.models import Model

        Model.log(artifact_path=None, name="model", flavor=mlflow.pyfunc, run_id=run_id,
                  python_model=NumpyMLP(columns, scaler.mean_, scaler.scale_, layers),
                  signature=signature, pip_requirements=[f"numpy=={np.__version__}", "pandas"])

    def close(self) -> None:
        if self.world.size > 1 and self.torch.distributed.is_initialized():
            self.torch.distributed.destroy_process_group()


class NumpyMLP(mlflow.pyfunc.PythonModel):
    """The trained MLP as an MLflow pyfunc that needs only numpy: serving needs no torch."""

    def __init__(self, columns: list[str], mean, scale, layers) -> None:
        self.columns, self.mean, self.scale, self.layers = columns, mean, scale, layers

    def predict(self, context, model_input, params=None):
        x = (np.asarray(model_input[self.columns], dtype=np.float64) - self.mean) / self.scale
        for i, (weight, bias) in enumerate(self.layers):
            x = x @ weight + bias
            if i < len(self.layers) - 1:
                x = np.maximum(x, 0.0)
        return (x[:, 0] > 0).astype(np.int64)  # logit > 0 <=> probability > 0.5


def learner(config: TrainConfig, features: int, world: World):
    if config.model == "torch_mlp":
        return TorchMLP(config, features, world)
    if world.size > 1:
        raise ConfigError(f"model {config.model!r} trains in one process; use torch_mlp for DDP")
    return RandomForest(config) if config.model == "random_forest" else Logistic(config)
