"""Fixtures of the unit tier."""

from __future__ import annotations

import pytest
import yaml

from ferry_dev.kwokstages import KWOK_DEFAULT_STAGES


@pytest.fixture
def kwok_bins(tmp_path):
    """A binaries folder with kwok's default stage files, as build-controlplane.sh leaves it."""
    for name in KWOK_DEFAULT_STAGES:
        path = tmp_path / "stages" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump({
            "apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Stage",
            "metadata": {"name": path.stem},
            "spec": {"resourceRef": {"apiGroup": "v1", "kind": path.parts[-3].title()}}}))
    return tmp_path
