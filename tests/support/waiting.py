"""Wait on conditions with a timeout instead of sleeping and hoping."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class TerminalState(AssertionError):
    """Raised by a predicate when what it waits for can no longer happen: fails at once. (Any
    AssertionError a predicate raises does the same: an assert in a predicate states what must
    never be seen, such as a Failed run or a dead server.)"""


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.25,
             message: str = "condition") -> T:
    """Return the first truthy result of ``predicate``; fail with ``message`` after ``timeout``.

    Exceptions inside the predicate count as "not yet" (the object may not exist yet) and the last
    one is reported on timeout; an AssertionError (:class:`TerminalState` among them) fails at once
    instead of waiting out the timeout.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except AssertionError as error:
            raise TerminalState(f"while waiting for {message}: {error}") from error
        except Exception as error:  # noqa: BLE001 - reported below
            last_error = error
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {message}{detail}")
        time.sleep(interval)
