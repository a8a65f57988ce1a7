"""Every test module has a basename of its own: pytest imports them by basename (rootdir-relative
packages are not used), so two tiers with one name stop collection when they run together."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).parents[1]


def test_test_module_basenames_are_unique_across_tiers():
    names = Counter(path.name for path in TESTS.rglob("test_*.py"))
    assert not [name for name, count in names.items() if count > 1], names.most_common(3)
