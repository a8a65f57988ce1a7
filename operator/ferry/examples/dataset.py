"""Features table → standardized train/test arrays, deterministically per seed (pure)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ferry.examples.config import ConfigError, TrainConfig


@dataclass
class Dataset:
    columns: list[str]
    x_train: np.ndarray  # standardized with ``scaler``
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    scaler: object       # sklearn StandardScaler fitted on the raw training features (by name)
    raw_test: object     # pandas DataFrame of the raw test features: the model's input example


def feature_columns(schema, target: str, wanted: tuple[str, ...]) -> list[str]:
    """The requested columns, or every numeric/boolean column except the target."""
    import pyarrow as pa

    types = {f.name: f.type for f in schema}
    if target not in types:
        raise ConfigError(f"target column {target!r} is not in the features ({', '.join(types)})")
    if wanted:
        missing = [c for c in wanted if c not in types]
        if missing:
            raise ConfigError(f"feature columns not found: {', '.join(missing)}")
        return list(wanted)
    numeric = [name for name, kind in types.items() if name != target and (
        pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind))]
    if not numeric:
        raise ConfigError("the features have no numeric column besides the target")
    return numeric


def split_indices(rows: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded shuffle, then the first ``test_fraction`` (at least one row) is held out."""
    if rows < 2:
        raise ConfigError(f"need at least 2 rows to hold out a test split, got {rows}")
    order = np.random.default_rng(seed).permutation(rows)
    held_out = min(max(1, round(rows * test_fraction)), rows - 1)
    return np.sort(order[held_out:]), np.sort(order[:held_out])


def epoch_order(rows: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the training rows in ``epoch``: the same on every attempt and every rank."""
    return np.random.default_rng([seed, epoch]).permutation(rows)


def batches(order: np.ndarray, size: int, minimum: int = 1) -> list[np.ndarray]:
    """Consecutive batches of ``size``; a last batch smaller than ``minimum`` joins the one before
    (so each DDP rank gets at least one row of every batch)."""
    chunks = [order[i:i + size] for i in range(0, len(order), size)]
    if len(chunks) > 1 and len(chunks[-1]) < minimum:
        chunks[-2:] = [np.concatenate(chunks[-2:])]
    return chunks


def labels(values: np.ndarray, target: str) -> np.ndarray:
    found = set(np.unique(values).tolist())
    if not found <= {0, 1}:  # booleans compare equal to 0 and 1
        raise ConfigError(f"target {target!r} must be binary 0/1, found {sorted(found)[:5]}")
    return values.astype(np.int64)


def prepare(table, config: TrainConfig) -> Dataset:
    from sklearn.preprocessing import StandardScaler

    columns = feature_columns(table.schema, config.target, config.features)
    frame = table.select([*columns, config.target]).to_pandas().dropna()
    features = frame[columns].astype("float64")
    y = labels(frame[config.target].to_numpy(), config.target)
    train, test = split_indices(len(frame), config.test_fraction, config.seed)
    scaler = StandardScaler().fit(features.iloc[train])
    scaled = scaler.transform(features)
    return Dataset(columns, scaled[train], y[train], scaled[test], y[test], scaler,
                   features.iloc[test].reset_index(drop=True))
