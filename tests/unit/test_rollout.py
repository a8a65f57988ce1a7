"""The rollout state machine, transition by transition (pure, no cluster)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ferry.api import parse_spec
from ferry.api.inferenceservice import ServedModel
from ferry.reconcilers.rollout import SWITCH_SECONDS, Observed, decide, measurement_due, split

T0 = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


def served(name: str, version: str) -> ServedModel:
    return ServedModel(model_version=name, mlflow_version=version, model_name="fraud",
                       uri=f"models:/fraud/{version}")


V1, V2, V3 = served("fraud-1", "1"), served("fraud-2", "2"), served("fraud-3", "3")


def spec(**fields):
    return parse_spec("InferenceService", {"model": {"modelName": "fraud",
                                                     "policy": "latestApproved"}, **fields})


CANARY = {"canary": {"steps": [{"setWeight": 25}, {"pause": {"duration": "10s"}},
                               {"setWeight": 50}],
                     "analysis": {"interval": "5s", "failureLimit": 1}}}


def passed(name="errorRate", value=0.0):
    return [{"name": name, "verdict": "Passed", "value": value, "threshold": 0.01, "op": "<="}]


def failed(name="errorRate", value=0.5):
    return [{"name": name, "verdict": "Failed", "value": value, "threshold": 0.01, "op": "<="}]


INCONCLUSIVE = [{"name": "errorRate", "verdict": "Inconclusive", "threshold": 0.01, "op": "<=",
                 "message": "no data"}]


class Driver:
    """Feeds the machine its own status back, like the controller does."""

    def __init__(self, spec_, desired=V1, now=T0):
        self.spec, self.desired, self.now = spec_, desired, now
        self.total = spec_.replicas
        self.rollout: dict = {}
        self.ready: dict[str, int] = {}
        self.blocked = None
        self.phase = None
        self.events: list = []

    def tick(self, seconds: float = 1.0, measurement=None, auto_ready=True):
        self.now += timedelta(seconds=seconds)
        decision = decide(self.spec, self.rollout, Observed(
            now=self.now, desired=self.desired, blocked=self.blocked, ready=dict(self.ready),
            total=self.total, measurement=measurement, previous_phase=self.phase))
        self.rollout, self.phase, self.last = decision.rollout, decision.phase, decision
        self.events += decision.events
        if auto_ready:  # Deployments become ready at the planned size before the next tick
            self.ready = dict(decision.plan.replicas)
        return decision

    def reasons(self):
        return [e.reason for e in self.events]


def healthy_on(driver: Driver, model: ServedModel) -> Driver:
    driver.desired = model
    driver.tick()
    driver.tick()
    assert driver.phase == "Healthy" and driver.rollout["stable"]["modelVersion"] == \
        model.model_version
    return driver


def test_first_version_is_deployed_directly_and_becomes_healthy():
    driver = Driver(spec(replicas=3, strategy=CANARY))
    decision = driver.tick()
    assert decision.phase == "Progressing"
    assert decision.plan.replicas == {"fraud-1": 3}
    assert decision.plan.active == "fraud-1"
    assert driver.tick().phase == "Healthy"
    assert "Deploying" in driver.reasons()


def test_split_by_replica_ratio_keeps_one_stable_until_full_weight():
    assert split(4, 25) == (3, 1)
    assert split(4, 50) == (2, 2)
    assert split(1, 10) == (1, 1)
    assert split(4, 100) == (0, 4)
    assert split(4, 0) == (4, 0)


def test_canary_goes_through_every_step_with_analysis_and_is_promoted():
    driver = healthy_on(Driver(spec(replicas=4, strategy=CANARY)), V1)
    driver.desired = V2
    decision = driver.tick()
    assert driver.rollout["candidate"]["modelVersion"] == "fraud-2"
    assert decision.plan.replicas == {"fraud-2": 1, "fraud-1": 3}
    assert decision.plan.active is None, "replica ratio: the Service selects both versions"
    driver.tick()  # canary ready: step 1 ready, analysis pending
    assert driver.rollout["stepReadyAt"] and driver.rollout["step"] == 0
    assert measurement_due(driver.spec, driver.rollout, driver.now) is None
    driver.now += timedelta(seconds=5)
    due = measurement_due(driver.spec, driver.rollout, driver.now)
    assert due and due.target.model_version == "fraud-2" and due.baseline.model_version == "fraud-1"
    driver.tick(0, measurement=passed())
    assert driver.rollout["step"] == 1, "setWeight 25 completed after a passing measurement"
    driver.tick()  # pause step: ready immediately
    driver.tick(5, measurement=passed())
    assert driver.rollout["step"] == 1, "pause of 10s not over yet"
    driver.tick(5)
    assert driver.rollout["step"] == 2
    decision = driver.tick()
    assert decision.plan.replicas == {"fraud-2": 2, "fraud-1": 2}
    driver.tick()  # ready at 50 %
    driver.tick(5, measurement=passed())
    assert driver.rollout["step"] == 3
    decision = driver.tick()  # past the last step: promoting, candidate to full size
    assert driver.rollout["promoting"] and decision.plan.replicas["fraud-2"] == 4
    decision = driver.tick()
    assert decision.phase == "Healthy" and driver.rollout["stable"]["modelVersion"] == "fraud-2"
    assert "candidate" not in driver.rollout and decision.plan.replicas == {"fraud-2": 4}
    assert decision.plan.active == "fraud-2"
    assert driver.reasons().count("StepCompleted") == 3 and "Promoted" in driver.reasons()


def test_failures_beyond_the_limit_roll_back_and_keep_the_stable():
    driver = healthy_on(Driver(spec(replicas=4, strategy=CANARY)), V1)
    driver.desired = V2
    driver.tick()
    driver.tick()
    driver.tick(5, measurement=failed())
    assert driver.phase != "RolledBack" and driver.rollout["analysisFailures"] == 1
    decision = driver.tick(5, measurement=failed(value=0.4))
    assert decision.phase == "RolledBack" and decision.reason == "AnalysisFailed"
    assert "errorRate = 0.4" in decision.message
    assert decision.plan.active == "fraud-1" and decision.plan.canary is None
    assert decision.plan.replicas == {"fraud-1": 4, "fraud-2": 0}, \
        "the stable's pods were behind the Service all along: the canary goes at once"
    assert driver.rollout["rolledBack"]["modelVersion"] == "fraud-2"
    assert driver.rollout["stable"]["modelVersion"] == "fraud-1"
    # The spec still names fraud-2: it is not retried.
    assert driver.tick(30).phase == "RolledBack"
    assert "candidate" not in driver.rollout
    # A newer version starts a fresh rollout.
    driver.desired = V3
    driver.tick()
    assert driver.rollout["candidate"]["modelVersion"] == "fraud-3"
    assert "rolledBack" not in driver.rollout


def test_inconclusive_holds_the_rollout_and_resumes_when_conclusive():
    driver = healthy_on(Driver(spec(replicas=4, strategy=CANARY)), V1)
    driver.desired = V2
    driver.tick()
    driver.tick()
    for _ in range(3):
        decision = driver.tick(5, measurement=INCONCLUSIVE)
        assert decision.phase == "Paused" and decision.reason == "AnalysisInconclusive"
        assert driver.rollout["step"] == 0
    assert driver.reasons().count("AnalysisInconclusive") == 1
    driver.tick(5, measurement=passed())
    assert driver.rollout["step"] == 1 and "AnalysisResumed" in driver.reasons()


def test_inconclusive_never_promotes_even_on_the_last_step():
    driver = healthy_on(Driver(spec(replicas=2, strategy={"canary": {
        "steps": [{"setWeight": 50}], "analysis": {"interval": "5s"}}})), V1)
    driver.desired = V2
    driver.tick()
    driver.tick()
    for _ in range(5):
        driver.tick(5, measurement=INCONCLUSIVE)
    assert driver.rollout["stable"]["modelVersion"] == "fraud-1" and driver.phase == "Paused"


def test_resume_from_status_continues_at_the_same_step():
    driver = healthy_on(Driver(spec(replicas=4, strategy=CANARY)), V1)
    driver.desired = V2
    driver.tick()
    driver.tick()
    driver.tick(5, measurement=passed())
    saved = dict(driver.rollout)
    # A new operator process: only the status survives.
    restarted = Driver(driver.spec, desired=V2, now=driver.now)
    restarted.rollout, restarted.ready = saved, dict(driver.ready)
    decision = restarted.tick()
    assert restarted.rollout["step"] == saved["step"] == 1
    assert restarted.rollout["candidate"] == saved["candidate"]
    assert "RolloutStarted" not in restarted.reasons()
    assert decision.plan.replicas == {"fraud-2": 1, "fraud-1": 3}


def test_indefinite_pause_waits_for_promote_which_skips_remaining_steps():
    strategy = {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}, {"setWeight": 75}]}}
    driver = healthy_on(Driver(spec(replicas=2, strategy=strategy)), V1)
    driver.desired = V2
    driver.tick()
    driver.tick()
    for _ in range(3):
        decision = driver.tick(60)
    assert decision.phase == "Paused" and decision.reason == "AwaitingPromotion"
    driver.spec = spec(replicas=2, strategy=strategy, rollout={"promote": "fraud-2"})
    driver.tick()
    assert driver.rollout["promoting"]
    assert driver.tick().phase == "Healthy"
    assert driver.rollout["stable"]["modelVersion"] == "fraud-2"


def test_stale_promote_or_abort_values_do_not_touch_another_candidate():
    driver = healthy_on(Driver(spec(replicas=2, strategy=CANARY,
                                    rollout={"promote": "fraud-9", "abort": "fraud-8"})), V1)
    driver.desired = V2
    driver.tick()
    driver.tick()
    assert driver.phase == "Progressing" and not driver.rollout["promoting"]


def test_abort_rolls_back_and_manual_pause_holds():
    driver = healthy_on(Driver(spec(replicas=4, strategy=CANARY)), V1)
    driver.desired = V2
    driver.tick()
    driver.tick()
    driver.spec = spec(replicas=4, strategy=CANARY, rollout={"paused": True})
    assert measurement_due(driver.spec, driver.rollout, driver.now + timedelta(60)) is None
    decision = driver.tick(60)
    assert decision.phase == "Paused" and decision.reason == "ManualPause"
    assert driver.rollout["step"] == 0
    driver.spec = spec(replicas=4, strategy=CANARY, rollout={"abort": "fraud-2"})
    decision = driver.tick()
    assert decision.phase == "RolledBack" and decision.reason == "Aborted"
    assert decision.plan.active == "fraud-1" and decision.plan.replicas["fraud-2"] == 0


def test_reverting_the_spec_to_the_stable_cancels_the_canary():
    driver = healthy_on(Driver(spec(replicas=4, strategy=CANARY)), V1)
    driver.desired = V2
    driver.tick()
    driver.desired = V1
    decision = driver.tick()
    assert decision.phase == "Healthy" and "candidate" not in driver.rollout
    assert decision.plan.replicas == {"fraud-1": 4}
    assert "RolloutCancelled" in driver.reasons()


def test_a_newer_version_replaces_the_candidate_in_flight():
    driver = healthy_on(Driver(spec(replicas=4, strategy=CANARY)), V1)
    driver.desired = V2
    driver.tick()
    driver.tick()
    driver.desired = V3
    decision = driver.tick()
    assert driver.rollout["candidate"]["modelVersion"] == "fraud-3" and driver.rollout["step"] == 0
    assert set(decision.plan.replicas) == {"fraud-1", "fraud-3"}
    assert "RolloutReplaced" in driver.reasons()


def test_blocked_target_holds_and_the_stable_keeps_serving():
    driver = healthy_on(Driver(spec(replicas=2, strategy=CANARY)), V1)
    driver.desired, driver.blocked = V2, ("FeaturesNotReady", "FeaturePipeline tx: not Ready")
    decision = driver.tick()
    assert decision.phase == "Paused" and decision.reason == "FeaturesNotReady"
    assert decision.plan.replicas == {"fraud-1": 2} and "candidate" not in driver.rollout
    driver.blocked = None
    driver.tick()
    assert driver.rollout["candidate"]["modelVersion"] == "fraud-2"


def test_nothing_to_serve_is_degraded():
    driver = Driver(spec(), desired=None)
    driver.blocked = ("NoApprovedVersion", "no approved ModelVersion of fraud")
    decision = driver.tick()
    assert decision.phase == "Degraded" and decision.plan.models == {}


def test_gateway_weights_follow_the_steps_and_the_stable_keeps_its_replicas():
    driver = healthy_on(Driver(spec(replicas=4, strategy=CANARY,
                                    traffic={"gatewayRef": {"name": "web"}})), V1)
    assert driver.last.plan.weights == (100, 0)
    driver.desired = V2
    decision = driver.tick()
    assert decision.plan.weights == (75, 25)
    assert decision.plan.replicas == {"fraud-2": 1, "fraud-1": 4}
    assert decision.plan.active == "fraud-1"
    driver.tick()
    driver.tick(5, measurement=passed())
    driver.tick()
    driver.tick(10, measurement=passed())
    decision = driver.tick()
    assert driver.rollout["step"] == 2 and decision.plan.weights == (50, 50)


def test_post_promotion_failure_switches_back_to_the_warm_previous_version():
    strategy = {"canary": {"steps": [{"setWeight": 50}], "postPromotion": "30s",
                           "analysis": {"interval": "5s", "failureLimit": 0}}}
    driver = healthy_on(Driver(spec(replicas=2, strategy=strategy)), V1)
    driver.desired = V2
    driver.tick()
    driver.tick()
    driver.tick(5, measurement=passed())
    driver.tick()
    decision = driver.tick()
    assert driver.rollout["stable"]["modelVersion"] == "fraud-2"
    assert decision.plan.replicas == {"fraud-2": 2, "fraud-1": 2}, "previous kept warm"
    assert decision.plan.active == "fraud-2"
    due = measurement_due(driver.spec, driver.rollout, driver.now + timedelta(seconds=5))
    assert due.target.model_version == "fraud-2" and due.baseline.model_version == "fraud-1"
    decision = driver.tick(5, measurement=failed("latencyP99", 3.0))
    assert decision.phase == "RolledBack" and decision.reason == "PostPromotionAnalysisFailed"
    assert driver.rollout["stable"]["modelVersion"] == "fraud-1"
    assert decision.plan.active == "fraud-1" and decision.plan.replicas["fraud-2"] == 2
    assert driver.tick(SWITCH_SECONDS).plan.replicas["fraud-2"] == 0


def test_post_promotion_window_ends_and_the_previous_version_goes():
    strategy = {"canary": {"steps": [{"setWeight": 50}], "postPromotion": "10s"}}
    driver = healthy_on(Driver(spec(replicas=2, strategy=strategy)), V1)
    driver.desired = V2
    for _ in range(4):
        driver.tick()
    assert driver.rollout["stable"]["modelVersion"] == "fraud-2" and driver.rollout["previous"]
    decision = driver.tick(11)
    assert "previous" not in driver.rollout and decision.plan.replicas == {"fraud-2": 2}
    assert "PostPromotionPassed" in driver.reasons()


BLUE_GREEN = {"blueGreen": {"previewReplicas": 1, "scaleDownDelaySeconds": 30}}


def test_blue_green_previews_then_switches_atomically_on_promote():
    driver = healthy_on(Driver(spec(replicas=2, strategy=BLUE_GREEN)), V1)
    driver.desired = V2
    decision = driver.tick()
    assert decision.plan.preview == "fraud-2" and decision.plan.active == "fraud-1"
    assert decision.plan.replicas == {"fraud-2": 1, "fraud-1": 2}
    decision = driver.tick()
    assert decision.phase == "Paused" and decision.reason == "AwaitingPromotion"
    driver.spec = spec(replicas=2, strategy=BLUE_GREEN, rollout={"promote": "fraud-2"})
    decision = driver.tick()
    assert decision.plan.replicas["fraud-2"] == 2 and decision.plan.active == "fraud-1"
    decision = driver.tick()
    assert decision.plan.active == "fraud-2" and decision.plan.preview is None
    assert decision.plan.replicas == {"fraud-2": 2, "fraud-1": 2}, "old colour kept warm"
    assert driver.rollout["scaleDownAt"]
    decision = driver.tick(31)
    assert decision.plan.replicas == {"fraud-2": 2}


def test_blue_green_rollback_by_reverting_the_spec_is_instant():
    driver = healthy_on(Driver(spec(replicas=2, strategy={"blueGreen": {"autoPromote": True}})),
                        V1)
    driver.desired = V2
    driver.tick()
    driver.tick()
    assert driver.rollout["stable"]["modelVersion"] == "fraud-2"
    driver.desired = V1
    decision = driver.tick(auto_ready=False)
    assert decision.plan.active == "fraud-1", "switched back in the same reconcile"
    assert driver.rollout["stable"]["modelVersion"] == "fraud-1"
    assert "SwitchedBack" in driver.reasons()


def test_blue_green_analysis_must_pass_before_auto_promotion():
    strategy = {"blueGreen": {"autoPromote": True, "analysis": {"interval": "5s"}}}
    driver = healthy_on(Driver(spec(replicas=2, strategy=strategy)), V1)
    driver.desired = V2
    driver.tick()
    driver.tick()
    assert driver.rollout["candidate"] and driver.phase == "Progressing"
    driver.tick(5, measurement=passed())
    driver.tick()
    assert driver.rollout["stable"]["modelVersion"] == "fraud-2"


SHADOW = {"shadow": {"mirrorPercent": 50, "duration": "20s", "autoPromote": True,
                     "analysis": {"interval": "5s", "failureLimit": 0}}}


def test_shadow_mirrors_to_the_candidate_which_never_serves_clients():
    driver = healthy_on(Driver(spec(replicas=4, strategy=SHADOW)), V1)
    driver.desired = V2
    decision = driver.tick()
    assert decision.plan.mirror == ("fraud-2", 50) and decision.plan.active == "fraud-1"
    assert decision.plan.canary == "fraud-2" and decision.plan.replicas["fraud-2"] == 2
    driver.tick()
    driver.tick(5, measurement=passed())
    assert driver.phase == "Progressing" and driver.last.reason == "Shadowing"
    driver.tick(16, measurement=passed())
    driver.tick()
    assert driver.rollout["stable"]["modelVersion"] == "fraud-2"
    assert driver.last.plan.mirror is None


def test_shadow_analysis_failure_rolls_back():
    driver = healthy_on(Driver(spec(replicas=4, strategy=SHADOW)), V1)
    driver.desired = V2
    driver.tick()
    driver.tick()
    decision = driver.tick(5, measurement=failed())
    assert decision.phase == "RolledBack" and decision.plan.mirror is None


def test_no_strategy_replaces_when_the_new_version_is_ready():
    driver = healthy_on(Driver(spec(replicas=2)), V1)
    driver.desired = V2
    decision = driver.tick()
    assert decision.plan.replicas == {"fraud-2": 2, "fraud-1": 2}
    assert decision.plan.active == "fraud-1"
    decision = driver.tick()
    assert decision.plan.active == "fraud-2"
    assert decision.plan.replicas == {"fraud-2": 2, "fraud-1": 2}, "fraud-1 drains after the move"
    assert driver.tick(SWITCH_SECONDS).plan.replicas == {"fraud-2": 2}


def test_stable_losing_its_pods_is_degraded():
    driver = healthy_on(Driver(spec(replicas=2)), V1)
    driver.ready = {}
    assert driver.tick(auto_ready=False).phase == "Degraded"


def test_a_rollback_waits_for_the_version_it_returns_to_and_the_left_one_drains_after():
    """At 100 % the stable had no pod; after promotion it is scaled up again as the version kept
    warm. A failure before it is ready keeps the Service on the failing version (errors, not
    refused connections) until it is; then the failing version keeps its pods a moment more."""
    strategy = {"canary": {"steps": [{"setWeight": 100}], "postPromotion": "30s",
                           "analysis": {"interval": "5s", "failureLimit": 0}}}
    driver = healthy_on(Driver(spec(replicas=1, strategy=strategy)), V1)
    driver.desired = V2
    driver.tick()
    driver.tick()
    driver.tick(5, measurement=passed())
    driver.tick()
    driver.tick()
    assert driver.rollout["stable"]["modelVersion"] == "fraud-2"
    assert driver.rollout["active"]["modelVersion"] == "fraud-2"
    driver.ready["fraud-1"] = 0  # the warm version's pod is still loading its model
    decision = driver.tick(5, measurement=failed(), auto_ready=False)
    assert decision.phase == "RolledBack" and driver.rollout["stable"]["modelVersion"] == "fraud-1"
    assert decision.plan.active == "fraud-2", "no Service move to a version without a ready pod"
    assert decision.plan.replicas == {"fraud-1": 1, "fraud-2": 1} and decision.requeue <= 2
    driver.ready["fraud-1"] = 1
    decision = driver.tick(auto_ready=False)
    assert decision.plan.active == "fraud-1" and driver.rollout["left"]["modelVersion"] == "fraud-2"
    assert decision.plan.replicas["fraud-2"] == 1, "the left version drains after the move"
    assert decision.requeue <= SWITCH_SECONDS + 0.5
    decision = driver.tick(SWITCH_SECONDS, auto_ready=False)
    assert decision.plan.replicas["fraud-2"] == 0 and "left" not in driver.rollout


def test_the_colour_a_blue_green_switch_leaves_keeps_its_pods_a_moment():
    strategy = {"blueGreen": {"previewReplicas": 1, "scaleDownDelaySeconds": 0}}
    driver = healthy_on(Driver(spec(replicas=2, strategy=strategy)), V1)
    driver.desired = V2
    for _ in range(3):
        driver.tick()
    driver.spec = spec(replicas=2, strategy=strategy, rollout={"promote": "fraud-2"})
    for _ in range(3):
        decision = driver.tick()
        if driver.rollout["stable"]["modelVersion"] == "fraud-2":
            break
    assert decision.plan.active == "fraud-2" and decision.plan.replicas["fraud-1"] == 2
    assert driver.tick(SWITCH_SECONDS).plan.replicas.get("fraud-1", 0) == 0
