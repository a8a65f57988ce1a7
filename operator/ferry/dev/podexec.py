"""Start one container process in a private mount namespace (``python -m ferry.dev.podexec SPEC``).

SPEC is a JSON file: ``{"argv": [...], "env": {...}, "workingDir": ..., "mounts": [{"source",
"target", "readOnly"}]}``. The process unshares its mount namespace, makes every mount private (so
nothing leaks back to the host), bind-mounts the pod's prepared volume directories at their
``mountPath`` (and the pod's own ``/etc/resolv.conf``, when the runner gives it one) and then execs
the container command: the volumes are visible to that process only.
Needs root (CAP_SYS_ADMIN), like a kubelet.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from pathlib import Path

CLONE_NEWNS = 0x00020000
MS_RDONLY = 0x1
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def _mount(source: str | None, target: str, flags: int) -> None:
    _check(_libc.mount(source.encode() if source else None, target.encode(), None, flags, None),
           f"mount {source} -> {target}")


def bind(source: str, target: str, read_only: bool, is_dir: bool) -> None:
    dst = Path(target)
    if is_dir:
        dst.mkdir(parents=True, exist_ok=True)
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():  # the mount point only: an existing host file is left untouched
            dst.touch()
    _mount(source, str(dst), MS_BIND | MS_REC)
    if read_only:
        _mount(None, str(dst), MS_BIND | MS_REMOUNT | MS_RDONLY)


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    if spec.get("mounts"):
        _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        _mount(None, "/", MS_REC | MS_PRIVATE)
        # Hold every source open before mounting anything: a volume mounted over a parent of the
        # runner's state directory (an emptyDir at /tmp) would hide the sources of later mounts.
        sources = [(os.open(m["source"], os.O_PATH), Path(m["source"]).is_dir()) for m in spec["mounts"]]
        for (fd, is_dir), mount in zip(sources, spec["mounts"], strict=True):
            bind(f"/proc/self/fd/{fd}", mount["target"], mount.get("readOnly", False), is_dir)
            os.close(fd)
    if spec.get("workingDir"):
        Path(spec["workingDir"]).mkdir(parents=True, exist_ok=True)
        os.chdir(spec["workingDir"])
    argv = spec["argv"]
    try:
        os.execvpe(argv[0], argv, spec["env"])
    except FileNotFoundError:
        print(f"ferry local runner: executable {argv[0]!r} not found on this host "
              "(images are ignored; the command runs on the host)", file=sys.stderr)
        sys.exit(127)


if __name__ == "__main__":
    main(sys.argv[1])
