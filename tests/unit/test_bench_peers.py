"""The serving benchmark's peer venvs (tests/bench/peers.py) are built once per set of pins."""

from __future__ import annotations

import json

from bench import peers
from bench.peers import Peer, ensure_peer

FAKE_UV = """#!/bin/sh
echo "$@" >> "$(dirname "$0")/calls"
if [ "$1" = venv ]; then for last; do :; done; mkdir -p "$last/bin"; fi
"""


def test_peer_venv_is_reused_while_its_pins_hold_and_rebuilt_when_one_changes(tmp_path, monkeypatch):
    fake = tmp_path / "uv"
    fake.write_text(FAKE_UV)
    fake.chmod(0o755)
    monkeypatch.setattr(peers, "uv", lambda: str(fake))
    root = tmp_path / "peers"
    first = Peer("server", "1.0", ("server==1.0",))

    folder = ensure_peer(first, root)
    assert folder == root / "server-1.0" / "bin"
    calls = (tmp_path / "calls").read_text().splitlines()
    assert [call.split()[:2] for call in calls] == [["venv", "--quiet"], ["pip", "install"]]
    installed = calls[1].split()
    assert "server==1.0" in installed and any(pin.startswith("scikit-learn==") for pin in installed)
    assert json.loads((root / "server-1.0" / ".ferry-pins.json").read_text()) == first.pins()

    (folder / "marker").touch()
    assert ensure_peer(first, root) == folder
    assert len((tmp_path / "calls").read_text().splitlines()) == 2
    assert (folder / "marker").exists()

    ensure_peer(Peer("server", "1.0", ("server==1.0", "helper==2")), root)
    assert len((tmp_path / "calls").read_text().splitlines()) == 4
    assert not (folder / "marker").exists()
