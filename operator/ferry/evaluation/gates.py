"""Evaluation gates judged on the confidence bound, never on the point estimate alone.

A slice passes a minimum only when its interval's lower bound clears it, and a candidate is
non-inferior to the champion on a slice only when its lower bound is within ``margin`` of the
champion's value there. A slice with too few rows is Inconclusive: it neither passes nor fails,
and a gate with an Inconclusive slice is Inconclusive unless another slice already failed it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ferry.evaluation.metrics import Interval


@dataclass(frozen=True)
class SliceScore:
    slice: str
    samples: int
    interval: Interval


@dataclass(frozen=True)
class Verdict:
    gate: str
    verdict: str               # Passed | Failed | Inconclusive
    failed: list[str]
    inconclusive: list[str]


def _verdict(gate: str, failed: list[str], inconclusive: list[str]) -> Verdict:
    state = "Failed" if failed else "Inconclusive" if inconclusive else "Passed"
    return Verdict(gate, state, failed, inconclusive)


def slice_minimum(scores: list[SliceScore], minimum: float, min_samples: int) -> Verdict:
    small = [s.slice for s in scores if s.samples < min_samples]
    failed = [s.slice for s in scores if s.samples >= min_samples and s.interval.lower < minimum]
    return _verdict(f"slice minimum {minimum:g}", failed, small)


def non_inferiority(candidate: list[SliceScore], champion: dict[str, float], margin: float,
                    min_samples: int) -> Verdict:
    small = [s.slice for s in candidate if s.samples < min_samples or s.slice not in champion]
    failed = [s.slice for s in candidate if s.samples >= min_samples and s.slice in champion
              and s.interval.lower < champion[s.slice] - margin]
    return _verdict(f"non-inferior to the champion (margin {margin:g})", failed, small)
