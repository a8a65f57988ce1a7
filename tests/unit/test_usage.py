"""Who serves which ModelVersion: what deletion protection of ModelVersions and FeaturePipelines
relies on."""

from ferry.reconcilers.usage import in_use_condition, served_model_versions, users


def service(name: str, spec_model: dict | None = None, **status) -> dict:
    return {"metadata": {"name": name}, "spec": {"model": spec_model or {}}, "status": status}


def model_version(name: str, features: str | None) -> dict:
    return {"metadata": {"name": name}, "spec": {"features": features}}


def test_pinned_stable_and_canary_versions_are_served():
    pinned = service("a", {"modelVersion": "mv-1"})
    assert served_model_versions(pinned) == {"mv-1"}
    rolling = service("b", {"modelName": "fraud", "policy": "latestApproved"},
                      stableVersion="mv-1", canaryVersion="mv-2")
    assert served_model_versions(rolling) == {"mv-1", "mv-2"}
    assert served_model_versions(service("c")) == set()


def test_the_version_kept_warm_for_rollback_is_served_too():
    promoted = service("a", {"modelVersion": "mv-2"}, stableVersion="mv-2", rollout={
        "stable": {"modelVersion": "mv-2"}, "previous": {"modelVersion": "mv-1"},
        "postPromotionUntil": "2026-11-23T10:00:00Z"})
    assert served_model_versions(promoted) == {"mv-1", "mv-2"}
    preview = service("b", {"modelVersion": "mv-3"}, stableVersion="mv-2", rollout={
        "stable": {"modelVersion": "mv-2"}, "candidate": {"modelVersion": "mv-3"}})
    assert served_model_versions(preview) == {"mv-2", "mv-3"}


def test_a_pipeline_is_used_through_every_served_version_trained_on_it():
    versions = [model_version("mv-1", "tx"), model_version("mv-2", "tx"),
                model_version("mv-3", "other")]
    services = [service("warm", {"modelVersion": "mv-2"}, rollout={
                    "previous": {"modelVersion": "mv-1"}}),
                service("elsewhere", {"modelVersion": "mv-3"})]
    assert users("tx", versions, services) == ["InferenceService/warm (ModelVersion/mv-1)",
                                               "InferenceService/warm (ModelVersion/mv-2)"]
    assert users("unused", versions, services) == []


def test_in_use_condition_says_who_holds_a_deletion():
    assert in_use_condition([], 3)["status"] == "False"
    held = in_use_condition(["InferenceService/a (ModelVersion/mv-1)"], 3, deleting=True)
    assert (held["status"], held["reason"]) == ("True", "DeletionBlocked")
    assert held["message"].startswith("Deletion is held: used by InferenceService/a")
