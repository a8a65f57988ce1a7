"""The 5-field cron evaluator: the latest slot at or before now, and the next one."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ferry.reconcilers.cron import latest_slot, next_slot, parse

NOW = datetime(2026, 11, 22, 12, 7, tzinfo=UTC)  # a Sunday


def at(*parts) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize("expression, latest, following", [
    ("* * * * *", at(2026, 11, 22, 12, 7), at(2026, 11, 22, 12, 8)),
    ("*/15 * * * *", at(2026, 11, 22, 12, 0), at(2026, 11, 22, 12, 15)),
    ("0 3 * * *", at(2026, 11, 22, 3, 0), at(2026, 11, 23, 3, 0)),
    ("5,10-12 */6 * * *", at(2026, 11, 22, 12, 5), at(2026, 11, 22, 12, 10)),
    ("0 9 * * 1-5", at(2026, 11, 20, 9, 0), at(2026, 11, 23, 9, 0)),
    ("30 2 1,15 * *", at(2026, 11, 15, 2, 30), at(2026, 12, 1, 2, 30)),
    ("0 0 * * 7", at(2026, 11, 22, 0, 0), at(2026, 11, 29, 0, 0)),
    ("@weekly", at(2026, 11, 22, 0, 0), at(2026, 11, 29, 0, 0)),
    ("0 0 29 2 *", at(2024, 2, 29, 0, 0), at(2028, 2, 29, 0, 0)),
    ("0 12-18/3 * 11 *", at(2026, 11, 22, 12, 0), at(2026, 11, 22, 15, 0)),
])
def test_latest_and_next_slot(expression, latest, following):
    assert latest_slot(expression, NOW) == latest
    assert next_slot(expression, NOW) == following


def test_a_slot_exactly_now_is_the_latest_not_the_next():
    assert latest_slot("7 12 * * *", NOW) == NOW
    assert next_slot("7 12 * * *", NOW) == at(2026, 11, 23, 12, 7)


def test_day_of_month_or_day_of_week_when_both_are_restricted():
    # the 1st of the month or any Monday, as Vixie cron
    assert latest_slot("0 0 1 * 1", NOW) == at(2026, 11, 16, 0, 0)
    assert next_slot("0 0 1 * 1", NOW) == at(2026, 11, 23, 0, 0)
    assert next_slot("0 0 1 * 1", at(2026, 11, 28, 0, 0)) == at(2026, 11, 30, 0, 0)


def test_slots_are_wall_clock_in_the_time_zone():
    assert latest_slot("0 9 * * *", NOW, "Europe/Berlin") == at(2026, 11, 22, 8, 0)
    summer = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    assert latest_slot("0 9 * * *", summer, "Europe/Berlin") == at(2026, 7, 1, 7, 0)


@pytest.mark.parametrize("expression", ["0 3 * *", "60 * * * *", "* 24 * * *", "* * 0 * *",
                                        "*/0 * * * *", "5-1 * * * *", "a * * * *", "@often"])
def test_invalid_expressions_are_refused(expression):
    with pytest.raises(ValueError):
        parse(expression)
