"""wait_for: "not yet" keeps waiting, an assertion in the predicate fails at once."""

from __future__ import annotations

import pytest

from support.waiting import TerminalState, wait_for


def test_errors_mean_not_yet_and_the_first_truthy_result_is_returned():
    answers = iter([KeyError("not created yet"), None, {"phase": "Ready"}])

    def predicate():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert wait_for(predicate, timeout=5, interval=0) == {"phase": "Ready"}


def test_an_assertion_in_the_predicate_fails_at_once_with_what_was_awaited():
    calls = []

    def predicate():
        calls.append(1)
        raise AssertionError("run Failed: OOMKilled")

    with pytest.raises(TerminalState, match="while waiting for the run: run Failed: OOMKilled"):
        wait_for(predicate, timeout=300, interval=0, message="the run")
    assert len(calls) == 1, "no retry after a terminal state"


def test_a_timeout_reports_the_last_error():
    def predicate():
        raise KeyError("still missing")

    with pytest.raises(AssertionError, match="timed out after 0.05s waiting for x .*still missing"):
        wait_for(predicate, timeout=0.05, interval=0.01, message="x")
