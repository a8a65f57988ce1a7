"""What one reconcile decided: the status to write and the Events to post."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class Outcome:
    status: dict
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None  # sooner than the periodic resync, e.g. while polling

    def status_changes(self, current: dict | None) -> dict:
        """The subset of ``status`` that differs from ``current``: an empty dict means no write."""
        current = current or {}
        return {k: v for k, v in self.status.items() if current.get(k) != v}
