"""A small 5-field cron evaluator (pure): the slot a schedule last fired at, and the next one.

Fields: minute, hour, day of month, month, day of week (0-7, 0 and 7 are Sunday), each ``*``, a
number, a range ``a-b``, a step ``*/n`` or ``a-b/n``, or a comma list of those; the macros
``@hourly``, ``@daily``, ``@weekly``, ``@monthly`` and ``@yearly``. As in Vixie cron, when both
day fields are restricted a day matches either. Slots are wall-clock times in the schedule's time
zone; a slot inside a DST gap resolves as ``zoneinfo`` does (fold 0).

It walks days, not minutes, so a yearly schedule costs a few hundred steps, not half a million.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

MACROS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
          "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *",
          "@annually": "0 0 1 1 *"}
BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
SEARCH_DAYS = 366 * 8  # every 29 February; a rarer date-and-weekday pair finds nothing


@dataclass(frozen=True)
class Schedule:
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool
    any_weekday: bool

    def day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        by_date, by_weekday = day.day in self.days, (day.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return by_date and by_weekday
        return by_date or by_weekday


def _field(text: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if body == "*":
            start, end = low, high
        elif "-" in body:
            start, end = (int(x) for x in body.split("-", 1))
        else:
            start = int(body)
            end = high if step_text else start
        if not (low <= start <= end <= high) or step < 1:
            raise ValueError(f"{part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return values


def parse(expression: str) -> Schedule:
    """Raises ValueError for anything but the forms above."""
    fields = MACROS.get(expression.strip(), expression).split()
    if len(fields) != len(BOUNDS):
        raise ValueError(f"{expression!r} is not a 5-field cron expression")
    try:
        minute, hour, day, month, weekday = (
            _field(text, low, high) for text, (low, high) in zip(fields, BOUNDS, strict=True))
    except ValueError as error:
        raise ValueError(f"{expression!r}: {error}") from None
    return Schedule(tuple(sorted(minute)), tuple(sorted(hour)), frozenset(day), frozenset(month),
                    frozenset(d % 7 for d in weekday), fields[2] == "*", fields[4] == "*")


def _slot(day: date, hour: int, minute: int, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)


def latest_slot(expression: str, now: datetime, time_zone: str = "UTC") -> datetime | None:
    """The latest slot at or before ``now`` (aware), in ``time_zone``; None if none in 8 years."""
    schedule, zone = parse(expression), ZoneInfo(time_zone)
    local = now.astimezone(zone)
    for back in range(SEARCH_DAYS):
        day = local.date() - timedelta(days=back)
        if not schedule.day_matches(day):
            continue
        for hour in reversed(schedule.hours):
            for minute in reversed(schedule.minutes):
                slot = _slot(day, hour, minute, zone)
                if slot <= now:
                    return slot
    return None


def next_slot(expression: str, now: datetime, time_zone: str = "UTC") -> datetime | None:
    """The first slot strictly after ``now``; None if none in 8 years."""
    schedule, zone = parse(expression), ZoneInfo(time_zone)
    local = now.astimezone(zone)
    for ahead in range(SEARCH_DAYS):
        day = local.date() + timedelta(days=ahead)
        if not schedule.day_matches(day):
            continue
        for hour in schedule.hours:
            for minute in schedule.minutes:
                slot = _slot(day, hour, minute, zone)
                if slot > now:
                    return slot
    return None
