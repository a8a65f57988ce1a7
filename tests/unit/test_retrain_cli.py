"""``ferry retrain infsvc/NAME``: the spec patch it writes (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from ferry.api.inferenceservice import OnDemandTrigger
from ferry.cli import build_parser, retrain_patch

NOW = datetime(2026, 11, 22, 12, 0, 5, tzinfo=UTC)


def test_the_patch_sets_a_fresh_on_demand_id_and_the_reason():
    patch = retrain_patch("labels backfilled", NOW, "a1b2c3")
    assert patch == {"spec": {"retrainPolicy": {"triggers": {"onDemand": {
        "id": "20261122T120005Z-a1b2c3", "reason": "labels backfilled"}}}}}
    OnDemandTrigger.model_validate(patch["spec"]["retrainPolicy"]["triggers"]["onDemand"])


def test_without_a_reason_only_the_id_is_written():
    assert retrain_patch(None, NOW, "ffffff")["spec"]["retrainPolicy"]["triggers"] == {
        "onDemand": {"id": "20261122T120005Z-ffffff"}}


def test_the_subcommand_parses():
    args = build_parser().parse_args(["retrain", "infsvc/fraud", "--reason", "why", "-n", "team"])
    assert (args.command, args.target, args.reason, args.namespace) == (
        "retrain", "infsvc/fraud", "why", "team")
