"""Fuzzed specs against the real apiserver and the session operator (``make fuzz``: 500 a kind).

Each kind's specs (support/fuzzing.py) are created as they are. The apiserver either rejects one
with a message naming the field that was mutated, or stores it; the operator then gives every
stored object a condition within 30 s of its creation (``Accepted=True``, or ``Accepted=False``
with reason ``InvalidSpec`` naming the field when the schema let through what the model refuses,
or with the apiserver's reason when it refuses a child the spec builds) and writes no error or
traceback to its log. A ResourceQuota of zero pods keeps the Jobs and
Deployments the operator creates from starting pods, so hundreds of objects fit on the test node.
"""

from __future__ import annotations

import json
import os
import time

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from ferry.api import GROUP, KINDS, VERSION
from ferry.reconcilers.accept import validate_spec
from ferry.status import find_condition
from support.fuzzing import FuzzedSpec, fuzzed_specs
from support.metrics import sample_total
from support.waiting import wait_for

SPECS_PER_KIND = int(os.environ.get("FERRY_FUZZ_SPECS_PER_KIND", "40"))
CONDITION_WITHIN = 30.0
SHOWN = 10  # offending specs printed by a failure
ROWS: list[tuple] = []
COLUMNS = ("kind", "tried", "rejected", "naming field", "accepted", "with condition",
           "InvalidSpec", "operator exceptions")


@pytest.fixture(scope="module", autouse=True)
def report():
    """The counts of every kind, as one table at the end (shown with ``-s``)."""
    yield
    widths = [max(len(str(row[i])) for row in [COLUMNS, *ROWS]) for i in range(len(COLUMNS))]
    print()
    for row in [COLUMNS, *ROWS]:
        print("FUZZ  " + " | ".join(str(cell).rjust(width) for cell, width in zip(row, widths, strict=True)))


def create(api: client.CustomObjectsApi, namespace: str, fuzzed: FuzzedSpec):
    """The stored object, or the apiserver's refusal (its message)."""
    try:
        return api.create_namespaced_custom_object(
            GROUP, VERSION, namespace, KINDS[fuzzed.kind].plural, fuzzed.manifest(),
            field_validation="Strict"), None
    except ApiException as error:
        assert error.status in (400, 422), f"{fuzzed.describe()}: {error.status} {error.body}"
        return None, json.loads(error.body)["message"]


def expected_verdict(kind: str, stored: dict) -> str | None:
    """None for a spec the model accepts, else the problem the operator must report."""
    return validate_spec(KINDS[kind], stored)[1]


def shown(problems: list[str]) -> str:
    return f"{len(problems)}:\n" + "\n".join(problems[:SHOWN])


@pytest.mark.parametrize("kind", list(KINDS))
def test_fuzzed_specs_are_rejected_naming_the_field_or_reconciled(cluster, operator, namespace,
                                                                  kind):
    core, api = client.CoreV1Api(cluster.api_client), client.CustomObjectsApi(cluster.api_client)
    core.create_namespaced_resource_quota(namespace, {
        "metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}})
    specs = fuzzed_specs(kind, SPECS_PER_KIND)
    log_start = operator.log_size()

    rejected, unnamed, created = 0, [], {}
    for fuzzed in specs:
        stored, refusal = create(api, namespace, fuzzed)
        if stored is None:
            rejected += 1
            if not fuzzed.named_by(refusal):
                unnamed.append(f"{fuzzed.describe()}\n    -> {refusal}")
        else:
            created[fuzzed.name] = (fuzzed, stored, time.monotonic())

    plural, short = KINDS[kind].plural, KINDS[kind].short_names[0]
    late: list[str] = []
    listed: dict[str, dict] = {}

    def settled() -> bool:
        """Every object has a condition, or is past its time without one."""
        items = api.list_namespaced_custom_object(GROUP, VERSION, namespace, plural,
                                                  label_selector=f"ferry.dev/fuzz={short}")["items"]
        listed.update({item["metadata"]["name"]: item for item in items})
        waiting = [name for name, item in listed.items()
                   if not (item.get("status") or {}).get("conditions")]
        now = time.monotonic()
        late[:] = [created[name][0].describe() for name in waiting
                   if now - created[name][2] > CONDITION_WITHIN]
        return len(late) == len(waiting)

    if created:
        wait_for(settled, timeout=CONDITION_WITHIN + 30, interval=1.0,
                 message=f"conditions on every {kind}")
    if created and not late:
        wait_for(lambda: sample_total(operator.metrics(), "ferry_workqueue_depth") == 0,
                 timeout=CONDITION_WITHIN, message="the operator's work queue to drain")

    wrong_verdict, invalid = [], 0
    for name, (fuzzed, stored, _) in created.items():
        problem = expected_verdict(kind, stored)
        accepted = find_condition((listed[name].get("status") or {}).get("conditions"), "Accepted")
        invalid += problem is not None
        refused = accepted is not None and accepted["reason"] == "InvalidSpec" and \
            accepted["message"].startswith("the apiserver refused ")
        invalid += refused and problem is None
        if problem is None:  # valid, unless a child it builds is refused (the reason is the apiserver's)
            right = accepted is not None and (accepted["status"] == "True" or refused)
        else:
            right = (accepted is not None and accepted["status"] == "False"
                     and accepted["reason"] == "InvalidSpec" and fuzzed.named_by(accepted["message"]))
        if not right:
            wrong_verdict.append(f"{fuzzed.describe()}\n    -> model: {problem}; "
                                 f"operator: {accepted}")
    exceptions = operator.exceptions(log_start, namespace)

    ROWS.append((kind, len(specs), rejected, rejected - len(unnamed), len(created),
                 len(created) - len(late), invalid, len(exceptions)))
    assert len(specs) == SPECS_PER_KIND
    assert not late, f"objects without a condition {CONDITION_WITHIN:.0f}s after creation " \
                     f"{shown(late)}\noperator errors ({operator.log_path}) {shown(exceptions)}"
    assert not unnamed, f"rejections that do not name the mutated field {shown(unnamed)}"
    assert not wrong_verdict, f"Accepted conditions that disagree with the model {shown(wrong_verdict)}"
    assert not exceptions, f"operator errors ({operator.log_path}) {shown(exceptions)}"
