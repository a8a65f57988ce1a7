"""The image's content key: what changes it, what does not, and the .dockerignore rules behind it.
Pure and fast: no base image, no buildah."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ferry_dev import image

ROOT = Path(__file__).resolve().parents[2]
DOCKERIGNORE = (ROOT / ".dockerignore").read_text()
DOCKERFILE = (ROOT / "Dockerfile").read_text()


@pytest.fixture
def repo(tmp_path) -> Path:
    """A small checkout with the real Dockerfile and .dockerignore."""
    files = {
        "Dockerfile": DOCKERFILE,
        ".dockerignore": DOCKERIGNORE,
        "pyproject.toml": "[project]\nname = 'ferry-operator'\n",
        "README.md": "# Ferry\n",
        "Makefile": "all:\n",
        "operator/ferry/__init__.py": "",
        "operator/ferry/cli.py": "def main():\n    return 0\n",
        "operator/ferry/examples/data.csv": "a,b\n",
        "dev/ferry_dev/pins.env": "KUBE_VERSION=v1.31.0\n",
        "tests/unit/test_x.py": "def test_x():\n    pass\n",
        "docs/index.md": "docs\n",
    }
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    return tmp_path


def key(root: Path) -> str:
    return image.read_sources(root).key


def test_the_context_is_what_the_dockerfile_copies_after_dockerignore(repo):
    (repo / "operator/ferry/__pycache__").mkdir()
    (repo / "operator/ferry/__pycache__/cli.cpython-311.pyc").write_bytes(b"\0")
    assert image.copy_sources(DOCKERFILE) == ["pyproject.toml", "README.md", "operator"]
    assert sorted(image.context_files(repo)) == [
        "README.md", "operator/ferry/__init__.py", "operator/ferry/cli.py",
        "operator/ferry/examples/data.csv", "pyproject.toml"]


def test_the_key_is_stable(repo):
    assert key(repo) == key(repo)
    assert len(key(repo)) == 64


@pytest.mark.parametrize("path", ["operator/ferry/cli.py", "operator/ferry/new_module.py",
                                  "pyproject.toml", "README.md", "Dockerfile", ".dockerignore"])
def test_a_changed_context_file_changes_the_key(repo, path):
    before = key(repo)
    target = repo / path
    target.write_text((target.read_text() if target.exists() else "") + "\n# changed\n")
    assert key(repo) != before


def test_a_removed_context_file_and_an_executable_bit_change_the_key(repo):
    before = key(repo)
    (repo / "operator/ferry/examples/data.csv").chmod(0o755)
    chmod = key(repo)
    (repo / "operator/ferry/examples/data.csv").unlink()
    assert len({before, chmod, key(repo)}) == 3


@pytest.mark.parametrize("path", ["tests/unit/test_x.py", "tests/unit/test_new.py", "docs/index.md",
                                  "operator/ferry/__pycache__/cli.cpython-311.pyc",
                                  "dev/ferry_dev/pins.env", ".venv/bin/python",
                                  "Makefile", "notes.txt"])
def test_an_ignored_or_uncopied_file_does_not_change_the_key(repo, path):
    before = key(repo)
    target = repo / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("anything\n")
    assert key(repo) == before


def test_the_base_key_is_part_of_the_image_key(repo):
    sources = image.read_sources(repo)
    other = image.image_key(sources.files, sources.dockerfile, sources.dockerignore,
                            image.base_key(suite="trixie"))
    assert other != sources.key


def test_the_base_key_follows_the_package_list_and_suite():
    assert image.base_key() == image.base_key(reversed(image.BASE_PACKAGES))
    assert image.base_key() != image.base_key([*image.BASE_PACKAGES, "curl"])
    assert image.base_key() != image.base_key(suite="trixie")
    assert {"python3", "python3-venv", "python-is-python3", "ca-certificates"} <= set(
        image.BASE_PACKAGES)


def test_references_and_archives_are_named_by_the_key(monkeypatch, tmp_path):
    monkeypatch.setenv("FERRY_CACHE", str(tmp_path))
    archive = image.archive_for("ab" * 32)
    assert archive.reference == "ghcr.io/ferry-dev/ferry:dev-abababababab"
    assert archive.path == tmp_path / "images" / "ferry-abababababababab.oci.tar"


@pytest.mark.parametrize("path, ignored", [
    (".git", True), (".git/config", True), ("tests/unit/test_x.py", True),
    ("operator/ferry/__pycache__/x.pyc", True), ("__pycache__", True), ("operator/ferry/a.pyc", True),
    ("operator/ferry/cli.py", False), ("pyproject.toml", False), ("testsuite.py", False),
    ("operator/tests/x.py", False),
])
def test_dockerignore_rules(path, ignored):
    assert image.is_ignored(path, image.parse_dockerignore(DOCKERIGNORE)) is ignored


def test_dockerignore_exceptions_and_wildcards():
    rules = image.parse_dockerignore("# comment\n*.md\n!README.md\n/build/\ndocs/**/*.png\n")
    assert image.is_ignored("CHANGES.md", rules) and not image.is_ignored("README.md", rules)
    assert not image.is_ignored("operator/x.md", rules)  # * does not cross a /
    assert image.is_ignored("build/lib/x.py", rules)
    assert image.is_ignored("docs/a/b/c.png", rules) and image.is_ignored("docs/c.png", rules)
    assert not image.is_ignored("docs/c.svg", rules)


def test_the_image_config_check():
    good = {"config": {"User": "65532:65532", "Entrypoint": ["ferry"], "Cmd": ["operator"],
                       "Env": ["PATH=/opt/ferry/bin:/usr/bin"]}}
    image.check_image_config(good)
    for change in ({"User": "0"}, {"Entrypoint": ["sh"]}, {"Env": ["PATH=/usr/bin"]}):
        bad = json.loads(json.dumps(good))
        bad["config"].update(change)
        with pytest.raises(RuntimeError, match="config is wrong"):
            image.check_image_config(bad)


def test_a_missing_tool_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(RuntimeError, match="buildah not found"):
        image.require("buildah")


def test_a_failing_command_reports_itself_and_its_stderr():
    with pytest.raises(RuntimeError, match=r"(?s)sh -c .*exit 3.*boom"):
        image.run(["sh", "-c", "echo boom >&2; exit 3"])


def test_the_build_output_must_show_the_ferry_help_step():
    image._check_help_step("[1/2] STEP 6/7: RUN /opt/ferry/bin/pip install --no-deps . "
                           "&& /opt/ferry/bin/ferry --help > /dev/null\n--> Using cache 0123\n")
    image._check_help_step("STEP 2/2: RUN /opt/ferry/bin/ferry --help\n")
    with pytest.raises(RuntimeError, match="ferry --help"):
        image._check_help_step("[1/2] STEP 6/7: RUN /opt/ferry/bin/pip install --no-deps .\n"
                               "# /opt/ferry/bin/ferry --help\n")


def _blob(layout: Path, document: dict) -> dict:
    import hashlib

    data = json.dumps(document).encode()
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def test_the_archive_names_the_image_for_containerd(tmp_path):
    import tarfile

    layout = tmp_path / "oci"
    layout.mkdir()
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    config = _blob(layout, {"config": {"User": "65532:65532", "Entrypoint": ["ferry"],
                                       "Env": ["PATH=/opt/ferry/bin:/usr/bin"]}})
    manifest = _blob(layout, {"schemaVersion": 2, "config": config, "layers": []})
    reference = "ghcr.io/ferry-dev/ferry:dev-0123456789ab"
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {**manifest, "annotations": {"org.opencontainers.image.ref.name": reference}}]}))
    assert image._finish_layout(layout, reference) == manifest["digest"]
    image._write_archive(layout, tmp_path / "image.tar")
    with tarfile.open(tmp_path / "image.tar") as archive:
        names = archive.getnames()
        index = json.load(archive.extractfile("index.json"))
    assert names[:4] == ["blobs", "blobs/sha256", "oci-layout", "index.json"]
    assert len(names) == 6
    annotations = index["manifests"][0]["annotations"]
    assert annotations["io.containerd.image.name"] == reference
    assert annotations["org.opencontainers.image.ref.name"] == reference


def test_the_build_stage_id_is_the_last_commit_before_the_final_stage():
    output = ("[1/2] STEP 6/7: COPY operator ./operator\n--> 401b8b9ff06\n"
              "[1/2] STEP 7/7: RUN /opt/ferry/bin/pip install --no-deps .\n"
              "Successfully installed ferry-operator-0.1.0\n--> f5526143f9f\n"
              "[2/2] STEP 1/9: FROM localhost/ferry-base:90c6263e2bb9ed34\n"
              "--> Using cache 5fa64ff8d8ef374b3979ce97ee2ebfe70e5992b337deaea70cab83ae45d9d60e\n"
              "--> 5fa64ff8d8e\n")
    assert image.build_stage_id(output) == "f5526143f9f"
    assert image.build_stage_id("STEP 1/2: FROM x\n--> 0123456789a\n") is None  # one stage
