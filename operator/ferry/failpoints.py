"""Named failpoints: kill the operator at an exact point, to prove crash-safety for real.

``FERRY_FAILPOINTS=modelversion.registered`` (comma-separated names) makes the process exit at once
with status 137, like a SIGKILL, when it reaches that point. Tests use it to kill the operator
between an external side effect (an MLflow registration) and the status write that records it, the
one window a SIGKILL sent from outside can only hit by luck. Unset in production: a no-op.
"""

from __future__ import annotations

import os
import sys

KILLED = 137


def enabled(name: str) -> bool:
    return name in {n.strip() for n in os.environ.get("FERRY_FAILPOINTS", "").split(",")}


def failpoint(name: str) -> None:
    if enabled(name):
        print(f"failpoint {name}: exiting", file=sys.stderr, flush=True)
        os._exit(KILLED)
