"""The benchmark's /proc parsing and profile aggregation, and a sample of a process tree."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench import procfs
from bench.procfs import ProcSample, busy_cores, cpu_percent, cpu_ticks, status_kib
from bench.profiling import analyse, package_of, short_path

pytestmark = pytest.mark.unit

STAT = (
    "4242 (python3 -m (x) y) S 1 4242 4242 0 -1 4194560 12000 0 3 0 "
    "150 25 0 0 20 0 7 0 100 500000000 30000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17"
)


def test_cpu_ticks_sums_utime_and_stime_after_a_tricky_command_name() -> None:
    assert cpu_ticks(STAT) == 175


def test_status_kib() -> None:
    text = "Name:\tpython3\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n"
    assert status_kib(text, "VmHWM") == 204800
    assert status_kib(text, "VmRSS") == 102400
    assert status_kib(text, "VmSwap") == 0


def test_cpu_percent_of_one_core() -> None:
    before = ProcSample(wall=10.0, cpu_seconds=1.0, rss_kib=0, hwm_kib=0)
    after = ProcSample(wall=20.0, cpu_seconds=4.0, rss_kib=0, hwm_kib=0)
    assert cpu_percent(before, after) == pytest.approx(30.0)
    assert cpu_percent(after, after) == 0.0


def _frame(function: str, path: str) -> str:
    return f"{function}\x00{path}\x0012\x01l12"


RUN = _frame("run_forever", "/usr/lib/python3.11/asyncio/base_events.py")
SELECT = _frame("select", "/usr/lib/python3.11/selectors.py")
POLL = _frame("epoll.poll", "<built-in>")
SYNC = _frame("_sync", "/repo/operator/directservice/reconciler.py")
SEND = _frame("socket.send", "<built-in>")
AIO = _frame("send", "/v/lib/python3.11/site-packages/aiohttp/client_reqrep.py")


def test_analyse_skips_the_idle_selector_and_charges_c_calls_to_their_caller() -> None:
    records = [
        ([RUN, SELECT, POLL], 8.0),
        ([RUN, SELECT], 1.0),
        ([RUN, SYNC, AIO, SEND], 0.75),
        ([RUN, SYNC], 0.25),
    ]
    hot = analyse(records)
    assert hot.wall == pytest.approx(10.0)
    assert hot.busy == pytest.approx(1.0)
    assert [(s.name, s.seconds) for s in hot.packages] == [
        ("aiohttp", 0.75),
        ("directservice", 0.25),
    ]
    assert hot.self_time[0].name == "socket.send (<built-in>)"
    assert hot.self_time[0].share == pytest.approx(0.75)
    assert [(s.name, s.seconds) for s in hot.ours] == [("_sync (directservice/reconciler.py)", 1.0)]


def test_paths_are_shortened_to_their_package() -> None:
    assert short_path("/v/lib/python3.11/site-packages/kopf/_core/x.py") == "kopf/_core/x.py"
    assert package_of("/v/lib/python3.11/site-packages/kopf/_core/x.py") == "kopf"
    assert package_of("/usr/lib/python3.11/json/decoder.py") == "json"
    assert package_of("/repo/operator/directservice/planner.py") == "directservice"


def test_busy_cores_from_machine_ticks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    # 50 of 100 ticks busy on a 2-core machine: one core's worth.
    assert busy_cores((100, 1000), (150, 1100)) == pytest.approx(1.0)
    assert busy_cores((100, 1000), (100, 1000)) == 0.0


def test_a_tree_sample_adds_the_children_of_the_process() -> None:
    hold = "b = bytearray(64 << 20); print('ready', flush=True); input()"
    child = subprocess.Popen(
        [sys.executable, "-c", hold], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        alone, tree = procfs.sample(os.getpid()), procfs.sample_tree(os.getpid())
        assert child.pid in procfs.children(os.getpid())
        assert tree.rss_kib - alone.rss_kib >= 60 << 10  # the child's 64 MiB
        assert tree.cpu_seconds >= alone.cpu_seconds
    finally:
        child.communicate("\n")
