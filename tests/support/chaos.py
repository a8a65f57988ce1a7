"""Chaos trials: the operator is killed with SIGKILL at random moments of a flow and comes back,
as a Deployment restarts a crashed pod, while the test waits for the flow's end state.

The moments are random but reproducible: each trial draws its kill delays from a generator seeded
with the trial's name (``FERRY_CHAOS_SEED`` changes the draw). What the flow showed at each kill
is recorded, so a report can say which moments were hit.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from support.cluster import OperatorProcess

# A dead leader's Lease expires quickly, so each restart takes over within seconds.
FAST_LEASE = {"FERRY_LEASE_DURATION_SECONDS": "4", "FERRY_RENEW_DEADLINE_SECONDS": "3",
              "FERRY_RETRY_PERIOD_SECONDS": "1"}
# Trials per scenario: CI runs one, `make chaos` more.
TRIALS = int(os.environ.get("FERRY_CHAOS_TRIALS", "1"))


@dataclass(frozen=True)
class Kill:
    after_seconds: float  # since the trial started
    moment: str  # what the flow showed when the operator died


@dataclass
class Trial:
    """One trial's record for the report: its kills and whether it reached the right end."""

    scenario: str
    index: int
    kills: list[Kill] = field(default_factory=list)
    passed: bool = False
    load: float | None = None  # req/s the Service answered during a rollout trial


# The trials of this session, for the summary the test run prints.
RECORDS: list[Trial] = []


def report(trials: list[Trial]) -> list[str]:
    """Lines of the chaos table: per scenario, trials passed/total, kills, load, moments hit."""
    lines = ["CHAOS scenario | passed/total | kills | load req/s | moments the kills hit"]
    for scenario in dict.fromkeys(t.scenario for t in trials):
        ours = [t for t in trials if t.scenario == scenario]
        kills = [k for t in ours for k in t.kills]
        loads = [t.load for t in ours if t.load]
        load = f"{min(loads):.0f}-{max(loads):.0f}" if loads else "-"
        moments = sorted({k.moment for k in kills})
        lines.append(f"CHAOS {scenario} | {sum(t.passed for t in ours)}/{len(ours)} | "
                     f"{len(kills)} | {load} | {'; '.join(moments)}")
    passed = sum(t.passed for t in trials)
    lines.append(f"CHAOS total | {passed}/{len(trials)} | {sum(len(t.kills) for t in trials)} |")
    return lines


class Killer:
    """Kills the operator ``kills`` times, each after a random delay drawn from ``delays`` seconds
    (counted from the previous start), and restarts it each time; ``moment`` says what the flow
    shows. The operator then runs undisturbed until the trial ends."""

    def __init__(self, operator: OperatorProcess, trial: Trial, moment: Callable[[], str],
                 kills: int = 3, delays: tuple[float, float] = (1.0, 10.0)):
        self.operator = operator
        self.trial = trial
        self.moment = moment
        self.kills = kills
        self.delays = delays
        seed = f"{os.environ.get('FERRY_CHAOS_SEED', '0')}:{trial.scenario}:{trial.index}"
        self.random = random.Random(seed)
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"chaos-{trial.scenario}",
                                       daemon=True)
        self.started = time.monotonic()

    def __enter__(self) -> Killer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.thread.join(90)
        self.operator.stop(signal.SIGKILL)
        if self.error is not None and exc[0] is None:
            raise AssertionError(f"the chaos thread failed: {self.error!r}") from self.error

    def _run(self) -> None:
        try:
            for _ in range(self.kills):
                if self.stopping.wait(self.random.uniform(*self.delays)):
                    return
                moment = self._describe()
                self.operator.stop(signal.SIGKILL)
                self.trial.kills.append(Kill(round(time.monotonic() - self.started, 1), moment))
                self.operator = self.operator.restart()
        except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread
            self.error = error

    def _describe(self) -> str:
        try:
            return self.moment()
        except Exception as error:  # noqa: BLE001 - the moment is for the report only
            return f"unknown ({error.__class__.__name__})"


def orphans(cluster, namespace: str) -> list[str]:
    """Objects Ferry labels in ``namespace`` whose owner is gone (or that have none)."""
    kinds = ("jobs,cronjobs,deployments,replicasets,services,configmaps,poddisruptionbudgets,"
             "trainingruns.ferry.dev")
    items = json.loads(cluster.kubectl("get", kinds, "-n", namespace, "-o", "json").stdout)["items"]
    alive = {item["metadata"]["uid"] for item in items}
    for kind in ("featurepipelines", "modelversions", "inferenceservices"):
        alive |= {item["metadata"]["uid"] for item in json.loads(cluster.kubectl(
            "get", f"{kind}.ferry.dev", "-n", namespace, "-o", "json").stdout)["items"]}
    found = []
    for item in items:
        metadata = item["metadata"]
        if not any(key.startswith("ferry.dev/") for key in metadata.get("labels", {})):
            continue
        owners = {owner["uid"] for owner in metadata.get("ownerReferences", [])}
        if not owners & alive:
            found.append(f"{item['kind']}/{metadata['name']}")
    return found
