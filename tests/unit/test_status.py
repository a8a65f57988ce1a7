from ferry.status import find_condition, make_condition, set_condition, transitioned


def cond(status, reason="R", now="2026-01-01T00:00:00Z", type_="Ready"):
    return make_condition(type_, status, reason, "m", generation=3, now=now)


def test_make_condition_follows_api_conventions():
    c = cond(True)
    assert c == {"type": "Ready", "status": "True", "reason": "R", "message": "m",
                 "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 3}
    assert make_condition("X", "Unknown", "Wait")["status"] == "Unknown"


def test_same_status_keeps_transition_time():
    first = set_condition([], cond(True, now="2026-01-01T00:00:00Z"))
    second = set_condition(first, cond(True, reason="Other", now="2026-02-02T00:00:00Z"))
    assert second[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert second[0]["reason"] == "Other"


def test_status_change_moves_transition_time():
    first = set_condition([], cond(True, now="2026-01-01T00:00:00Z"))
    second = set_condition(first, cond(False, now="2026-02-02T00:00:00Z"))
    assert second[0]["lastTransitionTime"] == "2026-02-02T00:00:00Z"


def test_set_condition_keeps_others_sorted_and_does_not_mutate():
    original = [cond(True, type_="Zeta"), cond(True, type_="Alpha")]
    updated = set_condition(original, cond(False, type_="Ready"))
    assert [c["type"] for c in updated] == ["Alpha", "Ready", "Zeta"]
    assert len(original) == 2


def test_transitioned_reports_new_status_or_reason_only():
    before = [cond(True)]
    assert transitioned(before, [cond(True, now="later")], "Ready") is None
    assert transitioned(before, [cond(False)], "Ready")["status"] == "False"
    assert transitioned(before, [cond(True, reason="New")], "Ready")["reason"] == "New"
    assert transitioned(None, before, "Ready") is not None
    assert transitioned(before, [], "Ready") is None


def test_find_condition():
    assert find_condition(None, "Ready") is None
    assert find_condition([cond(True)], "Ready")["status"] == "True"
