"""The rollout state machine of an InferenceService (pure).

Input: the validated spec, the previous ``status.rollout`` (everything needed to continue), the
resolved target ModelVersion and what was observed (ready replicas per served version, an analysis
measurement when one was due). Output: the next ``status.rollout``, a ``Plan`` of what should run
and receive traffic, the phase with its reason, and Events. One reconcile makes at most one
transition, so a killed operator resumes exactly where the status says.

Design decisions (where the issue is silent):

- Every served version has its own Deployment; which one is *stable*, *canary*, *preview*,
  *previous* lives in status and in Service selectors, never in pod labels, so promotion never
  restarts a pod.
- Replica-ratio canary: the client Service ``<name>`` selects all serving pods of the service;
  the canary gets ``ceil(total × weight / 100)`` replicas and the stable the rest (at least one
  until 100 %). With a gateway, the HTTPRoute carries the weights and the stable keeps all its
  replicas. Outside a replica-ratio canary the Service selects exactly one version.
- A step completes only when the candidate is ready at that step's size and, with analysis,
  after a passing measurement taken at that step. More than ``failureLimit`` failed
  measurements roll back; Inconclusive holds (phase Paused) until a measurement is conclusive.
- A rolled-back candidate is not tried again while the spec still resolves to it; pointing the
  spec at the stable version clears it. Pointing the spec at a version still kept warm (previous
  colour, post-promotion window) switches back at once, without steps.
- Without a strategy a new version replaces the stable one as soon as it is fully ready.
- The client Service moves to another version only once that version has a ready pod (a
  rollback to a version kept warm but still starting waits for it), and the version it leaves
  keeps its ready pods for ``SWITCH_SECONDS`` after the move, like Argo Rollouts' scale-down
  delays: the EndpointSlice controller sees the Service and the pods through separate watches, so
  for a moment after a move the endpoints can still follow the old selector, and if the old
  version's pods were already terminating that moment has no ready endpoint and connections are
  refused. ``status.rollout.active``, ``left`` and ``switchedAt`` carry this across restarts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ferry.api.common import duration_seconds
from ferry.api.inferenceservice import (
    Analysis, InferenceServiceSpec, RolledBack, RolloutState, ServedModel)
from ferry.reconcilers.analysis import describe_failures, overall
from ferry.reconcilers.outcome import Event

POLL = 2.0  # requeue while a rollout moves
SWITCH_SECONDS = 10.0  # a version traffic switched away from keeps its pods this long

CANARY, BLUE_GREEN, SHADOW, REPLACE = "Canary", "BlueGreen", "Shadow", "Replace"


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def strategy_name(spec: InferenceServiceSpec) -> str:
    strategy = spec.strategy
    if strategy.canary:
        return CANARY
    if strategy.blue_green:
        return BLUE_GREEN
    if strategy.shadow:
        return SHADOW
    return REPLACE


def analysis_config(spec: InferenceServiceSpec) -> Analysis | None:
    strategy = spec.strategy.canary or spec.strategy.blue_green or spec.strategy.shadow
    return strategy.analysis if strategy else None


def split(total: int, weight: int) -> tuple[int, int]:
    """(stable, canary) replicas for a replica-ratio weight; the stable keeps one below 100 %."""
    canary = math.ceil(total * weight / 100) if weight > 0 else 0
    stable = total - canary
    if weight < 100 and total > 0 and stable < 1:
        stable = 1
    return stable, canary


def gateway_canary_replicas(total: int, weight: int) -> int:
    return max(1, math.ceil(total * weight / 100)) if weight > 0 else 0


def shadow_replicas(total: int, percent: int) -> int:
    return max(1, math.ceil(total * percent / 100))


@dataclass(frozen=True)
class Due:
    """A measurement to take now: ``target`` compared with ``baseline``."""

    analysis: Analysis
    target: ServedModel
    baseline: ServedModel | None


def measurement_due(spec: InferenceServiceSpec, rollout: dict | None,
                    now: datetime) -> Due | None:
    state = RolloutState.model_validate(rollout or {})
    analysis = analysis_config(spec)
    if analysis is None:
        return None
    if state.candidate is not None:
        if state.promoting or spec.rollout.paused or state.step_ready_at is None:
            return None
        since, target, baseline = state.step_ready_at, state.candidate, state.stable
    elif state.post_promotion_until and state.previous and state.promoted_at \
            and now < parse(state.post_promotion_until):
        since, target, baseline = state.promoted_at, state.stable, state.previous
    else:
        return None
    if state.last_analysis_at and parse(state.last_analysis_at) > parse(since):
        since = state.last_analysis_at
    if now < parse(since) + timedelta(seconds=duration_seconds(analysis.interval)):
        return None
    return Due(analysis, target, baseline)


@dataclass
class Observed:
    now: datetime
    desired: ServedModel | None                # what spec.model resolves to
    blocked: tuple[str, str] | None = None     # (reason, message): the target may not roll out
    ready: dict[str, int] = field(default_factory=dict)  # ModelVersion -> ready replicas
    total: int = 1                              # serving replicas wanted
    measurement: list[dict] | None = None       # results of a due measurement
    previous_phase: str | None = None


@dataclass
class Plan:
    """What should run and who gets traffic; the builders turn it into manifests."""

    models: dict[str, ServedModel] = field(default_factory=dict)
    replicas: dict[str, int] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)
    stable: str | None = None
    active: str | None = None       # version behind <name>; None: every serving pod (ratio)
    canary: str | None = None       # version behind <name>-canary
    preview: str | None = None      # version behind <name>-preview
    weights: tuple[int, int] | None = None  # HTTPRoute (stable, canary)
    mirror: tuple[str, int] | None = None   # (version, percent) that receives mirrored requests

    def add(self, model: ServedModel, replicas: int, role: str) -> None:
        if model.model_version not in self.models:
            self.models[model.model_version] = model
            self.replicas[model.model_version] = replicas
            self.roles[model.model_version] = role


@dataclass
class Decision:
    rollout: dict
    plan: Plan
    phase: str
    reason: str
    message: str
    events: list[Event]
    analysis: list[dict] | None  # new measurement results to show, None: keep the last ones
    requeue: float | None


class Machine:
    def __init__(self, spec: InferenceServiceSpec, rollout: dict | None, seen: Observed) -> None:
        self.spec = spec
        self.state = RolloutState.model_validate(rollout or {})
        self.seen = seen
        self.now = seen.now
        self.events: list[Event] = []
        self.analysis: list[dict] | None = None
        self.phase, self.reason, self.message = "Progressing", "", ""
        self.requeue: float | None = None

    # --- helpers ------------------------------------------------------------------------------

    def status(self, phase: str, reason: str, message: str, requeue: float | None = POLL) -> None:
        self.phase, self.reason, self.message, self.requeue = phase, reason, message, requeue

    def event(self, reason: str, message: str, warning: bool = False) -> None:
        self.events.append(Event("Warning" if warning else "Normal", reason, message[:1024]))

    def ready(self, model: ServedModel | None) -> int:
        return self.seen.ready.get(model.model_version, 0) if model else 0

    def passed_since(self, stamp: str | None) -> bool:
        state = self.state
        return bool(stamp and state.last_verdict == "Passed" and state.last_analysis_at
                    and parse(state.last_analysis_at) > parse(stamp))

    def clear_candidate(self) -> None:
        state = self.state
        state.candidate = None
        state.step = state.step_started_at = state.step_ready_at = state.weight = None
        state.promoting = False
        state.analysis_failures = 0
        state.last_verdict = None

    @property
    def gateway(self) -> bool:
        return self.spec.traffic.gateway_ref is not None

    # --- the machine --------------------------------------------------------------------------

    def run(self) -> None:
        state, seen = self.state, self.seen
        state.strategy = strategy_name(self.spec)
        self.expire_previous()
        desired = seen.desired
        if state.stable is None:
            if desired is None or seen.blocked:
                reason, message = seen.blocked or ("NoModel", "spec.model resolves to nothing")
                return self.status("Degraded", reason, f"Nothing to serve yet: {message}", None)
            state.stable = desired
            self.event("Deploying", f"Serving {desired.model_version} (MLflow version "
                                    f"{desired.mlflow_version}) as the first stable version")
            return self.settle()
        if desired is None:
            reason, message = seen.blocked or ("NoModel", "spec.model resolves to nothing")
            if state.candidate is not None:
                return self.status("Paused", reason, f"Rollout held: {message}")
            return self.settle(blocked=(reason, message))
        name = desired.model_version
        if name == state.stable.model_version:
            if state.candidate is not None:
                self.event("RolloutCancelled", f"spec.model points at the stable version {name} "
                                               f"again; {state.candidate.model_version} removed")
                self.clear_candidate()
            state.rolled_back = None
            return self.settle()
        if state.previous is not None and name == state.previous.model_version \
                and self.ready(state.previous) > 0:
            return self.switch_back()
        if state.rolled_back is not None and state.rolled_back.model_version == name:
            if state.candidate is not None:
                self.clear_candidate()
            return self.status("RolledBack", state.rolled_back.reason,
                               f"{name} was rolled back: {state.rolled_back.message}", None)
        if seen.blocked:
            reason, message = seen.blocked
            return self.status("Paused", reason, f"Rollout of {name} blocked: {message}",
                               None if state.candidate is None else POLL)
        if state.candidate is None or state.candidate.model_version != name:
            self.start(desired)
        self.progress()

    def expire_previous(self) -> None:
        state = self.state
        if state.previous is None:
            return
        deadline = state.post_promotion_until or state.scale_down_at
        if deadline is None or self.now >= parse(deadline):
            if state.post_promotion_until:
                self.event("PostPromotionPassed", f"{state.stable.model_version} passed the "
                                                  "post-promotion window; previous version "
                                                  f"{state.previous.model_version} removed")
            state.previous = None
            state.post_promotion_until = state.scale_down_at = None

    def start(self, desired: ServedModel) -> None:
        state = self.state
        if state.candidate is not None:
            self.event("RolloutReplaced", f"{state.candidate.model_version} replaced by "
                                          f"{desired.model_version} before it finished")
        self.clear_candidate()
        state.previous = None  # a new rollout ends any watch window of the last one
        state.post_promotion_until = state.scale_down_at = None
        state.rolled_back = None
        state.candidate = desired
        state.step, state.step_started_at, state.weight = 0, iso(self.now), 0
        state.last_analysis_at = None
        self.analysis = []
        self.event("RolloutStarted", f"{state.strategy} rollout of {desired.model_version} "
                                     f"(MLflow version {desired.mlflow_version}) started; stable "
                                     f"is {state.stable.model_version}")

    def progress(self) -> None:
        state, control = self.state, self.spec.rollout
        candidate = state.candidate
        if control.abort == candidate.model_version:
            return self.rollback("Aborted", "aborted by spec.rollout.abort")
        if control.promote == candidate.model_version and not state.promoting:
            state.promoting = True
            self.event("PromotionRequested", f"{candidate.model_version}: promoted by "
                                             "spec.rollout.promote; remaining steps skipped")
        measured = self.seen.measurement is not None and not state.promoting
        if measured and self.record_measurement():
            return self.rollback("AnalysisFailed", describe_failures(self.analysis))
        if state.promoting:
            return self.promote()
        if control.paused:
            return self.status("Paused", "ManualPause", "Paused by spec.rollout.paused")
        strategy = state.strategy
        if strategy == CANARY:
            return self.canary_step()
        if strategy == BLUE_GREEN:
            return self.blue_green_step()
        if strategy == SHADOW:
            return self.shadow_step()
        state.promoting = True
        return self.promote()

    def record_measurement(self) -> bool:
        """Record a measurement; True when the failure limit is exceeded."""
        state = self.state
        results = self.seen.measurement
        self.analysis = results
        verdict = overall(results)
        inconclusive_before = state.last_verdict == "Inconclusive"
        state.last_analysis_at, state.last_verdict = iso(self.now), verdict
        if verdict == "Failed":
            state.analysis_failures += 1
            limit = analysis_config(self.spec).failure_limit
            self.event("AnalysisFailed", f"measurement {state.analysis_failures} "
                                         f"(limit {limit}) failed: {describe_failures(results)}",
                       warning=True)
            return state.analysis_failures > limit
        if verdict == "Inconclusive" and not inconclusive_before:
            self.event("AnalysisInconclusive", f"rollout held: {describe_failures(results)}",
                       warning=True)
        if verdict == "Passed" and inconclusive_before:
            self.event("AnalysisResumed", "measurements are conclusive again")
        return False

    def analysing(self, since: str, what: str) -> None:
        state = self.state
        if state.last_verdict == "Inconclusive" and state.last_analysis_at \
                and parse(state.last_analysis_at) > parse(since):
            return self.status("Paused", "AnalysisInconclusive",
                               f"{what}: analysis inconclusive, holding")
        self.status("Progressing", "Analysing", f"{what}: waiting for a passing measurement")

    def canary_step(self) -> None:
        state, seen = self.state, self.seen
        steps = self.spec.strategy.canary.steps
        if state.step >= len(steps):
            state.promoting = True
            return self.promote()
        step = steps[state.step]
        label = f"step {state.step + 1}/{len(steps)}"
        if step.set_weight is not None:
            state.weight = step.set_weight
        want = (gateway_canary_replicas(seen.total, state.weight) if self.gateway
                else split(seen.total, state.weight)[1])
        if self.ready(state.candidate) < want:
            return self.status("Progressing", "WaitingForCanary",
                               f"{label}: {self.ready(state.candidate)}/{want} canary replicas ready")
        if state.step_ready_at is None:
            state.step_ready_at = iso(self.now)
        if step.pause is not None and step.pause.duration is None:
            return self.status("Paused", "AwaitingPromotion",
                               f"{label}: paused until promoted (ferry promote)")
        if step.pause is not None and self.now < parse(state.step_started_at) + timedelta(
                seconds=duration_seconds(step.pause.duration)):
            return self.status("Progressing", "Pausing", f"{label}: pause {step.pause.duration}")
        if analysis_config(self.spec) and not self.passed_since(state.step_ready_at):
            return self.analysing(state.step_ready_at, label)
        what = f"setWeight {step.set_weight}" if step.set_weight is not None else "pause"
        self.event("StepCompleted", f"{state.candidate.model_version}: {label} ({what}) done")
        state.step += 1
        state.step_started_at, state.step_ready_at = iso(self.now), None
        self.status("Progressing", "StepCompleted", f"{label} done")

    def blue_green_step(self) -> None:
        state, seen = self.state, self.seen
        blue_green = self.spec.strategy.blue_green
        want = blue_green.preview_replicas or seen.total
        if self.ready(state.candidate) < want:
            return self.status("Progressing", "WaitingForPreview",
                               f"{self.ready(state.candidate)}/{want} preview replicas ready")
        if state.step_ready_at is None:
            state.step_ready_at = iso(self.now)
        if blue_green.analysis and not self.passed_since(state.step_ready_at):
            return self.analysing(state.step_ready_at, "preview")
        if blue_green.auto_promote:
            state.promoting = True
            return self.promote()
        self.status("Paused", "AwaitingPromotion",
                    f"preview {state.candidate.model_version} is ready; promote to switch")

    def shadow_step(self) -> None:
        state, seen = self.state, self.seen
        shadow = self.spec.strategy.shadow
        want = shadow_replicas(seen.total, shadow.mirror_percent)
        if self.ready(state.candidate) < want:
            return self.status("Progressing", "WaitingForShadow",
                               f"{self.ready(state.candidate)}/{want} shadow replicas ready")
        if state.step_ready_at is None:
            state.step_ready_at = iso(self.now)
        if self.now < parse(state.step_ready_at) + timedelta(
                seconds=duration_seconds(shadow.duration)):
            return self.status("Progressing", "Shadowing",
                               f"mirroring {shadow.mirror_percent}% of requests for "
                               f"{shadow.duration}")
        if shadow.analysis and not self.passed_since(state.step_ready_at):
            return self.analysing(state.step_ready_at, "shadow")
        if shadow.auto_promote:
            state.promoting = True
            return self.promote()
        self.status("Paused", "AwaitingPromotion",
                    f"shadow {state.candidate.model_version} passed; promote to serve it")

    def promote(self) -> None:
        """Scale the candidate to full size, then make it the stable version in one update."""
        state, seen = self.state, self.seen
        candidate = state.candidate
        if self.ready(candidate) < seen.total:
            return self.status("Progressing", "Promoting",
                               f"promoting {candidate.model_version}: "
                               f"{self.ready(candidate)}/{seen.total} replicas ready")
        old = state.stable
        strategy = state.strategy
        self.clear_candidate()
        state.stable, state.promoted_at = candidate, iso(self.now)
        state.previous = None
        canary = self.spec.strategy.canary
        if strategy == CANARY and canary.post_promotion:
            state.previous = old
            state.post_promotion_until = iso(self.now + timedelta(
                seconds=duration_seconds(canary.post_promotion)))
        elif strategy == BLUE_GREEN and self.spec.strategy.blue_green.scale_down_delay_seconds:
            state.previous = old
            state.scale_down_at = iso(self.now + timedelta(
                seconds=self.spec.strategy.blue_green.scale_down_delay_seconds))
        self.event("Promoted", f"{candidate.model_version} (MLflow version "
                               f"{candidate.mlflow_version}) is now stable; was "
                               f"{old.model_version}")
        self.settle()

    def rollback(self, reason: str, message: str) -> None:
        state = self.state
        candidate = state.candidate
        state.rolled_back = RolledBack(model_version=candidate.model_version, model=candidate,
                                       reason=reason, message=message, at=iso(self.now))
        self.clear_candidate()
        self.event("RolledBack", f"{candidate.model_version} rolled back ({reason}): {message}; "
                                 f"{state.stable.model_version} keeps serving", warning=True)
        self.status("RolledBack", reason, f"{candidate.model_version} rolled back: {message}",
                    None)

    def switch_back(self) -> None:
        """The spec points at the version kept warm: switch the traffic back at once."""
        state = self.state
        left, restored = state.stable, state.previous
        state.stable, state.previous = restored, left
        state.post_promotion_until = None
        delay = (self.spec.strategy.blue_green.scale_down_delay_seconds
                 if self.spec.strategy.blue_green else 0)
        state.scale_down_at = iso(self.now + timedelta(seconds=delay))
        state.rolled_back = None
        self.event("SwitchedBack", f"traffic switched back to {restored.model_version} "
                                   f"(kept warm); {left.model_version} leaves")
        self.settle()

    def settle(self, blocked: tuple[str, str] | None = None) -> None:
        """No candidate: watch the post-promotion window and report the stable's health."""
        state, seen = self.state, self.seen
        watched = state.post_promotion_until and seen.measurement is not None
        if watched and self.record_measurement():
            bad, good = state.stable, state.previous
            state.stable, state.previous = good, None
            state.post_promotion_until = None
            message = describe_failures(self.analysis)
            state.rolled_back = RolledBack(model_version=bad.model_version, model=bad,
                                           reason="PostPromotionAnalysisFailed",
                                           message=message, at=iso(self.now))
            self.event("RolledBack", f"{bad.model_version} failed after promotion: "
                                     f"{message}; back to {good.model_version}", warning=True)
            return self.status("RolledBack", "PostPromotionAnalysisFailed",
                               f"{bad.model_version} rolled back: {message}", None)
        watching = state.post_promotion_until or state.scale_down_at
        if self.ready(state.stable) == 0:
            phase = "Degraded" if seen.previous_phase in ("Healthy", "Degraded") else "Progressing"
            return self.status(phase, "StableNotReady",
                               f"no ready replica of {state.stable.model_version} yet")
        if blocked:
            return self.status("Paused", blocked[0], f"{blocked[1]}; "
                               f"{state.stable.model_version} keeps serving", POLL if watching
                               else None)
        message = f"{state.stable.model_version} serves {self.ready(state.stable)} replica(s)"
        if state.post_promotion_until:
            message += f"; watching until {state.post_promotion_until}"
        self.status("Healthy", "Serving", message, POLL if watching else None)

    # --- plan ---------------------------------------------------------------------------------

    def plan(self) -> Plan:
        state, total = self.state, self.seen.total
        plan = Plan(stable=state.stable.model_version if state.stable else None)
        if state.stable is None:
            return plan
        candidate = state.candidate
        stable_replicas = total
        plan.active = state.stable.model_version
        if candidate is not None:
            name = candidate.model_version
            if state.strategy == CANARY:
                weight = state.weight or 0
                if self.gateway:
                    replicas = total if state.promoting else gateway_canary_replicas(total, weight)
                    plan.weights = (100 - weight, weight)
                else:
                    stable_replicas, replicas = split(total, weight)
                    if state.promoting:
                        replicas = total
                    if replicas > 0:
                        plan.active = None
                plan.canary = name
                plan.add(candidate, replicas, "canary")
            elif state.strategy == BLUE_GREEN:
                preview = self.spec.strategy.blue_green.preview_replicas or total
                plan.preview = name
                plan.add(candidate, total if state.promoting else preview, "preview")
            elif state.strategy == SHADOW:
                percent = self.spec.strategy.shadow.mirror_percent
                plan.canary = name
                plan.mirror = (name, percent)
                plan.add(candidate, total if state.promoting else shadow_replicas(total, percent),
                         "shadow")
            else:
                plan.add(candidate, total, "canary")
        elif self.gateway:
            plan.weights = (100, 0)
        plan.add(state.stable, stable_replicas, "stable")
        if state.previous is not None:
            plan.add(state.previous, total, "previous")
        if state.rolled_back is not None and state.rolled_back.model is not None:
            plan.add(state.rolled_back.model, 0, "rolledBack")
        return plan

    # --- switching the client Service ---------------------------------------------------------

    def ready_behind(self, plan: Plan, active: str | None) -> int:
        """Ready pods behind the client Service when it selects ``active`` (None: all)."""
        if active is None:
            return sum(self.seen.ready.get(version, 0) for version in plan.models)
        return self.seen.ready.get(active, 0)

    def keep_ready(self, plan: Plan, model: ServedModel, role: str) -> None:
        """At least the pods ``model`` has ready now stay in the plan."""
        version = model.model_version
        plan.models.setdefault(version, model)
        plan.roles.setdefault(version, role)
        plan.replicas[version] = max(plan.replicas.get(version, 0), self.ready(model))

    def switch(self, plan: Plan) -> float | None:
        """Move the client Service as the plan asks, safely; the seconds until the next look.

        The Service never moves to a version with no ready pod while the one it selects has some
        (a rollback to a version that is still starting waits for it, and that one keeps its
        pods meanwhile). The version it leaves keeps its ready pods for SWITCH_SECONDS after the
        move (see the module's note)."""
        state, now = self.state, self.now
        current = state.active.model_version if state.active else None
        wait = None
        if plan.active != current and state.stable is not None:
            if self.ready_behind(plan, plan.active) == 0 and self.ready_behind(plan, current) > 0:
                plan.active = current
                self.keep_ready(plan, state.active, "held")
                wait = POLL
            else:
                # Only a move between two single versions leaves pods behind: "every serving pod"
                # (None) includes the version on either side of it.
                disjoint = current is not None and plan.active is not None
                state.left = state.active if disjoint else None
                state.switched_at = iso(now) if state.left else None
                state.active = plan.models.get(plan.active) if plan.active else None
        if state.left is not None:
            until = parse(state.switched_at) + timedelta(seconds=SWITCH_SECONDS)
            if now >= until or state.left == state.active:
                state.left = state.switched_at = None
            else:
                self.keep_ready(plan, state.left, "leaving")
                wait = min(wait or math.inf, (until - now).total_seconds() + 0.5)
        return wait

    def decision(self) -> Decision:
        plan = self.plan()
        wait = self.switch(plan)
        requeue = self.requeue if wait is None else min(self.requeue or math.inf, wait)
        dumped = self.state.model_dump(by_alias=True, exclude_none=True)
        return Decision(dumped, plan, self.phase, self.reason, self.message, self.events,
                        self.analysis, requeue)


def decide(spec: InferenceServiceSpec, rollout: dict | None, seen: Observed) -> Decision:
    machine = Machine(spec, rollout, seen)
    machine.run()
    return machine.decision()
