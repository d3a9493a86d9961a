"""docs/troubleshooting.md documents every condition and Event reason, and no other."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from directservice.api.reasons import EventReason, Reason

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "troubleshooting.md"
PACKAGE = REPO / "operator" / "directservice"
_ROW = re.compile(r"^\|\s*`([A-Za-z]+)`\s*\|")


def documented_reasons(markdown: str) -> list[str]:
    """First cells of the body rows of every table whose header's first cell is `reason`."""
    found: list[str] = []
    in_table = False
    for line in markdown.splitlines():
        cells = (
            [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        )
        if not cells:
            in_table = False
        elif cells[0] == "reason":
            in_table = True
        elif in_table and not set(cells[0]) <= set("-: "):
            match = _ROW.match(line)
            assert match, f"a reason row must start with one backticked name: {line!r}"
            found.append(match.group(1))
    return found


def test_every_reason_is_documented_once_and_nothing_else() -> None:
    documented = documented_reasons(DOC.read_text())
    assert len(documented) == len(set(documented)), "a reason is documented twice"
    known = {r.value for r in Reason} | {r.value for r in EventReason}
    assert set(documented) - known == set(), "documented, but no such reason"
    assert known - set(documented) == set(), "a reason without a row in troubleshooting.md"


def test_the_reader_sees_tables_only_under_a_reason_header() -> None:
    text = (
        "| condition | x |\n|---|---|\n| `A` | y |\n\n"
        "| reason | meaning |\n|---|---|\n| `B` | z |\n"
    )
    assert documented_reasons(text) == ["B"]


def test_no_reason_is_a_bare_string_in_the_package() -> None:
    """Reasons are passed as Reason members, so mypy and this list keep them in one place."""
    literal_reasons = {r.value for r in Reason}
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if "emulator" in path.parts or path.name == "reasons.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in literal_reasons:
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} {node.value!r}")
    assert offenders == []
