"""The experiment decision, one test per branch: guardrails stop, a sample-ratio mismatch
invalidates, the sequential and fixed-horizon tests pick a winner (possibly the control), prove no
difference or run out of time, and a terminal outcome is final."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ferry.api.inferenceservice import Experiment, ExperimentStatus
from ferry.experiments.stats import Summary
from ferry.reconcilers.experiment import Observation, VariantObservation, decide

START = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
NOW = START + timedelta(days=2)
FAILED = [{"name": "errorRate", "verdict": "Failed", "value": 0.2, "op": "<=", "threshold": 0.01}]
PASSED = [{"name": "errorRate", "verdict": "Passed", "value": 0.0, "op": "<=", "threshold": 0.01}]


def experiment(weights=(50, 50), **fields) -> Experiment:
    return Experiment.model_validate({
        "variants": [{"name": name, "modelVersion": f"shop-{name}", "weight": weight}
                     for name, weight in zip("abcde", weights, strict=False)],
        "assignment": {"header": "x-user-id"}, "minimumDetectableEffect": 0.01,
        "maxDuration": "7d", **fields})


def variant(n: int, mean: float, variance: float | None = None, users: int | None = None,
            guardrails=None) -> VariantObservation:
    variance = mean * (1 - mean) if variance is None else variance
    return VariantObservation(requests=3 * n, users=n if users is None else users,
                              metric=Summary(n, mean, variance), guardrails=guardrails)


def observe(previous: ExperimentStatus | None = None, **variants: VariantObservation) -> Observation:
    return Observation(variants, previous)


def test_collecting_until_every_variant_has_the_minimum_samples():
    observed = observe(a=variant(500, 0.1, users=300), b=variant(99, 0.3, users=300))
    decision = decide(experiment(), observed, NOW, START)
    assert (decision.outcome, decision.reason, decision.promote) == ("Running", "Collecting", None)
    assert "a 500, b 99 of 100 samples" in decision.message
    assert decision.status.started_at == "2026-03-01T10:00:00.000000Z" and not decision.events


def test_a_significantly_better_treatment_wins_and_waits_for_promotion():
    decision = decide(experiment(), observe(a=variant(20_000, 0.10), b=variant(20_000, 0.12)), NOW, START)
    assert (decision.outcome, decision.winner, decision.reason) == ("Winner", "b", "TreatmentBetter")
    assert decision.promote is None
    b = decision.status.variants[1]
    assert b.difference == 0.12 - 0.10 and b.p_value < 0.05 and b.confidence_interval.lower > 0
    assert decision.status.outcome == "Winner" and decision.status.ended_at is not None
    assert [(e.type, e.reason) for e in decision.events] == [("Normal", "ExperimentWinner")]
    assert "b beats a" in decision.message


def test_auto_promote_names_the_winners_model_version():
    decision = decide(experiment(autoPromote=True),
                      observe(a=variant(20_000, 0.10), b=variant(20_000, 0.12)), NOW, START)
    assert decision.promote == "shop-b"


def test_of_several_better_treatments_the_best_wins():
    spec = experiment((34, 33, 33))
    decision = decide(spec, observe(a=variant(30_000, 0.10, users=3400), b=variant(30_000, 0.12, users=3300),
                                    c=variant(30_000, 0.13, users=3300)), NOW, START)
    assert decision.winner == "c"


def test_a_lower_is_better_metric_wins_by_going_down():
    spec = experiment(metric={"name": "latency_ms", "higherIsBetter": False})
    decision = decide(spec, observe(a=variant(20_000, 0.30), b=variant(20_000, 0.27)), NOW, START)
    assert (decision.outcome, decision.winner) == ("Winner", "b")


def test_the_control_wins_when_it_beats_every_treatment_and_nothing_is_promoted():
    spec = experiment((34, 33, 33), autoPromote=True)
    decision = decide(spec, observe(a=variant(30_000, 0.15, users=3400), b=variant(30_000, 0.12, users=3300),
                                    c=variant(30_000, 0.11, users=3300)), NOW, START)
    assert (decision.outcome, decision.winner, decision.reason) == ("Winner", "a", "ControlBetter")
    assert decision.promote is None


def test_no_difference_when_every_interval_is_inside_the_minimum_effect():
    decision = decide(experiment(), observe(a=variant(200_000, 0.100), b=variant(200_000, 0.101)),
                      NOW, START)
    assert (decision.outcome, decision.winner, decision.reason) == ("NoDifference", None, "NoEffect")
    interval = decision.status.variants[1].confidence_interval
    assert -0.01 < interval.lower < interval.upper < 0.01


def test_no_difference_when_treatments_are_worse_or_equivalent():
    spec = experiment((34, 33, 33))
    decision = decide(spec, observe(a=variant(200_000, 0.150, users=3400),
                                    b=variant(200_000, 0.150, users=3300),
                                    c=variant(200_000, 0.120, users=3300)), NOW, START)
    assert decision.outcome == "NoDifference"


def test_undecided_keeps_running_until_max_duration_then_is_inconclusive():
    observed = observe(a=variant(2000, 0.100), b=variant(2000, 0.105))
    assert decide(experiment(), observed, NOW, START).outcome == "Running"
    late = decide(experiment(), observed, START + timedelta(days=7), START)
    assert (late.outcome, late.reason) == ("Inconclusive", "MaxDuration")
    assert "maxDuration 7d reached undecided" in late.message


def test_max_duration_while_collecting_is_inconclusive():
    decision = decide(experiment(), observe(a=variant(50, 0.1), b=variant(40, 0.1)),
                      START + timedelta(days=8), START)
    assert (decision.outcome, decision.reason) == ("Inconclusive", "MaxDuration")
    assert "collecting: a 50, b 40" in decision.message


def test_a_sample_ratio_mismatch_is_invalid_and_names_the_counts():
    observed = observe(a=variant(20_000, 0.10, users=1000), b=variant(20_000, 0.12, users=800))
    decision = decide(experiment(autoPromote=True), observed, NOW, START)
    assert (decision.outcome, decision.reason, decision.promote) == ("Invalid", "SampleRatioMismatch", None)
    assert "users a 1000 (expected 900), b 800 (expected 900)" in decision.message
    assert decision.status.srm_p_value < 0.001
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", "ExperimentInvalid")]


def test_a_starved_variant_is_invalid():
    decision = decide(experiment((90, 10)), observe(a=variant(5000, 0.1), b=variant(0, 0.1)), NOW, START)
    assert decision.outcome == "Invalid" and "b 0 (expected 500)" in decision.message


def test_counts_that_fit_the_weights_pass_the_ratio_check():
    decision = decide(experiment((50, 30, 20)), observe(a=variant(2000, 0.1, users=5030),
                                                         b=variant(2000, 0.1, users=2990),
                                                         c=variant(2000, 0.1, users=1980)), NOW, START)
    assert decision.outcome != "Invalid" and decision.status.srm_p_value > 0.1


def test_too_few_users_are_not_ratio_checked():
    decision = decide(experiment((95, 5)), observe(a=variant(10, 0.1, users=60), b=variant(10, 0.1, users=0)),
                      NOW, START)
    assert decision.outcome == "Running" and decision.status.srm_p_value is None


def test_a_guardrail_breach_of_a_treatment_stops_and_wins_over_everything():
    previous = ExperimentStatus(outcome="Running", variants=[
        {"name": "a"}, {"name": "b", "guardrailFailures": 1}])
    observed = observe(previous, a=variant(20_000, 0.10, users=1000, guardrails=PASSED),
                       b=variant(20_000, 0.12, users=800, guardrails=FAILED))
    decision = decide(experiment(autoPromote=True), observed, NOW, START)
    assert (decision.outcome, decision.reason, decision.winner) == ("Stopped", "GuardrailBreached", None)
    assert decision.promote is None and "a kept" in decision.message
    assert "b: errorRate = 0.2 (want <= 0.01)" in decision.message
    assert decision.status.variants[1].guardrail_failures == 2
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", "ExperimentStopped")]


def test_failures_up_to_the_limit_are_counted_and_the_control_never_stops_it():
    observed = observe(a=variant(50, 0.1, guardrails=FAILED), b=variant(50, 0.1, guardrails=FAILED))
    decision = decide(experiment(guardrails={"failureLimit": 1}), observed, NOW, START)
    assert decision.outcome == "Running"
    assert [v.guardrail_failures for v in decision.status.variants] == [1, 1]
    again = decide(experiment(guardrails={"failureLimit": 1}),
                   observe(decision.status, a=variant(50, 0.1, guardrails=FAILED),
                           b=variant(50, 0.1, guardrails=PASSED)), NOW, START)
    assert again.outcome == "Running"
    assert [v.guardrail_failures for v in again.status.variants] == [2, 1]


def test_bonferroni_splits_alpha_between_the_treatments():
    """p = 0.03 wins alone (alpha 0.05) but not as one of two treatments (alpha 0.025 each)."""
    se = (2 * 0.09 / 20_000) ** 0.5
    gap = 2.17 * se  # two-sided p = 0.030
    two = decide(experiment(test="fixedHorizon", minSamplesPerVariant=20_000, minimumDetectableEffect=0.1),
                 observe(a=variant(20_000, 0.1, 0.09), b=variant(20_000, 0.1 + gap, 0.09)), NOW, START)
    assert two.winner == "b" and 0.029 < two.status.variants[1].p_value < 0.031
    three = decide(experiment((34, 33, 33), test="fixedHorizon", minSamplesPerVariant=20_000,
                              minimumDetectableEffect=0.1),
                   observe(a=variant(20_000, 0.1, 0.09, users=3400),
                           b=variant(20_000, 0.1 + gap, 0.09, users=3300),
                           c=variant(20_000, 0.1, 0.09, users=3300)), NOW, START)
    assert three.outcome == "NoDifference"  # b's interval is inside the (wide) +-0.1
    assert three.status.variants[1].p_value == two.status.variants[1].p_value


def test_fixed_horizon_waits_for_its_sample_size():
    spec = experiment(test="fixedHorizon")
    decision = decide(spec, observe(a=variant(10_000, 0.10), b=variant(10_000, 0.12)), NOW, START)
    # (z(0.975) + z(0.8))² (0.1·0.9 + 0.12·0.88) / 0.01², from the observed variances
    assert decision.outcome == "Running" and decision.status.required_samples == 15_353
    assert "of 15353 samples per variant" in decision.message
    done = decide(spec, observe(a=variant(15_353, 0.10), b=variant(15_353, 0.12)), NOW, START)
    assert (done.outcome, done.winner) == ("Winner", "b")


def test_fixed_horizon_reached_without_a_decision_is_inconclusive_at_once():
    spec = experiment(test="fixedHorizon")
    decision = decide(spec, observe(a=variant(15_000, 0.100), b=variant(15_000, 0.1055)), NOW, START)
    assert (decision.outcome, decision.reason) == ("Inconclusive", "HorizonReached")


def test_fixed_horizon_reached_inside_the_minimum_effect_is_no_difference():
    spec = experiment(test="fixedHorizon")
    decision = decide(spec, observe(a=variant(15_000, 0.1), b=variant(15_000, 0.1)), NOW, START)
    assert decision.outcome == "NoDifference"


def test_a_terminal_outcome_is_final():
    won = decide(experiment(autoPromote=True), observe(a=variant(20_000, 0.10), b=variant(20_000, 0.12)),
                 NOW, START)
    later = decide(experiment(autoPromote=True),
                   observe(won.status, a=variant(90_000, 0.12), b=variant(90_000, 0.10)),
                   NOW + timedelta(hours=1), START)
    assert (later.outcome, later.winner, later.promote) == ("Winner", "b", "shop-b")
    assert later.status == won.status and not later.events


def test_the_status_has_every_variants_numbers():
    decision = decide(experiment(), observe(a=variant(2000, 0.10, users=1990), b=variant(2100, 0.11)),
                      NOW, START)
    a, b = decision.status.variants
    assert (a.name, a.model_version, a.requests, a.users, a.samples, a.metric) == (
        "a", "shop-a", 6000, 1990, 2000, 0.10)
    assert a.p_value is None and a.confidence_interval is None
    assert (b.samples, b.metric) == (2100, 0.11) and b.p_value is not None
    dumped = decision.status.model_dump(by_alias=True, exclude_none=True)
    assert dumped["variants"][1]["confidenceInterval"].keys() == {"lower", "upper"}
    assert ExperimentStatus.model_validate(dumped) == decision.status


def test_an_experiment_is_refused_with_a_reason_until_its_traffic_is_routed():
    """No silent fallback: the operator says it does not route experiments, it does not replace."""
    from ferry.reconcilers.accept import accept, rejected
    from ferry.reconcilers.experiment import NOT_SERVED, not_served
    from ferry.api import KINDS
    from ferry.status import find_condition

    body = {"metadata": {"generation": 2}, "spec": {
        "model": {"modelVersion": "a"},
        "strategy": {"experiment": experiment().model_dump(by_alias=True, exclude_none=True)}}}
    spec, outcome = accept(KINDS["InferenceService"], body)
    assert not_served(spec) == NOT_SERVED
    refused = rejected(body, NOT_SERVED, "ExperimentNotServed")
    accepted = find_condition(refused.status["conditions"], "Accepted")
    assert (accepted["status"], accepted["reason"]) == ("False", "ExperimentNotServed")
    assert refused.status["phase"] == "Invalid"
    assert [e.reason for e in refused.events] == ["ExperimentNotServed"]
