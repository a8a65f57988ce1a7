"""Peer servers for the serving benchmark, each in a virtualenv of its own under
``~/.cache/ferry/peers/<name>-<version>/``, so a peer's dependencies never touch the project venv.

The venv is made with ``uv venv`` on the project's Python and filled with ``uv pip install`` of the
peer's pins; a stamp file holds those pins, so the venv is reused while they hold and rebuilt when
one changes. The libraries a saved model needs to load (scikit-learn, numpy, scipy, joblib) are
pinned to the versions the project venv has, so a model pickled here unpickles there.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from ferry_dev.netns import host_command

MODEL_LIBRARIES = ("scikit-learn", "numpy", "scipy", "joblib")


@dataclass(frozen=True)
class Peer:
    name: str
    version: str
    requirements: tuple[str, ...]

    def pins(self) -> list[str]:
        """Everything the venv is built from: the peer's own pins, the model libraries at the
        project venv's versions, and the Python version."""
        shared = [f"{name}=={metadata.version(name)}" for name in MODEL_LIBRARIES]
        return [*self.requirements, *shared, f"python=={sys.version.split()[0]}"]


# MLServer 1.7.1's parallel workers call asyncio.get_event_loop() at start, which uvloop >= 0.22
# refuses outside a running loop (the worker dies and the model never loads): uvloop stays at 0.21.
MLSERVER = Peer("mlserver", "1.7.1", ("mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop==0.21.0"))


def uv() -> str:
    found = Path(sys.executable).with_name("uv")
    if found.exists() or (found := shutil.which("uv")):
        return str(found)
    raise RuntimeError("uv is needed to build the peer venvs (pip install uv)")


def cache_root() -> Path:
    return Path(os.environ.get("FERRY_CACHE", Path.home() / ".cache" / "ferry")) / "peers"


def ensure_peer(peer: Peer, root: Path | None = None) -> Path:
    """The bin folder of ``peer``'s venv, building it first when missing or its pins changed."""
    root = root or cache_root()
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{peer.name}-{peer.version}"
    stamp = target / ".ferry-pins.json"
    wanted = peer.pins()
    with open(root / f".{peer.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and json.loads(stamp.read_text()) == wanted:
            return target / "bin"
        shutil.rmtree(target, ignore_errors=True)
        python = target / "bin" / "python"
        subprocess.run([uv(), "venv", "--quiet", "--python", sys.executable, str(target)], check=True)
        argv, fds = host_command([uv(), "pip", "install", "--quiet", "--python", str(python),
                                  *wanted[:-1]])  # downloads need the machine's own network
        subprocess.run(argv, check=True, pass_fds=fds)
        stamp.write_text(json.dumps(wanted))
    return target / "bin"
