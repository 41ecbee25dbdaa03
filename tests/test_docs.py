"""The documentation names only tests that exist: docs/safety.md's claims point at pytest node ids."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NODE_ID = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def test_every_test_that_safety_md_names_exists():
    text = (ROOT / "docs" / "safety.md").read_text()
    named = NODE_ID.findall(text)
    assert len(named) >= 30, "docs/safety.md names the tests behind each invariant"
    missing = [f"{path}::{name}" for path, name in named if name not in _tests_in(ROOT / path)]
    assert missing == [], f"docs/safety.md names tests that do not exist: {missing}"


def test_every_invariant_of_safety_md_names_its_tests():
    text = (ROOT / "docs" / "safety.md").read_text()
    sections = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
    numbered = [s for s in sections if re.match(r"\d+\. ", s)]
    assert len(numbered) >= 10
    for section in numbered:
        title = section.splitlines()[0]
        assert "**How.**" in section and "**Tests.**" in section, f"{title}: says how it holds and what tests it"
        assert NODE_ID.search(section.split("**Tests.**", 1)[1]), f"{title}: names at least one test"
