"""The example trainer's parameters: TrainingRun ``spec.parameters`` (strings) → typed settings.

Sources, later ones winning: ``FERRY_PARAMETERS_FILE``, ``FERRY_PARAMETERS`` (both written by the
operator from the same spec), then ``--param k=v`` and the explicit flags of the command line.
An unknown or malformed parameter is a configuration error (exit code 2, which the example
TrainingRun lists in ``nonRetryableExitCodes``): a typo must not silently train with defaults.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

MODELS = ("logistic", "random_forest", "torch_mlp")


class ConfigError(ValueError):
    """The parameters cannot be used; retrying will not help."""


@dataclass(frozen=True)
class TrainConfig:
    target: str = "is_fraud"
    model: str = "logistic"
    epochs: int = 5
    lr: float = 0.05
    batch_size: int = 256
    alpha: float = 0.0001          # L2 penalty of the logistic model
    trees_per_epoch: int = 10      # random_forest grows this many trees per epoch
    max_depth: int = 0             # random_forest; 0 = unlimited
    hidden: int = 32               # torch_mlp hidden width
    test_fraction: float = 0.2
    seed: int = 0
    features: tuple[str, ...] = ()  # empty: every numeric column except the target
    keep_checkpoints: int = 2
    # Stretch every epoch to at least this long (demos and tests of preemption on tiny data).
    min_epoch_seconds: float = 0.0
    raw: dict[str, str] = field(default_factory=dict, compare=False)

    def as_params(self) -> dict[str, str]:
        """Every setting as the MLflow param string: the given text when given, else the default."""
        values = {}
        for spec in fields(self):
            if spec.name == "raw":
                continue
            value = getattr(self, spec.name)
            default = ",".join(value) if isinstance(value, tuple) else str(value)
            values[spec.name] = self.raw.get(spec.name, default)
        return values


_CHECKS = {
    "epochs": lambda v: v >= 1,
    "lr": lambda v: v > 0,
    "batch_size": lambda v: v >= 1,
    "alpha": lambda v: v >= 0,
    "trees_per_epoch": lambda v: v >= 1,
    "max_depth": lambda v: v >= 0,
    "hidden": lambda v: v >= 1,
    "test_fraction": lambda v: 0 < v < 1,
    "keep_checkpoints": lambda v: v >= 1,
    "min_epoch_seconds": lambda v: v >= 0,
    "model": lambda v: v in MODELS,
    "target": lambda v: bool(v),
}


def parse(raw: Mapping[str, str]) -> TrainConfig:
    """Typed settings from string parameters; raises ConfigError naming the bad parameter."""
    known = {f.name: f for f in fields(TrainConfig) if f.name != "raw"}
    values: dict[str, object] = {}
    for name, text in raw.items():
        if name not in known:
            raise ConfigError(f"unknown parameter {name!r}; known: {', '.join(sorted(known))}")
        kind = type(getattr(TrainConfig, name))
        text = str(text).strip()
        try:
            if kind is tuple:
                value: object = tuple(c.strip() for c in text.split(",") if c.strip())
            elif kind is int:
                value = int(text)
            elif kind is float:
                value = float(text)
            else:
                value = text
        except ValueError:
            raise ConfigError(f"parameter {name}={text!r} is not a {kind.__name__}") from None
        check = _CHECKS.get(name)
        if check and not check(value):
            raise ConfigError(f"parameter {name}={text!r} is out of range")
        values[name] = value
    return TrainConfig(**values, raw={k: str(v).strip() for k, v in raw.items()})


def merge(file_text: str | None, env_json: str | None, pairs: list[str],
          flags: Mapping[str, str | None]) -> dict[str, str]:
    """The raw parameters from every source, later sources winning."""
    merged: dict[str, str] = {}
    for origin, text in (("FERRY_PARAMETERS_FILE", file_text), ("FERRY_PARAMETERS", env_json)):
        if not text:
            continue
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{origin} is not JSON: {error}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{origin} must be a JSON object")
        merged.update({str(k): str(v) for k, v in loaded.items()})
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param expects KEY=VALUE, got {pair!r}")
        merged[key.strip()] = value
    merged.update({k: v for k, v in flags.items() if v is not None})
    return merged
