"""Every example under manifests/examples/ passes a server-side dry-run, applies, and is accepted by
the operator (``Accepted=True`` for the current generation). Each directory goes into its own
namespace, since the fraud scenario reuses the names of the single-kind examples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ferry.api import KINDS
from support.cluster import create_namespace
from support.objects import reconciled
from support.waiting import wait_for

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"
DIRECTORIES = sorted({path.parent for path in EXAMPLES.rglob("*.yaml")})


def documents(directory: Path) -> list[dict]:
    return [doc for path in sorted(directory.glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_the_fraud_scenario_is_complete():
    objects = documents(EXAMPLES / "fraud")
    kinds = [obj["kind"] for obj in objects]
    assert kinds.count("FeaturePipeline") == 2 and {"TrainingRun", "InferenceService"} <= set(kinds)
    by_kind = {obj["kind"]: obj for obj in objects}
    versions = {obj["spec"]["version"] for obj in objects if obj["kind"] == "FeaturePipeline"}
    assert versions == {"v1", "v2"}
    register = by_kind["TrainingRun"]["spec"]["register"]
    assert register["gates"]["metrics"] and register["approval"]["required"]
    serving = by_kind["InferenceService"]["spec"]
    assert serving["strategy"]["canary"]["analysis"]
    retrain = serving["monitoring"]["drift"]["onDrift"]["retrain"]["template"]
    KINDS["TrainingRun"].spec_model.model_validate(retrain)  # the retrain template is a real spec


@pytest.mark.parametrize("directory", DIRECTORIES, ids=lambda d: d.name)
def test_examples_apply_and_are_accepted(cluster, operator, directory):
    namespace = create_namespace(cluster, "ft")  # the session operator watches ft-*
    objects = documents(directory)
    assert objects and all(obj["kind"] in KINDS for obj in objects)
    dry_run = cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(directory),
                              check=False)
    assert dry_run.returncode == 0, dry_run.stderr
    cluster.kubectl("apply", "-n", namespace, "-f", str(directory))

    def accepted() -> bool:
        items = json.loads(cluster.kubectl("get", "mlops", "-n", namespace, "-o", "json").stdout)["items"]
        return len(items) == len(objects) and all(reconciled(item) for item in items)

    wait_for(accepted, timeout=90, message=f"every object in {directory.name} to be Accepted")
    cluster.kubectl("delete", "namespace", namespace, "--wait=false")
