"""docs/: the generated field reference is fresh and complete; the pages link to real files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ferry.generate import packaging
from ferry.api import KINDS
from ferry.generate.crds import crd
from ferry.generate.docs import reference_markdown

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def leaf_paths(schema: dict, path: str) -> set[str]:
    node = schema.get("items", schema) if schema.get("type") == "array" else schema
    suffix = "[]" if node is not schema else ""
    paths = {path}
    for name, sub in node.get("properties", {}).items():
        paths |= leaf_paths(sub, f"{path}{suffix}.{name}")
    return paths


def test_reference_is_fresh():
    assert (DOCS / "reference.md").read_text() == reference_markdown(), "run `ferry crds`"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_reference_lists_every_field_of_the_kind(kind):
    text = reference_markdown()
    schema = crd(KINDS[kind])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for part in ("spec", "status"):
        for path in leaf_paths(schema["properties"][part], part) - {part}:
            assert f"| `{path}` |" in text, f"{kind}: {path} missing"


def test_reference_shows_validation_rules():
    text = reference_markdown()
    assert "exactly one of transform.container, transform.sql or transform.pointInTime must be set" in text
    assert 'default `"Forbid"`' in text


def test_every_derived_file_is_fresh():
    """The same check as `ferry crds --check` (part of `make test`)."""
    assert packaging.check(ROOT) == []


@pytest.mark.parametrize("page", ["README.md", "concepts.md", "tutorial.md", "install.md",
                                  "architecture.md"])
def test_pages_link_to_files_that_exist(page):
    text = (DOCS / page).read_text()
    for target in re.findall(r"\]\(([^)#:]+)\)", text):
        assert (DOCS / target).exists(), f"{page} links to missing {target}"
    for path in re.findall(r"`((?:manifests|charts|operator|crds)/[^`*<> ]+)`", text):
        assert (ROOT / path.rstrip("/")).exists(), f"{page} names missing {path}"


def test_tutorial_follows_the_fraud_example():
    text = (DOCS / "tutorial.md").read_text()
    assert text.index("ferry-dev up") < text.index("features-v2.yaml") < text.index("training.yaml") \
        < text.index("serving.yaml") < text.index("Retrain on drift")
    assert "status.drift" in text and "status.retrain" in text
