"""Why a pod program failed, in words the operator can read.

A failed Job tells the operator only that its pods failed. Each of Ferry's pod programs (feature
job, drift and quality monitors) therefore writes the cause of a failure it recognises as its
container's termination message, ``<Reason>: <detail>``; the kubelet copies the file into the
pod's status, and the reconciler makes ``<Reason>`` its condition's reason. Today the one cause
recognised is S3 refusing the credentials, which no retry fixes and which a user must see as such
(the Secret is wrong), not as a generic failed run.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

# The kubelet's default terminationMessagePath; it reads at most 4 KiB of it.
TERMINATION_LOG = Path("/dev/termination-log")
MESSAGE_LIMIT = 4096
OBJECT_STORE_ACCESS_DENIED = "ObjectStoreAccessDenied"
# What S3 (SeaweedFS, AWS, MinIO) answers for an unknown key, a wrong secret or a missing grant.
ACCESS_DENIED_CODES = frozenset({"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                                 "InvalidToken", "ExpiredToken"})
KNOWN_REASONS = frozenset({OBJECT_STORE_ACCESS_DENIED})
# The exit code of a named failure: the Jobs' podFailurePolicy fails them at once on it, since
# no retry fixes a wrong Secret.
EXIT_CODE = 4


def cause(error: BaseException | None) -> str | None:
    """``<Reason>: <detail>`` for a failure the operator should name (the error or one it was
    raised from), else None."""
    from botocore.exceptions import ClientError, NoCredentialsError

    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, NoCredentialsError):
            return f"{OBJECT_STORE_ACCESS_DENIED}: the pod has no S3 credentials (objectStore.secretRef)"
        if isinstance(error, ClientError):
            code = (error.response.get("Error") or {}).get("Code", "")
            if code in ACCESS_DENIED_CODES:
                return (f"{OBJECT_STORE_ACCESS_DENIED}: S3 refused the credentials of "
                        f"objectStore.secretRef ({code}): {error}")
        error = error.__cause__ or error.__context__
    return None


def run(program: Callable[[], int], termination_log: Path = TERMINATION_LOG) -> int:
    """``program()``; a recognised failure is written to the termination log and exits
    ``EXIT_CODE``, any other exception propagates (its traceback is the pod's log)."""
    try:
        return program()
    except Exception as error:  # noqa: BLE001 - re-raised unless recognised
        message = cause(error)
        if message is None:
            raise
        print(message, file=sys.stderr)
        try:
            termination_log.write_text(message[:MESSAGE_LIMIT])
        except OSError:
            pass  # not in a pod (a local run): the message above is what there is
        return EXIT_CODE


def reported(message: str | None) -> tuple[str, str] | None:
    """(reason, message) from a termination message a pod program wrote, or None."""
    reason, _, detail = (message or "").strip().partition(": ")
    return (reason, detail) if reason in KNOWN_REASONS else None
