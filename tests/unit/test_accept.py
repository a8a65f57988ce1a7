from ferry.api import KINDS
from ferry.reconcilers.accept import accept
from ferry.status import make_condition

INFO = KINDS["TrainingRun"]


def body(spec, generation=1, status=None):
    return {"metadata": {"name": "r", "namespace": "n", "generation": generation},
            "spec": spec, "status": status or {}}


def test_valid_spec_is_accepted_with_observed_generation_and_an_event():
    spec, outcome = accept(INFO, body({"image": "x"}, generation=4))
    assert spec.image == "x"
    assert outcome.status["observedGeneration"] == 4
    assert outcome.status["phase"] == "Pending"
    condition = outcome.status["conditions"][0]
    assert (condition["type"], condition["status"], condition["reason"]) == (
        "Accepted", "True", "SpecValid")
    assert [(e.type, e.reason) for e in outcome.events] == [("Normal", "SpecValid")]


def test_invalid_spec_sets_accepted_false_naming_the_field():
    spec, outcome = accept(INFO, body({"image": "x", "workers": "many"}))
    assert spec is None
    condition = outcome.status["conditions"][0]
    assert condition["status"] == "False" and condition["reason"] == "InvalidSpec"
    assert "spec.workers" in condition["message"]
    assert outcome.status["phase"] == "Invalid"
    assert outcome.events[0].type == "Warning"


def test_repeated_reconcile_is_idempotent_and_silent():
    _, first = accept(INFO, body({"image": "x"}))
    _, second = accept(INFO, body({"image": "x"}, status=first.status))
    assert second.events == []
    assert second.status_changes(first.status) == {}


def test_existing_phase_is_kept_once_accepted():
    status = {"phase": "Running", "conditions": [make_condition("Accepted", True, "SpecValid")]}
    _, outcome = accept(INFO, body({"image": "x"}, status=status))
    assert outcome.status["phase"] == "Running"


def test_fixing_an_invalid_spec_leaves_the_invalid_phase():
    _, bad = accept(INFO, body({"image": "x", "workers": 0}))
    _, fixed = accept(INFO, body({"image": "x"}, generation=2, status=bad.status))
    assert fixed.status["phase"] == "Pending"
    assert fixed.events[0].reason == "SpecValid"
