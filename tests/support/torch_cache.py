"""PyTorch for the tests that need it, installed once into ``~/.cache/ferry/torch/<key>``.

PyPI's Linux wheel of torch carries the CUDA libraries (about 5 GB installed), too much for every
fresh project venv, so it is not in the ``test`` extra. The folder is put on ``PYTHONPATH`` of the
processes that need torch. torch's pure-Python dependencies are pinned to the versions the project
venv already has, so that folder never shadows them with other versions; the key changes (and
the cache is rebuilt, the old folder removed) when the requirement, Python or those pins change.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from ferry_dev.netns import host_command

ROOT = Path(__file__).resolve().parents[2]
SHARED_DEPENDENCIES = ("filelock", "typing-extensions", "sympy", "mpmath", "networkx", "jinja2",
                       "markupsafe", "fsspec", "setuptools")


def requirement() -> str:
    """The ``torch`` extra of pyproject.toml: the one place the version is chosen."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["optional-dependencies"]["torch"][0]


def pins() -> list[str]:
    found = []
    for name in SHARED_DEPENDENCIES:
        try:
            found.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return found


def installer() -> list[str]:
    uv = Path(sys.executable).with_name("uv")
    if uv.exists() or (uv := shutil.which("uv")):
        return [str(uv), "pip", "install", "--quiet", "--python", sys.executable]
    return [sys.executable, "-m", "pip", "install", "--quiet"]


def ensure_torch() -> Path:
    """The folder holding torch, installing it on first use (one installer at a time)."""
    wanted = [requirement(), f"{sys.version_info.major}.{sys.version_info.minor}", *pins()]
    key = hashlib.sha256(json.dumps(wanted).encode()).hexdigest()[:12]
    cache = Path(os.environ.get("FERRY_CACHE", Path.home() / ".cache" / "ferry")) / "torch"
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / key
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / ".complete").exists():
            return target
        for stale in cache.iterdir():
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        constraints = cache / "constraints.txt"
        constraints.write_text("\n".join(wanted[2:]) + "\n")
        argv, fds = host_command([*installer(), "--target", str(target), "-c",
                                  str(constraints), wanted[0]])
        subprocess.run(argv, check=True, pass_fds=fds)
        (target / ".complete").touch()
    return target
