"""The coalescing scenario's figures: the oldest answer from the operator's metrics, the
target row, and its section written alone without touching the rest of the document."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.coalesce import HEADING, NAMESPACE, CoalesceResult, oldest_answer
from bench.document import write
from bench.healthreport import current_section
from bench.report import Results, targets
from benchdoc import DOC, bench_settings

pytestmark = pytest.mark.unit


def _result(calls: int) -> CoalesceResult:
    return CoalesceResult(
        services=1000, upstreams=10, interval=5.0, window=60.0, sync_seconds=40.0,
        calls=calls, calls_by_upstream={"a": calls // 2, "b": calls - calls // 2},
        oldest_answer_s=4.2, cpu_pct=12.0, writes={},
    )  # fmt: skip


def test_the_oldest_answer_is_the_largest_of_the_scenarios_namespace() -> None:
    text = (
        "# TYPE directservice_seconds_since_last_success gauge\n"
        f'directservice_seconds_since_last_success{{namespace="{NAMESPACE}",name="co-1"}} 3.5\n'
        f'directservice_seconds_since_last_success{{namespace="{NAMESPACE}",name="co-2"}} 4.75\n'
        'directservice_seconds_since_last_success{namespace="bench",name="fleet-1"} 90.0\n'
        'directservice_ready_endpoints{namespace="bench-coalesce",name="co-1"} 99.0\n'
    )
    assert oldest_answer(text) == 4.75


@pytest.mark.parametrize(("calls", "verdict"), [(120, "PASS"), (180, "PASS"), (181, "**MISS**")])
def test_the_target_is_the_calls_of_the_upstreams_alone(calls: int, verdict: str) -> None:
    res = Results(settings=bench_settings(Path("/nonexistent"), {"coalesce"}), meta={})
    res.coalesce = _result(calls)
    row = next(line for line in targets(res) if "on 10 upstreams" in line)
    assert f"{calls}/min" in row and row.rstrip(" |").endswith(verdict)


def test_a_coalesce_only_run_rewrites_only_its_section(tmp_path: Path) -> None:
    path = tmp_path / "benchmarks.md"
    path.write_text(DOC)
    res = Results(settings=bench_settings(tmp_path, {"coalesce"}), meta={})
    res.coalesce = _result(120)
    write(res, path)
    text = path.read_text()
    section = current_section(text, HEADING)
    assert "**120 discovery calls/min**" in section and "against 120 for 10 services" in section
    assert text.replace(section, "") == DOC
