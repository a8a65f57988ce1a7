"""Sweeps (pure): which parameters trial i gets, which trials to start now, which one is best.

A sweep's parent TrainingRun runs no Job itself. It starts child TrainingRuns ``<run>-t<i>``, one
per trial, in index order and never more than ``parallelism`` unfinished at once. Trial i's
parameters are a function of (sweep spec, seed, i) only, so an operator that restarts mid-sweep
recomputes exactly the trials it would have created, and creating a trial is idempotent by name:
no trial is ever duplicated or skipped.

- ``grid``: the cartesian product of every parameter's values (a range contributes
  ``gridPoints`` evenly spaced points, geometrically spaced with ``logScale``), first parameter
  varying slowest; the sweep runs the first ``maxTrials`` combinations.
- ``random``: each trial draws every parameter independently from a generator seeded with
  ``(seed, i)``: values uniformly, ranges uniformly (log-uniformly with ``logScale``). Without
  ``spec.sweep.seed`` the seed is derived from the object's uid: stable for that object, different
  for the next one; set a seed to reproduce a sweep in another object.
- The best trial is the succeeded trial with the highest (``maximize``) or lowest (``minimize``)
  value of the objective metric in its final metrics; ties go to the lower index.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
from dataclasses import dataclass

from ferry.api.trainingrun import Sweep, SweepParameter
from ferry.reconcilers.outcome import Event
from ferry.status import ANNOUNCED, make_condition, set_condition, transitions

DONE = ("Succeeded", "Failed")


def format_value(value: float, integer: bool = False) -> str:
    """A parameter value as the string the training code receives (6 significant digits)."""
    if integer:
        return str(int(round(value)))
    return f"{value:.6g}"


def grid_values(parameter: SweepParameter) -> list[str]:
    if parameter.values is not None:
        return list(parameter.values)
    low, high, points = parameter.min, parameter.max, parameter.grid_points
    if parameter.log_scale:
        step = (math.log(high) - math.log(low)) / (points - 1)
        raw = [math.exp(math.log(low) + step * i) for i in range(points)]
    else:
        raw = [low + (high - low) * i / (points - 1) for i in range(points)]
    values = [format_value(v, parameter.integer) for v in raw]
    return list(dict.fromkeys(values))  # integer rounding may merge points


def grid_size(sweep: Sweep) -> int:
    return math.prod(len(grid_values(p)) for p in sweep.parameters)


def trial_count(sweep: Sweep) -> int:
    """How many trials the sweep runs in total."""
    if sweep.algorithm == "grid":
        return min(sweep.max_trials, grid_size(sweep))
    return sweep.max_trials


def effective_seed(sweep: Sweep, uid: str) -> int:
    if sweep.seed is not None:
        return sweep.seed
    return int.from_bytes(hashlib.sha256(uid.encode()).digest()[:8], "big")


def sample(parameter: SweepParameter, rng: random.Random) -> str:
    if parameter.values is not None:
        return rng.choice(parameter.values)
    if parameter.log_scale:
        value = math.exp(rng.uniform(math.log(parameter.min), math.log(parameter.max)))
    else:
        value = rng.uniform(parameter.min, parameter.max)
    return format_value(value, parameter.integer)


def trial_parameters(sweep: Sweep, seed: int, index: int) -> dict[str, str]:
    """The swept parameters of trial ``index``: a function of (sweep, seed, index) only."""
    if not 0 <= index < trial_count(sweep):
        raise IndexError(f"trial {index} is outside the sweep's {trial_count(sweep)} trials")
    if sweep.algorithm == "grid":
        axes = [grid_values(p) for p in sweep.parameters]
        combination = next(itertools.islice(itertools.product(*axes), index, None))
        return {p.name: value for p, value in zip(sweep.parameters, combination, strict=True)}
    rng = random.Random(f"ferry-sweep/{seed}/{index}")  # str seeds hash the same in every process
    return {p.name: sample(p, rng) for p in sweep.parameters}


def to_start(count: int, parallelism: int, phases: dict[int, str | None]) -> list[int]:
    """Indices of the trials to create now: the lowest missing ones, while fewer than
    ``parallelism`` trials are unfinished (a trial without a phase yet counts as unfinished)."""
    unfinished = sum(1 for phase in phases.values() if phase not in DONE)
    free = max(parallelism - unfinished, 0)
    missing = (i for i in range(count) if i not in phases)
    return list(itertools.islice(missing, free))


@dataclass(frozen=True)
class TrialView:
    """One trial as the parent sees it (from the child TrainingRun's status)."""

    index: int
    name: str
    parameters: dict[str, str]
    phase: str | None = None
    metrics: dict | None = None
    mlflow_run_id: str | None = None
    start_time: str | None = None
    completion_time: str | None = None


def objective_of(trial: TrialView, metric: str) -> float | None:
    value = (trial.metrics or {}).get(metric)
    return float(value) if value is not None else None


def best_trial(trials: list[TrialView], metric: str, goal: str) -> TrialView | None:
    scored = [(objective_of(t, metric), t) for t in trials if t.phase == "Succeeded"]
    scored = [(value, t) for value, t in scored if value is not None]
    if not scored:
        return None
    sign = -1 if goal == "maximize" else 1
    return min(scored, key=lambda pair: (sign * pair[0], pair[1].index))[1]


def trial_status(trial: TrialView, metric: str) -> dict:
    entry = {"name": trial.name, "parameters": trial.parameters,
             "phase": trial.phase or "Pending"}
    if (objective := objective_of(trial, metric)) is not None:
        entry["objective"] = objective
    if trial.mlflow_run_id:
        entry["mlflowRunId"] = trial.mlflow_run_id
    return entry


def decide_sweep(sweep: Sweep, status: dict, generation: int,
                 trials: list[TrialView]) -> tuple[dict, list[Event]]:
    """Status of the parent from its trials (all created ones, including those created now)."""
    count = trial_count(sweep)
    metric, goal = sweep.objective.metric, sweep.objective.goal
    trials = sorted(trials, key=lambda t: t.index)
    finished = [t for t in trials if t.phase in DONE]
    succeeded = [t for t in finished if t.phase == "Succeeded"]
    best = best_trial(trials, metric, goal)
    fields: dict = {"trials": [trial_status(t, metric) for t in trials]}
    if best is not None:
        fields |= {"bestTrial": best.name, "bestObjective": objective_of(best, metric),
                   "metrics": dict(best.metrics or {})}
    starts = [t.start_time for t in trials if t.start_time]
    if starts:
        fields["startTime"] = min(starts)
    progress = f"{len(finished)}/{count} trials finished ({len(succeeded)} succeeded)"
    if len(finished) < count:
        phase = "Running" if trials else "Pending"
        condition = make_condition("Succeeded", "Unknown", "Sweeping", progress + ".", generation)
    elif best is not None:
        phase = "Succeeded"
        fields["completionTime"] = max(t.completion_time or "" for t in finished) or None
        condition = make_condition(
            "Succeeded", True, "BestTrialSelected",
            f"{progress}; best {best.name} with {metric}={objective_of(best, metric):g}.",
            generation)
    else:
        phase = "Failed"
        reason = "NoTrialSucceeded" if not succeeded else "ObjectiveNotLogged"
        detail = "" if not succeeded else f"; no trial logged {metric!r}"
        condition = make_condition("Succeeded", False, reason, progress + detail + ".", generation)
        fields["message"] = f"{reason}: {progress}{detail}"
    conditions = set_condition(status.get("conditions"), condition)
    fields |= {"phase": phase, "conditions": conditions}
    return ({k: v for k, v in fields.items() if v is not None},
            transitions(status.get("conditions"), conditions, ANNOUNCED["TrainingRun"]))
