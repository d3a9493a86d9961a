"""The handover scenario's section in docs/benchmarks.md: written by a run of it alone
without touching the rest, and kept by a run without it."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.document import SECTIONS, write
from bench.handover import HandoverResult
from bench.healthreport import current_section, splice
from bench.report import Results
from bench.stats import Summary
from benchdoc import DOC, bench_settings

pytestmark = pytest.mark.unit

HEADING = SECTIONS["handover"]


def _handover() -> HandoverResult:
    return HandoverResult(
        date="2026-12-01 15:00 UTC", rounds=20,
        kill_takeover_s=Summary.of([15.2, 16.1]), kill_published_s=Summary.of([15.4, 17.0]),
        term_takeover_s=Summary.of([0.4, 1.1]), kills_within_bound=20, terms_within_bound=20,
    )  # fmt: skip


def test_a_handover_only_run_rewrites_only_its_section(tmp_path: Path) -> None:
    path = tmp_path / "benchmarks.md"
    path.write_text(DOC)
    res = Results(settings=bench_settings(tmp_path, {"handover"}), meta={})
    write(res, path)
    assert path.read_text() == DOC, "nothing measured yet: the file is left alone"
    res.handover = _handover()
    write(res, path)
    text = path.read_text()
    section = current_section(text, HEADING)
    assert "| SIGTERM → another replica holds the Lease | 2 | " in section
    assert "| 2 | 20 / 2 |" in section  # bound 2 s, within bound
    assert text.replace(section, "") == DOC


def test_a_run_without_the_handover_scenario_keeps_its_section(tmp_path: Path) -> None:
    path = tmp_path / "benchmarks.md"
    section = f"{HEADING}\n\nEarlier handover figures.\n\n"
    path.write_text(splice(DOC, section, HEADING))
    write(Results(settings=bench_settings(tmp_path, {"fleet"}), meta={}), path)
    assert current_section(path.read_text(), HEADING) == section
