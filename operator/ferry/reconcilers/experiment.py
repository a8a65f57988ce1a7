"""The decision of an A/B/n experiment (pure): what was observed so far → an outcome.

The first variant is the control; every other one (a treatment) is compared with it on the
metric, at ``alpha / treatments`` (Bonferroni: the chance of any false winner stays ``alpha``).
The checks run in this order, each ending the decision when it applies:

1. **Guardrails → Stopped.** A treatment with more than ``guardrails.failureLimit`` failed
   measurements stops the experiment and the control stays stable. First, because it protects
   users, and Prometheus' per-version numbers do not depend on the assignment being sound. The
   control's own measurements are recorded but never stop it: it is what would be served anyway.
2. **Sample-ratio mismatch → Invalid.** Chi-square of the assigned *users* (the randomised unit;
   requests per user vary far more than a binomial) against the weights, once every variant
   expects at least 5 (the usual validity rule of the test). Below ``srmAlpha`` the assignment is
   broken (a starved variant, a crashing pod, a cache before the router) and no metric can be
   trusted; the message names observed and expected counts.
3. **Too few samples → Running** until every variant has ``minSamplesPerVariant`` (and, for
   ``fixedHorizon``, the sample size that the effect, alpha and 80% power need).
4. **The test.** Each treatment is *better* or *worse* (p below its alpha, by the sign of the
   difference in the metric's direction), *equivalent* (its interval inside ±MDE) or *open*:
   any better → **Winner**, the better one with the best metric (proven better than the control,
   not than the other treatments); all worse → **Winner** is the control (keep it);
   all worse or equivalent → **NoDifference** (nothing beats the control by the MDE);
   otherwise Running — ``fixedHorizon`` looks once, at its horizon, so there it is **Inconclusive**.
5. **maxDuration → Inconclusive** when step 4 has not decided by then.

A terminal outcome is final: later calls return it unchanged, so new data cannot turn a decided
experiment around (the sequential test's guarantee is about the first crossing). The decision
names the ModelVersion to promote only for a treatment Winner with ``autoPromote``; otherwise
the winner waits for ``ferry promote`` and every other outcome keeps the control.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ferry.api.common import duration_seconds
from ferry.api.inferenceservice import Experiment, ExperimentStatus, Interval, VariantStatus
from ferry.experiments import stats
from ferry.experiments.stats import Comparison, Summary
from ferry.reconcilers.analysis import describe_failures, overall
from ferry.reconcilers.outcome import Event

RUNNING = "Running"
TERMINAL = ("Winner", "NoDifference", "Inconclusive", "Invalid", "Stopped")
SRM_MIN_EXPECTED = 5.0
NO_SAMPLES = Summary(0, math.nan, math.nan)


@dataclass(frozen=True)
class VariantObservation:
    """One variant as measured since the experiment started: counted requests and users (not
    overrides or keyless requests), metric samples, and a guardrail measurement taken now
    (AnalysisResult dicts; None: none was due)."""

    requests: int = 0
    users: int = 0
    metric: Summary = NO_SAMPLES
    guardrails: list[dict] | None = None


@dataclass(frozen=True)
class Observation:
    variants: dict[str, VariantObservation]
    previous: ExperimentStatus | None = None  # status.experiment so far


@dataclass
class ExperimentDecision:
    outcome: str
    winner: str | None
    reason: str
    message: str
    promote: str | None  # the ModelVersion to promote now (autoPromote and a treatment won)
    status: ExperimentStatus
    events: list[Event] = field(default_factory=list)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Decider:
    def __init__(self, spec: Experiment, observed: Observation, now: datetime,
                 started_at: datetime) -> None:
        self.spec, self.now = spec, now
        self.seen = {v.name: observed.variants.get(v.name, VariantObservation()) for v in spec.variants}
        self.control, *self.treatments = [v.name for v in spec.variants]
        self.alpha = spec.alpha / len(self.treatments)
        self.expired = now >= started_at + timedelta(seconds=duration_seconds(spec.max_duration))
        previous = observed.previous or ExperimentStatus()
        earlier = {v.name: v for v in previous.variants}
        self.status = previous.model_copy(update={"started_at": iso(started_at)})
        self.rows = {v.name: VariantStatus(
            name=v.name, model_version=v.model_version, requests=self.seen[v.name].requests,
            users=self.seen[v.name].users, samples=self.seen[v.name].metric.n,
            metric=_finite(self.seen[v.name].metric.mean),
            guardrail_failures=earlier[v.name].guardrail_failures if v.name in earlier else 0)
            for v in spec.variants}

    def decide(self) -> ExperimentDecision:
        return (self.guardrails() or self.sample_ratio() or self.test()
                or self.end(RUNNING, None, "Collecting", self.collecting()))

    def end(self, outcome: str, winner: str | None, reason: str, message: str) -> ExperimentDecision:
        status = self.status.model_copy(update={
            "outcome": outcome, "winner": winner, "reason": reason, "message": message,
            "ended_at": iso(self.now) if outcome in TERMINAL else None,
            "variants": list(self.rows.values())})
        events = []
        if outcome in TERMINAL:
            warning = outcome in ("Invalid", "Stopped")
            events.append(Event("Warning" if warning else "Normal", f"Experiment{outcome}", message[:1024]))
        return ExperimentDecision(outcome, winner, reason, message, promotion(self.spec, outcome, winner),
                                  status, events)

    # --- 1. guardrails -------------------------------------------------------------------------

    def guardrails(self) -> ExperimentDecision | None:
        breached = []
        for name, row in self.rows.items():
            results = self.seen[name].guardrails
            if results is None or overall(results) != "Failed":
                continue
            row.guardrail_failures += 1
            if name != self.control and row.guardrail_failures > self.spec.guardrails.failure_limit:
                breached.append(f"{name}: {describe_failures(results)}")
        if not breached:
            return None
        return self.end("Stopped", None, "GuardrailBreached",
                        f"guardrail breached, {self.control} kept: {'; '.join(breached)}")

    # --- 2. sample-ratio mismatch --------------------------------------------------------------

    def sample_ratio(self) -> ExperimentDecision | None:
        users = [self.seen[v.name].users for v in self.spec.variants]
        check = stats.sample_ratio_mismatch(users, [v.weight for v in self.spec.variants])
        if min(check.expected) < SRM_MIN_EXPECTED:
            return None
        self.status.srm_p_value = check.p_value
        if check.p_value >= self.spec.srm_alpha:
            return None
        counts = ", ".join(f"{v.name} {n} (expected {e:.0f})"
                           for v, n, e in zip(self.spec.variants, users, check.expected, strict=True))
        return self.end("Invalid", None, "SampleRatioMismatch",
                        f"sample ratio mismatch: users {counts}; chi-square p = {check.p_value:.3g} "
                        f"< srmAlpha {self.spec.srm_alpha:g}: the assignment is broken, no result "
                        "can be trusted")

    # --- 3./4. the test ------------------------------------------------------------------------

    def needed(self) -> int:
        """Samples every variant needs before the test looks."""
        needed = self.spec.min_samples_per_variant
        if self.spec.test == "fixedHorizon" and self._enough(needed):
            control = self.seen[self.control].metric
            needed = max(needed, *(stats.required_samples(
                control.variance, self.seen[t].metric.variance, self.spec.minimum_detectable_effect,
                self.alpha) for t in self.treatments))
            self.status.required_samples = needed
        return needed

    def _enough(self, needed: int) -> bool:
        return all(self.seen[name].metric.n >= needed for name in self.rows)

    def collecting(self) -> str:
        samples = ", ".join(f"{name} {row.samples}" for name, row in self.rows.items())
        return f"collecting: {samples} of {self.needed()} samples per variant"

    def test(self) -> ExperimentDecision | None:
        if not self._enough(self.needed()):
            if self.expired:
                return self.end("Inconclusive", None, "MaxDuration",
                                f"maxDuration {self.spec.max_duration} reached while {self.collecting()}")
            return None
        verdicts = {name: self.compare(name) for name in self.treatments}
        better = [name for name, verdict in verdicts.items() if verdict == "better"]
        mde = f"{self.spec.minimum_detectable_effect:g}"
        if better:
            winner = max(better, key=self.improvement)
            return self.end("Winner", winner, "TreatmentBetter",
                            f"{winner} beats {self.control}: {self.describe(winner)}")
        if all(verdict == "worse" for verdict in verdicts.values()):
            return self.end("Winner", self.control, "ControlBetter",
                            f"{self.control} beats every treatment: {self.describe_all()}")
        if all(verdict in ("worse", "equivalent") for verdict in verdicts.values()):
            return self.end("NoDifference", None, "NoEffect",
                            f"no treatment beats {self.control} by the minimum detectable effect "
                            f"{mde}: {self.describe_all()}")
        if self.spec.test == "fixedHorizon":
            return self.end("Inconclusive", None, "HorizonReached",
                            f"horizon of {self.status.required_samples} samples reached with neither a "
                            f"significant difference nor one within +-{mde}: {self.describe_all()}")
        if self.expired:
            return self.end("Inconclusive", None, "MaxDuration",
                            f"maxDuration {self.spec.max_duration} reached undecided: {self.describe_all()}")
        return None

    def compare(self, name: str) -> str:
        control, treatment = self.seen[self.control].metric, self.seen[name].metric
        if self.spec.test == "sequential":
            found = stats.msprt(control, treatment, self.spec.minimum_detectable_effect, self.alpha)
        else:
            found = stats.welch_z(control, treatment, self.alpha)
        self.record(name, found)
        mde = self.spec.minimum_detectable_effect
        if found.p_value < self.alpha:
            return "better" if self.improvement(name) > 0 else "worse"
        return "equivalent" if -mde < found.lower and found.upper < mde else "open"

    def record(self, name: str, found: Comparison) -> None:
        row = self.rows[name]
        row.difference = found.difference
        row.confidence_interval = Interval(lower=found.lower, upper=found.upper)
        row.p_value = found.p_value

    def improvement(self, name: str) -> float:
        difference = self.rows[name].difference
        return difference if self.spec.metric.higher_is_better else -difference

    def describe(self, name: str) -> str:
        row = self.rows[name]
        interval = row.confidence_interval
        return (f"{name} {row.metric:.4g} vs {self.rows[self.control].metric:.4g}, difference "
                f"{row.difference:+.4g} [{interval.lower:+.4g}, {interval.upper:+.4g}], "
                f"p = {row.p_value:.3g} (alpha {self.alpha:.3g})")

    def describe_all(self) -> str:
        return "; ".join(self.describe(name) for name in self.treatments)


def promotion(spec: Experiment, outcome: str | None, winner: str | None) -> str | None:
    """The ModelVersion to promote without waiting: a winning treatment's, with autoPromote."""
    if outcome != "Winner" or not spec.auto_promote or winner == spec.variants[0].name:
        return None
    return next((v.model_version for v in spec.variants if v.name == winner), None)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def decide(spec: Experiment, observed: Observation, now: datetime,
           started_at: datetime) -> ExperimentDecision:
    """The experiment's outcome now; a terminal one recorded in ``observed.previous`` stays."""
    previous = observed.previous
    if previous is not None and previous.outcome in TERMINAL:
        return ExperimentDecision(previous.outcome, previous.winner, previous.reason or "",
                                  previous.message or "",
                                  promotion(spec, previous.outcome, previous.winner), previous)
    return _Decider(spec, observed, now, started_at).decide()


NOT_SERVED = ("spec.strategy.experiment: this operator version validates experiments and decides "
              "them (ferry.reconcilers.experiment) but does not route their traffic yet; remove "
              "the experiment or use canary, blueGreen or shadow.")


def not_served(spec) -> str | None:
    """Why the operator refuses the spec: experiments are not routed yet (see NOT_SERVED)."""
    return NOT_SERVED if spec.strategy.experiment is not None else None
