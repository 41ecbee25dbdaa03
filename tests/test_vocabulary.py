"""The words a crawl's fate is told in are defined once, used by name, and documented as defined.

Statuses and held reasons are :mod:`kingfisher_archive.ledger`'s, reject and comparison reasons
:mod:`kingfisher_archive.policy`'s; docs/retention-policy.md's tables must list exactly those.
"""

import ast
import pathlib
import re

import pytest

from kingfisher_archive import ledger, policy

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "plugins" / "kingfisher_archive"
RETENTION = ROOT / "docs" / "retention-policy.md"


def table(text: str, heading: str) -> list[list[str]]:
    """The rows of the first Markdown table whose header row starts with ``heading``, cells stripped of backticks."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {heading} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip().strip("`") for cell in line.strip("|").split("|")])
    return rows


def section(text: str, title: str) -> str:
    return text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def test_the_reject_reasons_are_documented_in_the_order_they_are_checked():
    rows = table(section(RETENTION.read_text(), "Which crawls are kept"), "reason")
    assert [row[0] for row in rows] == list(policy.Reject)


def test_every_comparison_reason_is_documented():
    text = section(RETENTION.read_text(), "Which crawls are kept")
    documented = set(re.findall(r"`([a-z_<>A-Z]+)`", text))
    assert set(policy.Comparison) <= documented
    assert policy.not_distinct(2020, 9) == "2020_9_not_distinct"
    assert {"<YYYY>_<M>_not_distinct", "<YYYY>_<M>_not_distinct_maybe"} <= documented


def test_the_statuses_are_documented_with_whether_they_are_settled():
    rows = table(section(RETENTION.read_text(), "The ledger"), "status")
    assert sorted(row[0] for row in rows) == sorted(ledger.Status)
    assert sorted(row[0] for row in rows if row[2].startswith("yes")) == sorted(ledger.SETTLED)


def test_the_held_reasons_are_documented():
    text = section(RETENTION.read_text(), "The ledger")
    rows = table(text.split("Held reasons:", 1)[1], "reason")
    assert sorted(row[0] for row in rows) == sorted(ledger.Held)


def _literals(tree: ast.AST, words: set[str]):
    """String constants among ``words`` outside an Enum's body (where each is defined)."""
    definitions = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(getattr(b, "id", "") == "StrEnum" for b in node.bases):
            definitions |= {id(n) for n in ast.walk(node)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and node.value in words and id(node) not in definitions:
            yield node


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_reasons_are_used_by_name(path):
    reasons = {*policy.Reject, *policy.Comparison, *ledger.Held}
    found = [f"{path.name}:{n.lineno}: {n.value!r}" for n in _literals(ast.parse(path.read_text()), reasons)]
    assert not found, "use the enum member, not the string"


def _value(node: ast.AST):
    return node.value if isinstance(node, ast.Constant) else None


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_statuses_are_compared_by_name(path):
    statuses = set(ledger.Status)
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Compare):
            continue
        for left, op, right in zip([node.left, *node.comparators[:-1]], node.ops, node.comparators, strict=True):
            if isinstance(op, ast.In | ast.NotIn):  # "held" in result is a key; in ("held", ...) a status
                constants = right.elts if isinstance(right, ast.Tuple | ast.Set | ast.List) else []
            else:
                constants = [left, right]
            found += [f"{path.name}:{c.lineno}: {c.value!r}" for c in constants if _value(c) in statuses]
    assert not found, "compare with ledger.Status members, not strings"
