"""Bad manifests and the CEL rules of the generated CRDs, for the apiserver validation tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"
BAD_MANIFESTS = ROOT / "tests" / "integration" / "bad_manifests"


@dataclass(frozen=True)
class BadManifest:
    """A file of ``bad_manifests``: setup documents (e.g. the object an immutability check changes)
    then the one the apiserver must reject, naming ``field`` with ``message`` (its header)."""

    path: Path
    field: str
    message: str
    documents: tuple[dict, ...]

    @property
    def kind(self) -> str:
        return self.documents[-1]["kind"]

    @classmethod
    def load(cls, path: Path) -> BadManifest:
        header = {}
        for line in path.read_text().splitlines():
            if line.startswith("# ") and ":" in line:
                key, _, value = line[2:].partition(":")
                header[key.strip()] = value.strip()
        documents = tuple(d for d in yaml.safe_load_all(path.read_text()) if d)
        return cls(path, header["expect"], header["message"], documents)


def bad_manifests() -> list[BadManifest]:
    return [BadManifest.load(path) for path in sorted(BAD_MANIFESTS.glob("*.yaml"))]


@dataclass(frozen=True)
class CelRule:
    """One ``x-kubernetes-validations`` entry; ``field`` is where the apiserver reports it, with
    list items as ``[0]`` (the first item is the one a manifest breaks)."""

    kind: str
    field: str
    message: str
    rule: str

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.field}:{self.message}"


def cel_rules(crd_dir: Path = CRDS) -> list[CelRule]:
    rules = []

    def walk(kind: str, schema: dict, field: str) -> None:
        for validation in schema.get("x-kubernetes-validations", []):
            rules.append(CelRule(kind, field, validation["message"], validation["rule"]))
        for name, child in schema.get("properties", {}).items():
            walk(kind, child, f"{field}.{name}" if field else name)
        if "items" in schema:
            walk(kind, schema["items"], f"{field}[0]")
        if isinstance(schema.get("additionalProperties"), dict):
            walk(kind, schema["additionalProperties"], f"{field}[*]")

    for path in sorted(crd_dir.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        if crd.get("kind") != "CustomResourceDefinition":
            continue
        for version in crd["spec"]["versions"]:
            walk(crd["spec"]["names"]["kind"], version["schema"]["openAPIV3Schema"], "")
    return rules


def rejection(cluster, namespace: str, manifest: BadManifest) -> str:
    """Create the setup documents, apply the bad one; the apiserver's error (fails if accepted)."""
    *setup, bad = manifest.documents
    for document in setup:
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(document))
    result = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(bad),
                             check=False)
    assert result.returncode != 0, f"{manifest.path.name} was accepted"
    return result.stderr
