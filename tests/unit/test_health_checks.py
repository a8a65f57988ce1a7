"""Argo CD health checks (manifests/argocd/health/ferry.dev/<Kind>/health.lua) under Lua 5.1.

Argo CD embeds gopher-lua (Lua 5.1) and runs checks from ``argocd-cm`` in a sandbox without the
``string`` and ``math`` libraries (only base, table, package and os.time/os.date). The same sandbox
is built here with lupa's Lua 5.1, so a script that would break in a real ``argocd-cm`` fails. The
files follow Argo CD's layout for built-in checks (health.lua + health_test.yaml + testdata/).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from lupa import lua51

from ferry.generate import packaging
from ferry.api import KINDS

ROOT = Path(__file__).resolve().parents[2]
HEALTH = ROOT / packaging.HEALTH_DIR
STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}
CASES = [
    pytest.param(kind, case, id=f"{kind}-{Path(case['inputPath']).stem}")
    for kind in sorted(KINDS)
    for case in yaml.safe_load((HEALTH / kind / "health_test.yaml").read_text())["tests"]
]


def sandbox() -> lua51.LuaRuntime:
    """A Lua 5.1 state with what Argo CD gives user-supplied health scripts."""
    lua = lua51.LuaRuntime(register_eval=False, register_builtins=False, unpack_returned_tuples=True)
    lua.execute("os = {time = os.time, date = os.date}; string, math, io, debug, coroutine, python = "
                "nil, nil, nil, nil, nil, nil")
    return lua


def run_check(kind: str, obj: dict, script: str | None = None) -> dict:
    lua = sandbox()
    lua.globals().obj = lua.table_from(obj, recursive=True)
    source = script if script is not None else (HEALTH / kind / "health.lua").read_text()
    result = lua.execute(source)
    return dict(result.items()) if result is not None else {}


@pytest.mark.parametrize("kind, case", CASES)
def test_health_of_every_testdata_object(kind, case):
    obj = yaml.safe_load((HEALTH / kind / case["inputPath"]).read_text())
    assert obj["kind"] == kind and obj["apiVersion"].startswith("ferry.dev/")
    result = run_check(kind, obj)
    assert result["status"] in STATUSES
    assert result == {"status": case["healthStatus"]["status"], "message": case["healthStatus"]["message"]}


@pytest.mark.parametrize("kind, case", CASES)
def test_testdata_objects_are_valid_objects_of_their_kind(kind, case):
    """The checks are tested on what the operator can really write, not on invented shapes."""
    obj = yaml.safe_load((HEALTH / kind / case["inputPath"]).read_text())
    KINDS[kind].spec_model.model_validate(obj["spec"])
    KINDS[kind].status_model.model_validate(obj.get("status", {}))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_has_a_check_with_enough_testdata(kind):
    folder = HEALTH / kind
    tests = yaml.safe_load((folder / "health_test.yaml").read_text())["tests"]
    referenced = {folder / case["inputPath"] for case in tests}
    assert referenced == set((folder / "testdata").glob("*.yaml")), "testdata without a test"
    assert len(referenced) >= 3
    statuses = {case["healthStatus"]["status"] for case in tests}
    assert {"Healthy", "Progressing", "Degraded"} <= statuses


def test_the_sandbox_has_no_string_library():
    """A check written with string.* would fail in argocd-cm; the sandbox must make it fail too."""
    with pytest.raises(lua51.LuaError, match="string"):
        run_check("ModelVersion", {"status": {"phase": "x"}},
                  'return {status = string.upper("healthy"), message = ""}')
    with pytest.raises(lua51.LuaError, match="math"):
        run_check("ModelVersion", {}, "return {status = 'Healthy', message = math.floor(1.5)}")


def test_it_is_lua_5_1():
    assert sandbox().eval("_VERSION") == "Lua 5.1"


def test_argocd_cm_snippet_carries_every_script():
    snippet = yaml.safe_load((ROOT / "manifests/argocd/argocd-cm-health.yaml").read_text())
    assert snippet["metadata"]["name"] == "argocd-cm"
    assert snippet["data"] == {
        f"resource.customizations.health.ferry.dev_{kind}": (HEALTH / kind / "health.lua").read_text()
        for kind in KINDS}
