"""Exact dynamic batching: requests that arrive while the model is busy are predicted together.

There is no waiting window: a lone request is predicted at once, so latency at low load is that of
one call; under load, everything queued during one predict call forms the next batch (up to
``max_rows`` rows). Only frames with the same columns, dtypes and params are concatenated, and the
output is cut back by row counts, so each request gets what predicting its own rows gives for
row-independent models (every sklearn estimator's ``predict``). If a merged call fails or returns a
different number of rows, the requests of that group are predicted one by one, so one bad request
fails alone.

Exactness, precisely: per-row arithmetic that does not depend on the batch (trees, rules, lookups)
gives bit-identical answers; BLAS matrix products (linear models, neural networks) may round the
last bit of a float differently for a different number of rows, as they do between any two batch
sizes in the framework itself. Class labels are the same unless a score sits within that last bit
of the decision threshold. ``FERRY_MAX_BATCH_ROWS=1`` turns coalescing off for models where even
that matters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from ferry.serving.outputs import split
from ferry.serving.payload import Frame, merge

Predict = Callable[[Frame], Any]


@dataclass
class Outcome:
    output: Any = None
    error: BaseException | None = None


def group(frames: list[Frame]) -> list[list[int]]:
    """Indices of ``frames`` grouped by batch key, groups in order of first appearance."""
    groups: dict[tuple, list[int]] = {}
    for index, frame in enumerate(frames):
        groups.setdefault(frame.batch_key(), []).append(index)
    return list(groups.values())


def predict_all(predict: Predict, frames: list[Frame]) -> list[Outcome]:
    """One predict call per group of compatible frames; outcomes aligned with ``frames``."""
    outcomes: list[Outcome | None] = [None] * len(frames)
    for indices in group(frames):
        members = [frames[i] for i in indices]
        try:
            parts = split(predict(merge(members)), [f.rows for f in members])
        except Exception as error:  # noqa: BLE001 - retried alone below, or reported per request
            if len(members) == 1:
                outcomes[indices[0]] = Outcome(error=error)
                continue
            parts = None
        if parts is None:
            for index in indices:
                outcomes[index] = _alone(predict, frames[index])
        else:
            for index, part in zip(indices, parts, strict=True):
                outcomes[index] = Outcome(output=part)
    return outcomes


def _alone(predict: Predict, frame: Frame) -> Outcome:
    try:
        return Outcome(output=predict(frame))
    except Exception as error:  # noqa: BLE001 - the model's own failure, answered as 500
        return Outcome(error=error)


@dataclass
class _Pending:
    frame: Frame
    future: asyncio.Future


class Batcher:
    """Feeds queued requests to ``predict`` in a worker thread, one batch at a time."""

    def __init__(self, predict: Predict, executor: Executor, max_rows: int = 4096,
                 on_batch: Callable[[int], None] | None = None) -> None:
        self._predict = predict
        self._on_batch = on_batch
        self._executor = executor
        self._max_rows = max_rows
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def predict(self, frame: Frame) -> Any:
        """The model's output for this frame's rows; raises what the model raised."""
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(frame, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            rows = batch[0].frame.rows
            while rows < self._max_rows and not self._queue.empty():
                batch.append(self._queue.get_nowait())
                rows += batch[-1].frame.rows
            try:
                outcomes = await loop.run_in_executor(
                    self._executor, predict_all, self._predict, [p.frame for p in batch])
            except Exception as error:  # noqa: BLE001 - never let the loop die
                outcomes = [Outcome(error=error)] * len(batch)
            if self._on_batch:
                self._on_batch(rows)
            for pending, outcome in zip(batch, outcomes, strict=True):
                if pending.future.done():
                    continue
                if outcome.error is not None:
                    pending.future.set_exception(outcome.error)
                else:
                    pending.future.set_result(outcome.output)
