"""The test tree collects: every test module has a basename of its own, and every name a test
module imports from a sibling test module or from ``support`` is defined there. Both break
collection of the whole integration tier at once, which otherwise shows only on a cluster."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

TESTS = Path(__file__).parents[1]


def test_test_module_basenames_are_unique_across_tiers():
    names = Counter(path.name for path in TESTS.rglob("test_*.py"))
    assert not [name for name, count in names.items() if count > 1], names.most_common(3)


def top_level_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {leaf.id for target in targets for leaf in ast.walk(target)
                      if isinstance(leaf, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    return names


def local_module(importer: Path, module: str) -> Path | None:
    """The file a test module's ``from <module> import`` resolves to within the test tree."""
    parts = module.split(".")
    for root in (importer.parent, TESTS):
        candidate = root.joinpath(*parts).with_suffix(".py")
        if candidate.exists():
            return candidate
    return None


def test_names_imported_between_test_modules_exist():
    missing = []
    for path in TESTS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                source = local_module(path, node.module)
                if source is None:
                    continue
                defined = top_level_names(source)
                missing += [f"{path.relative_to(TESTS)}: {node.module}.{alias.name}"
                            for alias in node.names if alias.name not in defined]
    assert not missing, missing
