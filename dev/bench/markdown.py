"""Markdown pieces shared by the report and the scenarios that render their own sections."""

from __future__ import annotations


def table(head: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table, then a blank line."""
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return [*out, ""]
