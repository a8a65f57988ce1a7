"""Systematic sampling: exactly ``rate`` of the offered items, evenly spread, no randomness.

A request share for the prediction log and for mirroring must hold at any traffic volume, and tests
and the rollout analysis need it to be predictable; a running credit gives both.
"""

from __future__ import annotations


class Sampler:
    def __init__(self, rate: float) -> None:
        if not 0 <= rate <= 1:
            raise ValueError(f"a sampling rate is between 0 and 1, got {rate}")
        self.rate = rate
        self._credit = 0.0

    def take(self) -> bool:
        """True for the items to keep: after n offers, floor(n * rate) were taken."""
        if self.rate <= 0:
            return False
        self._credit += self.rate
        if self._credit >= 1 - 1e-9:
            self._credit -= 1
            return True
        return False
