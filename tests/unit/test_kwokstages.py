"""The KWOK stages of the local fleet: Job pods run for a while, kwok's other defaults stay."""

from __future__ import annotations

import pytest

from ferry_dev.controlplane import binaries_dir, kwokctl_config
from ferry_dev.kwokstages import (
    DEFAULT_RUN_SECONDS, KWOK_DEFAULT_STAGES, RUN_SECONDS_ANNOTATION, RUN_SECONDS_ENV, kwok_stages,
    pod_complete_stage)


def test_job_pods_complete_after_the_annotated_or_default_run_time_from_their_start():
    stage = pod_complete_stage(20)
    assert stage["kind"] == "Stage" and stage["metadata"]["name"] == "pod-complete"
    selector = {e["key"]: e for e in stage["spec"]["selector"]["matchExpressions"]}
    assert selector[".status.phase"]["values"] == ["Running"]
    assert selector[".metadata.ownerReferences.[].kind"]["values"] == ["Job"]
    assert selector[".metadata.deletionTimestamp"]["operator"] == "DoesNotExist"
    delay = stage["spec"]["delay"]
    assert delay["durationMilliseconds"] == 20_000
    expression = delay["durationFrom"]["jq"]["expression"]
    assert f'.metadata.annotations["{RUN_SECONDS_ANNOTATION}"] // "20"' in expression
    assert expression.startswith("(.status.startTime | fromdateiso8601) +")
    assert expression.endswith("| todateiso8601"), "a moment, so an update does not restart it"
    template = stage["spec"]["next"]["statusTemplate"]
    assert "phase: Succeeded" in template and "exitCode: 0" in template


def test_the_stage_set_is_kwoks_defaults_with_the_waiting_pod_complete(kwok_bins):
    stages = kwok_stages(kwok_bins, default_seconds=7)
    names = [s["metadata"]["name"] for s in stages]
    assert names == ["node-initialize", "node-heartbeat-with-lease", "pod-ready", "pod-delete",
                     "pod-complete"]
    assert stages[-1]["spec"]["delay"]["durationMilliseconds"] == 7000


def test_the_default_run_time_comes_from_the_environment_at_cluster_creation(kwok_bins,
                                                                              monkeypatch):
    monkeypatch.delenv(RUN_SECONDS_ENV, raising=False)
    assert kwok_stages(kwok_bins)[-1]["spec"]["delay"]["durationMilliseconds"] == \
        DEFAULT_RUN_SECONDS * 1000
    monkeypatch.setenv(RUN_SECONDS_ENV, "0")
    assert kwok_stages(kwok_bins)[-1]["spec"]["delay"]["durationMilliseconds"] == 0
    monkeypatch.setenv(RUN_SECONDS_ENV, "-1")
    with pytest.raises(ValueError):
        kwok_stages(kwok_bins)


def test_without_kwoks_stage_files_kwokctl_keeps_its_own_defaults(tmp_path, caplog):
    """kwokctl drops all its defaults for any stage given: half a set would leave the nodes
    NotReady, so none at all (instant pods, as before) and a warning."""
    assert kwok_stages(tmp_path) == []
    assert "complete at once" in caplog.text
    assert [d["kind"] for d in kwokctl_config(tmp_path, "v1.36.3")] == ["KwokctlConfiguration"]


def test_kwokctl_is_given_the_stages_after_its_configuration(kwok_bins):
    documents = kwokctl_config(kwok_bins, "v1.36.3")
    assert documents[0]["kind"] == "KwokctlConfiguration"
    assert [d["kind"] for d in documents[1:]] == ["Stage"] * 5
    assert documents[-1]["spec"]["delay"]["durationFrom"]


def test_the_default_stage_files_are_where_the_build_copies_them():
    stages = binaries_dir() / "stages"
    assert stages.is_dir(), f"{stages} is missing: build the control plane first (make setup)"
    for name in KWOK_DEFAULT_STAGES:
        assert (stages / name).is_file(), name
