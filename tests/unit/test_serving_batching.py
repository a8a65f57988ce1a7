"""Exact dynamic batching: grouping, merging, splitting back, and failure isolation."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

from ferry.serving.batching import Batcher, group, predict_all
from ferry.serving.outputs import UnsplittableOutput, split
from ferry.serving.payload import Frame, model_input


def block(rows, columns=("a", "b"), params=None):
    data = np.asarray(rows)
    return Frame("block", data, columns, len(data), params)


def row_sums(frame: Frame):
    """A row-independent model: the sum of each row (a Series, like many pyfunc models)."""
    return model_input(frame).sum(axis=1)


def test_group_by_key_in_order_of_first_appearance():
    frames = [block([[1.0, 2.0]]), block([[1, 2]]), block([[3.0, 4.0]]),
              block([[1.0, 2.0]], params={"k": 1}), block([[5, 6]])]
    assert group(frames) == [[0, 2], [1, 4], [3]]


def test_batched_outputs_equal_one_call_per_request():
    calls = []

    def model(frame):
        calls.append(frame.rows)
        return row_sums(frame)

    frames = [block([[1.0, 2.0]]), block([[3.0, 4.0], [5.0, 6.0]]), block([[7, 8]])]
    outcomes = predict_all(model, frames)
    assert calls == [3, 1]  # two float requests together, the int one alone
    for frame, outcome in zip(frames, outcomes, strict=True):
        assert outcome.error is None
        assert outcome.output.tolist() == row_sums(frame).tolist()


def test_a_failing_request_fails_alone():
    def model(frame):
        data = model_input(frame)
        if (data["a"] < 0).any():
            raise ValueError("negative amount")
        return data["a"].to_numpy() * 2

    frames = [block([[1.0, 0.0]]), block([[-1.0, 0.0]]), block([[3.0, 0.0]])]
    outcomes = predict_all(model, frames)
    assert [o.output.tolist() if o.error is None else str(o.error) for o in outcomes] == [
        [2.0], "negative amount", [6.0]]


def test_a_model_that_returns_other_row_counts_is_called_per_request():
    frames = [block([[1.0, 2.0]]), block([[3.0, 4.0]])]
    outcomes = predict_all(lambda frame: [frame.rows * 10], frames)
    assert [o.output for o in outcomes] == [[10], [10]]


@pytest.mark.parametrize("output,expected", [
    (np.arange(6), [[0, 1], [2, 3, 4], [5]]),
    (pd.Series([0, 1, 2, 3, 4, 5]), [[0, 1], [2, 3, 4], [5]]),
    ([0, 1, 2, 3, 4, 5], [[0, 1], [2, 3, 4], [5]]),
])
def test_split_sequences(output, expected):
    parts = split(output, [2, 3, 1])
    assert [list(part) for part in parts] == expected


def test_split_frames_and_dicts_and_2d_arrays():
    frame = pd.DataFrame({"label": [0, 1, 1], "score": [0.1, 0.9, 0.8]})
    first, second = split(frame, [1, 2])
    assert first.to_dict("list") == {"label": [0], "score": [0.1]}
    assert second.to_dict("list") == {"label": [1, 1], "score": [0.9, 0.8]}
    parts = split({"a": np.array([1, 2, 3]), "b": np.array([4, 5, 6])}, [2, 1])
    assert parts[1]["a"].tolist() == [3] and parts[0]["b"].tolist() == [4, 5]
    assert split(np.eye(3), [1, 2])[1].shape == (2, 3)


def test_split_rejects_outputs_that_do_not_match_the_rows():
    with pytest.raises(UnsplittableOutput, match="returned 2 rows for 3"):
        split(np.arange(2), [1, 2])
    with pytest.raises(UnsplittableOutput):
        split(3.5, [1, 1])


def test_the_batcher_coalesces_requests_that_wait_for_a_busy_model():
    sizes = []

    def model(frame):
        sizes.append(frame.rows)
        return row_sums(frame).to_numpy()

    async def scenario():
        with ThreadPoolExecutor(1) as executor:
            batcher = Batcher(model, executor, max_rows=100, on_batch=lambda rows: None)
            batcher.start()
            frames = [block([[float(i), 1.0]]) for i in range(20)]
            outputs = await asyncio.gather(*(batcher.predict(f) for f in frames))
            await batcher.stop()
        return frames, outputs

    frames, outputs = asyncio.run(scenario())
    assert [o.tolist() for o in outputs] == [[i + 1.0] for i in range(20)]
    assert sum(sizes) == 20 and len(sizes) < 20  # the first alone, the rest together


def test_the_batcher_respects_max_rows_and_raises_model_errors():
    sizes = []

    def model(frame):
        sizes.append(frame.rows)
        if frame.rows == 0:
            raise AssertionError("never called with no rows")
        if model_input(frame)["a"].iloc[0] == 99:
            raise RuntimeError("boom")
        return np.zeros(frame.rows)

    async def scenario():
        with ThreadPoolExecutor(1) as executor:
            batcher = Batcher(model, executor, max_rows=4)
            batcher.start()
            results = await asyncio.gather(*(batcher.predict(block([[1.0, 1.0]] * 3)) for _ in range(4)),
                                           batcher.predict(block([[99.0, 1.0]])), return_exceptions=True)
            await batcher.stop()
        return results

    results = asyncio.run(scenario())
    assert all(len(r) == 3 for r in results[:4])
    assert isinstance(results[4], RuntimeError) and str(results[4]) == "boom"
    assert max(sizes) <= 3 + 3  # a batch stops taking requests once it holds max_rows


def test_max_rows_of_one_turns_coalescing_off():
    sizes = []

    def model(frame):
        sizes.append(frame.rows)
        return np.zeros(frame.rows)

    async def scenario():
        with ThreadPoolExecutor(1) as executor:
            batcher = Batcher(model, executor, max_rows=1)
            batcher.start()
            await asyncio.gather(*(batcher.predict(block([[1.0, 1.0]])) for _ in range(10)))
            await batcher.stop()

    asyncio.run(scenario())
    assert sizes == [1] * 10
