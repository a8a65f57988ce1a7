"""Checkpoints under one folder (``FERRY_CHECKPOINT_URI``): written so a reader never sees half of one.

Layout::

    step-000000120/state.bin    the learner's state (written first)
    step-000000120/meta.json    step, epoch, batch, fingerprint (written second: marks it complete)
    latest.json                 a copy of the newest meta.json (written last: the commit point)

Resuming reads ``latest.json``; only when it is missing, unreadable or names a checkpoint of
another configuration does it fall back to the newest *complete* checkpoint in the listing.
A checkpoint is resumed only when its ``fingerprint`` (a hash of the training configuration, the
data and the TrainingRun's uid) matches, so a changed spec or a new run under the same prefix
starts from scratch instead of loading an incompatible state.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass

from ferry.examples.storage import Folder

POINTER = "latest.json"
STATE = "state.bin"
META = "meta.json"
_STEP_DIR = re.compile(r"^step-(\d+)/" + re.escape(META) + "$")


@dataclass(frozen=True)
class Position:
    """Where training stands: ``batch`` is the next batch of ``epoch`` (0 = epoch not started)."""

    step: int = 0
    epoch: int = 0
    batch: int = 0


@dataclass(frozen=True)
class Meta:
    step: int
    epoch: int
    batch: int
    fingerprint: str
    path: str

    @property
    def position(self) -> Position:
        return Position(self.step, self.epoch, self.batch)


def fingerprint(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def step_dir(step: int) -> str:
    return f"step-{step:09d}/"


def complete_steps(names: list[str]) -> list[int]:
    """Steps whose ``meta.json`` exists, newest first."""
    return sorted((int(m.group(1)) for n in names if (m := _STEP_DIR.match(n))), reverse=True)


def parse_meta(data: bytes | None) -> Meta | None:
    if not data:
        return None
    try:
        raw = json.loads(data)
        return Meta(int(raw["step"]), int(raw["epoch"]), int(raw["batch"]),
                    str(raw["fingerprint"]), str(raw["path"]))
    except (ValueError, KeyError, TypeError):
        return None


def choose(pointer: Meta | None, metas: list[Meta], wanted: str) -> Meta | None:
    """The checkpoint to resume: the pointer's when it is usable, else the newest complete one."""
    complete = {m.step for m in metas}
    if pointer and pointer.fingerprint == wanted and pointer.step in complete:
        return pointer
    usable = [m for m in metas if m.fingerprint == wanted]
    return max(usable, key=lambda m: m.step, default=None)


def prunable(names: list[str], keep: int, current: int) -> list[str]:
    """Blobs of checkpoints older than the newest ``keep`` complete ones (never ``current``), and
    of incomplete ones older than ``current`` (left by a writer that died)."""
    kept = set(complete_steps(names)[:keep]) | {current}
    stale = []
    for name in names:
        match = re.match(r"^step-(\d+)/", name)
        if match and int(match.group(1)) not in kept and int(match.group(1)) < current:
            stale.append(name)
    return stale


class Checkpoints:
    def __init__(self, uri: str, wanted: str, keep: int = 2) -> None:
        self.folder, self.wanted, self.keep = Folder(uri), wanted, keep
        self.uri = self.folder.uri
        self.saved_step: int | None = None

    def save(self, position: Position, state: bytes) -> Meta:
        path = step_dir(position.step)
        meta = Meta(position.step, position.epoch, position.batch, self.wanted, path)
        body = json.dumps(asdict(meta), indent=2, sort_keys=True).encode()
        self.folder.put(path + STATE, state)
        self.folder.put(path + META, body)
        self.folder.put(POINTER, body)
        self.saved_step = position.step
        names = self.folder.names()
        self.folder.delete(prunable(names, self.keep, position.step))
        return meta

    def latest(self) -> tuple[Meta, bytes] | None:
        """The newest usable checkpoint and its state, or None to start from scratch."""
        pointer = parse_meta(self.folder.get(POINTER))
        if pointer and pointer.fingerprint == self.wanted:
            state = self.folder.get(pointer.path + STATE)
            if state is not None and self.folder.get(pointer.path + META) is not None:
                return pointer, state
        names = self.folder.names()
        metas = [m for step in complete_steps(names)
                 if (m := parse_meta(self.folder.get(step_dir(step) + META)))]
        chosen = choose(pointer, metas, self.wanted)
        if chosen is None:
            return None
        state = self.folder.get(chosen.path + STATE)
        return (chosen, state) if state is not None else None
