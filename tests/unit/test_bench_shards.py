"""The sharding scenario's figures: who polled, from the emulator's log; each replica's own
writes without its Lease renewals; the target rows; and its section written alone."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.document import write
from bench.healthreport import current_section
from bench.report import Results, targets
from bench.shards import (
    HEADING,
    ReplicaShare,
    ShardsResult,
    caller,
    own_writes,
    polls_by_caller,
    upstream_hosts,
)
from benchdoc import DOC, bench_settings

pytestmark = pytest.mark.unit


def _record(service: str, agent: str) -> dict[str, object]:
    return {"service": service, "time": 1.0, "headers": {"User-Agent": agent}}


def _replica(
    name: str, services: int, cpu: float, shards: tuple[int, ...], rounds: int = 24
) -> ReplicaShare:
    """`rounds`: polls of each DirectService in the 120 s window (24 at 5 s: all made)."""
    return ReplicaShare(
        name=name, shards=shards, services=services, polls=services * rounds, cpu_pct=cpu,
        rss_mib=600.0, writes=0,
    )  # fmt: skip


def _result(*replicas: ReplicaShare, doubled: int = 0, writes: int = 0) -> ShardsResult:
    return ShardsResult(
        services=6000, shards=4, upstreams=16, interval=5.0, window=120.0, sync_seconds=300.0,
        replicas=replicas, doubled=doubled, unpolled=0,
        writes={"PATCH directservices/status": writes} if writes else {},
    )  # fmt: skip


def test_the_upstream_hosts_are_loopback_addresses() -> None:
    assert upstream_hosts(3) == ("127.0.0.1", "127.0.0.2", "127.0.0.3")


def test_polls_are_counted_per_replica_named_in_the_user_agent() -> None:
    log = [
        _record("fleet_00001", "directservice-operator/0.1.0 (replica-0)"),
        _record("fleet_00001", "directservice-operator/0.1.0 (replica-0)"),
        _record("fleet_00002", "directservice-operator/0.1.0 (replica-1)"),
        _record("other", "directservice-operator/0.1.0 (replica-1)"),
        _record("fleet_00003", "curl/8"),
    ]
    polled = polls_by_caller(log, {"fleet_00001", "fleet_00002", "fleet_00003"})
    assert polled == {
        "replica-0": {"fleet_00001": 2},
        "replica-1": {"fleet_00002": 1},
        "": {"fleet_00003": 1},
    }
    assert caller({"service": "x"}) == ""


def test_a_replicas_own_writes_leave_its_lease_renewals_out() -> None:
    text = (
        "# TYPE directservice_api_writes_total counter\n"
        'directservice_api_writes_total{kind="Lease",verb="update"} 120.0\n'
        'directservice_api_writes_total{kind="EndpointSlice",verb="create"} 3.0\n'
        'directservice_api_writes_total{kind="DirectService",verb="patch"} 2.0\n'
        'directservice_api_writes_created{kind="EndpointSlice",verb="create"} 1.7e9\n'
    )
    assert own_writes(text) == 5


def test_polls_made_add_up_over_replicas() -> None:
    r = _result(_replica("a", 3000, 60.0, (0, 1)), _replica("b", 3000, 61.0, (2, 3)))
    assert r.polls == 144_000
    assert r.polls_scheduled == 144_000
    assert r.polls_pct == 100.0


def test_cpu_is_compared_per_directservice_polled() -> None:
    even = _result(_replica("a", 4000, 80.0, (0, 1, 2)), _replica("b", 2000, 40.0, (3,)))
    assert even.cpu_spread == pytest.approx(1.0)
    skewed = _result(_replica("a", 3000, 90.0, (0, 1)), _replica("b", 3000, 45.0, (2, 3)))
    assert skewed.cpu_spread == pytest.approx(2.0)
    idle = _result(_replica("a", 6000, 90.0, (0, 1, 2, 3)), _replica("b", 0, 5.0, ()))
    assert math.isinf(idle.cpu_spread)  # a replica that polls nothing is no share at all


@pytest.mark.parametrize(
    ("result", "missed"),
    [
        (_result(_replica("a", 3000, 60.0, (0, 1)), _replica("b", 3000, 62.0, (2, 3))), set()),
        (
            _result(
                _replica("a", 3000, 60.0, (0, 1)), _replica("b", 3000, 62.0, (2, 3)),
                doubled=3, writes=7,
            ),
            {"polled by two replicas", "steady-state writes"},
        ),
        (
            _result(_replica("a", 6000, 99.0, (0, 1, 2, 3)), _replica("b", 0, 5.0, ())),
            {"highest ÷ lowest"},
        ),
        (
            _result(_replica("a", 3000, 99.0, (0, 1), 20), _replica("b", 3000, 99.0, (2, 3))),
            {"polls made"},
        ),
    ],
)  # fmt: skip
def test_the_target_rows(result: ShardsResult, missed: set[str]) -> None:
    res = Results(settings=bench_settings(Path("/nonexistent"), {"shards"}), meta={})
    res.shards = result
    rows = [line for line in targets(res) if "on 2 replicas, 4 shards" in line]
    assert len(rows) == 4
    parts = ("polls made", "polled by two replicas", "steady-state writes", "highest ÷ lowest")
    failed = {part for part in parts if any(part in r and "MISS" in r for r in rows)}
    assert failed == missed


def test_a_shards_only_run_rewrites_only_its_section(tmp_path: Path) -> None:
    path = tmp_path / "benchmarks.md"
    path.write_text(DOC)
    res = Results(settings=bench_settings(tmp_path, {"shards"}), meta={})
    res.shards = _result(_replica("a", 3000, 60.0, (0, 1)), _replica("b", 3000, 62.0, (2, 3)))
    write(res, path)
    text = path.read_text()
    section = current_section(text, HEADING)
    assert "| a | 0, 1 | 3,000 | 72,000 | 60.0 | 20.0 | 600 | 0 |" in section
    assert "highest ÷ lowest replica: 1.03" in section
    assert text.replace(section, "") == DOC
