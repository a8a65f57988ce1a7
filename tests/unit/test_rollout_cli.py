"""``ferry promote|abort|pause|resume``: the spec patches they write (pure)."""

from __future__ import annotations

import pytest

from ferry.cli import build_parser
from ferry.rollout_cli import rollout_patch


def test_promote_and_abort_name_the_current_candidate():
    status = {"stableVersion": "fraud-6", "canaryVersion": "fraud-7"}
    assert rollout_patch("promote", status) == {"promote": "fraud-7"}
    assert rollout_patch("abort", status) == {"abort": "fraud-7"}


def test_nothing_to_promote_without_a_candidate():
    assert rollout_patch("promote", {"stableVersion": "fraud-6"}) is None
    assert rollout_patch("abort", {}) is None


def test_pause_and_resume_toggle_the_spec_field():
    assert rollout_patch("pause", {}) == {"paused": True}
    assert rollout_patch("resume", {"canaryVersion": "x"}) == {"paused": False}


@pytest.mark.parametrize("action", ["promote", "abort", "pause", "resume"])
def test_subcommands_parse(action):
    args = build_parser().parse_args([action, "infsvc/fraud", "-n", "team"])
    assert (args.command, args.target, args.namespace) == (action, "infsvc/fraud", "team")
