"""The network lab itself: routed hosts in namespaces answer, fail as told, and leave nothing.

Traffic goes only to the lab's own addresses; the lab's `unreachable` routes keep even a
host whose link is down from sending anything off the machine.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import http.client
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devenv.netlab import Host, NetLab
from devenv.netns import (
    LOCK_DIR,
    LabNetworks,
    ip,
    ip_batch,
    link_name,
    links,
    namespaces,
    netns_name,
    owner_of,
    pid_alive,
    routes_into,
)
from devenv.paths import child_env
from support import eventually, wait_for_count

SERVICE = "echo-model"
PREDICT = f"/api/predict/{SERVICE}"


def call(
    address: tuple[str, int],
    path: str = PREDICT,
    *,
    method: str = "POST",
    body: bytes = b"",
    token: str | None = None,
    timeout: float = 2.0,
) -> tuple[int, dict[str, Any]]:
    """One HTTP request (http.client: no proxy from the environment); status and JSON."""
    conn = http.client.HTTPConnection(*address, timeout=timeout)
    try:
        headers = {"Authorization": token} if token is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


@contextlib.contextmanager
def lab_host(lab: NetLab, addresses: int = 1) -> Iterator[Host]:
    host = lab.add_host(addresses)
    try:
        yield host
    finally:
        lab.remove_host(host)


def neighbours(*selector: str) -> list[str]:
    """IPv4 neighbour entries of the root namespace (`ip neigh show SELECTOR`)."""
    return [line for line in ip("-4", "neigh", "show", *selector).splitlines() if line.strip()]


def test_a_routed_host_answers_on_each_address_and_counts_exactly(netlab: NetLab) -> None:
    with lab_host(netlab, addresses=3) as host:
        server = host.serve(SERVICE, identity="instance-a")
        for address in host.ips:
            status, answer = call((address, 8000), body=b'{"x": 1}', token="raw-token")
            assert (status, answer) == (
                200,
                {
                    "identity": "instance-a",
                    "service": SERVICE,
                    "address": address,
                    "authorization": "raw-token",
                    "body": '{"x": 1}',
                },
            )
        assert call(server.address)[1]["authorization"] is None
        assert call(server.address, "/healthz", method="GET")[0] == 200
        assert call(server.address, "/api/predict/another-model")[0] == 404
        assert (server.requests(PREDICT), server.requests()) == (4, 6)
        # Routed, not bridged: one route for the host's block, none of its addresses at home.
        routes = ip("-4", "route", "show", "root", str(host.block)).splitlines()
        assert [line.split() for line in routes] == [
            [str(host.block), "via", host.link_address, "dev", host.link, "onlink"]
        ]
        assert host.ip not in ip("-4", "address", "show")


def test_modes_error_refuse_hang_and_back_to_ok(netlab_host: Host) -> None:
    server = netlab_host.serve(SERVICE)
    server.set_mode("error")
    assert call(server.address)[0] == 503
    assert call(server.address, "/healthz", method="GET")[0] == 503

    server.set_mode("refuse")
    with pytest.raises(ConnectionRefusedError):
        call(server.address)

    server.set_mode("hang")
    read_before = server.requests(PREDICT)
    with pytest.raises(TimeoutError):
        call(server.address, timeout=0.5)
    wait_for_count("the hung request read", lambda: server.requests(PREDICT), read_before + 1, 5)

    server.set_mode("ok")
    assert call(server.address)[0] == 200
    assert server.status()["mode"] == "ok"


def test_kill_and_restart_keep_address_and_identity(netlab_host: Host) -> None:
    server = netlab_host.serve(SERVICE, port=9000, identity="instance-k")
    assert call(server.address)[0] == 200
    server.kill()
    with pytest.raises(ConnectionRefusedError):  # the host is up; nothing listens
        call(server.address)
    server.restart()
    status, answer = call(server.address)
    assert (status, answer["identity"], answer["address"]) == (200, "instance-k", netlab_host.ip)
    assert server.requests(PREDICT) == 1  # a new process counts from zero


def test_popen_runs_inside_the_host_and_dies_with_it(netlab: NetLab) -> None:
    with lab_host(netlab, addresses=2) as host:
        show = host.popen(["ip", "-4", "-o", "address", "show"], stdout=subprocess.PIPE)
        listing = show.communicate(timeout=10)[0].decode()
        assert all(f"inet {address}/32" in listing for address in host.ips)
        assert f"inet {host.link_address}/31" in listing
        # A process that stays until it is killed: it waits for input that never comes.
        lingering = host.popen(
            [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
        )
    assert lingering.poll() == -signal.SIGKILL  # killed and reaped with its host


def test_link_down_makes_the_host_unreachable_until_link_up(netlab_host: Host) -> None:
    server = netlab_host.serve(SERVICE)
    assert call(server.address)[0] == 200
    netlab_host.link_down()
    started = time.monotonic()
    with pytest.raises(OSError) as failure:
        socket.create_connection(server.address, timeout=1.0).close()
    assert failure.value.errno == errno.EHOSTUNREACH  # the lab's unreachable route, at once
    assert time.monotonic() - started < 1.0
    assert server.requests() == 1  # the control socket works with the link down

    netlab_host.link_up()
    assert call(server.address)[0] == 200
    assert server.requests() == 2


def test_a_host_with_2000_addresses_costs_one_route_and_one_neighbour(netlab: NetLab) -> None:
    with lab_host(netlab, addresses=2000) as host:
        held = ip("-n", host.name, "-4", "-o", "address", "show", "dev", "lo").splitlines()
        assert len([line for line in held if "127.0.0.1" not in line]) == 2000
        server = host.serve(SERVICE)
        table_before = len(neighbours())
        # first, middle and last, and every 40th between: a bridge would learn each one
        targets = [host.ips[0], host.ips[1000], host.ips[-1], *host.ips[40:2000:40]]
        for address in targets:
            assert call((address, 8000))[1]["address"] == address
        assert server.requests(PREDICT) == len(targets)
        assert [line.split()[0] for line in neighbours("dev", host.link)] == [host.link_address]
        assert neighbours("to", str(host.block)) == []
        assert len(neighbours()) - table_before <= 3


def test_a_sigkilled_owner_leaves_nothing_behind() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD_LAB],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(),
        text=True,
    )
    try:
        assert child.stdout is not None
        assert select.select([child.stdout], [], [], 20)[0], "the child lab did not report"
        line = child.stdout.readline()
        assert line, f"the child lab did not start: {child.communicate(timeout=10)[1]}"
        made = json.loads(line)
        assert made["netns"] in namespaces() and made["link"] in links()
        assert pid_alive(made["server"]) and pid_alive(made["reaper"])
    finally:
        child.kill()
        child.wait()

    lab, owner = made["lab"], made["owner"]

    def nothing_left() -> bool:
        return (
            not [n for n in namespaces() + links() if owner_of(n) == (lab, owner)]
            and not pid_alive(made["server"])
            and not pid_alive(made["reaper"])
            and not Path(made["workdir"]).exists()
            and not routes_into(LabNetworks.of(lab).all())
            and _lock_is_free(lab)
        )

    eventually(f"the reaper of lab {lab} to remove everything", nothing_left, 10, step=0.05)


def test_start_up_removes_dead_owners_leftovers_and_spares_live_labs(netlab: NetLab) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale_lab, busy_lab = (netlab.lab + 128) % 256, (netlab.lab + 64) % 256
    stale_ns, stale_link = netns_name(stale_lab, dead.pid, 0), link_name(stale_lab, dead.pid, 0)
    live_ns = netns_name(busy_lab, os.getpid(), 99)  # as if another run, unlocked, used it
    stale_dir = Path(tempfile.mkdtemp(prefix=f"dsvt{stale_lab}-{dead.pid}-"))
    ip_batch(
        [
            f"netns add {stale_ns}",
            f"link add {stale_link} type veth peer name p0 netns {stale_ns}",
            f"netns add {live_ns}",
        ]
    )
    try:
        with lab_host(netlab) as live:
            live_server = live.serve(SERVICE)
            with NetLab() as second:
                assert second.lab not in (netlab.lab, stale_lab)
                assert stale_ns not in namespaces() and stale_link not in links()
                assert not stale_dir.exists()
                assert live.name in namespaces() and call(live_server.address)[0] == 200
                mine, theirs = LabNetworks.of(netlab.lab).all(), second.networks.all()
                assert not any(a.overlaps(b) for a in mine for b in theirs)
                with lab_host(second) as other:
                    assert other.name.startswith(second.prefix) and other.name != live.name
                    assert call(other.serve(SERVICE).address)[0] == 200
            with pytest.raises(RuntimeError, match="no free lab index"):
                NetLab(lab=busy_lab).start()
            assert live_ns in namespaces()
    finally:  # what the labs were right to leave, or failed to remove
        shutil.rmtree(stale_dir, ignore_errors=True)
        ip_batch(
            [f"link del {stale_link}", f"netns del {stale_ns}", f"netns del {live_ns}"], force=True
        )


_CHILD_LAB = """
import json, sys
from devenv.netlab import NetLab
lab = NetLab().start()
host = lab.add_host(addresses=4)
server = host.serve("m")
print(json.dumps({
    "lab": lab.lab, "owner": lab.owner, "netns": host.name, "link": host.link,
    "server": server.pid, "reaper": lab.reaper_pid, "workdir": str(lab.workdir),
}), flush=True)
sys.stdin.read()
"""


def _lock_is_free(lab: int) -> bool:
    with (LOCK_DIR / f"lab-{lab}.lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(lock, fcntl.LOCK_UN)
        return True
