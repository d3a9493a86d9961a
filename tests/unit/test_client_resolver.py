"""The reference client's SRV resolution against a loopback responder: the search list,
targets without glue, priorities, the TTL cache and its stale answers, and the command line."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from devenv.paths import child_env
from directservice.client import (
    DnsClient,
    DnsNoAnswer,
    Instance,
    NoInstancesError,
    SrvResolver,
    srv_name,
)
from directservice.client.dnswire import TYPE_A, TYPE_SRV
from dnsfake import SRV, FakeDns, publish, running_fake_dns

pytestmark = pytest.mark.unit


@pytest.fixture
def fake_dns() -> Iterator[tuple[FakeDns, tuple[str, int]]]:
    with running_fake_dns() as served:
        yield served


# -- SRV resolution -----------------------------------------------------------------------


def test_relative_name_is_found_through_the_search_list(
    fake_dns: tuple[FakeDns, tuple[str, int]],
) -> None:
    fake, server = fake_dns
    publish(fake, {"pod-a": "10.0.0.1"})
    dns = DnsClient(server, search=["default.svc.cluster.local", "cluster.local"], ndots=5)
    resolver = SrvResolver(srv_name("mnist", "default", zone=None), dns)
    assert resolver.instances() == (Instance("10.0.0.1", 8080),)
    assert (
        fake.asked[("udp", "_http._tcp.mnist.default.svc.default.svc.cluster.local", TYPE_SRV)] == 1
    )
    assert fake.asked[("udp", SRV, TYPE_SRV)] == 1


def test_targets_without_glue_are_asked_for(fake_dns: tuple[FakeDns, tuple[str, int]]) -> None:
    fake, server = fake_dns
    publish(fake, {"pod-a": "10.0.0.1", "pod-b": "10.0.0.2"}, glue=False)
    resolver = SrvResolver(srv_name("mnist", "default"), DnsClient(server))
    assert resolver.instances() == (Instance("10.0.0.1", 8080), Instance("10.0.0.2", 8080))
    assert fake.asked[("udp", "pod-b.mnist.default.svc.cluster.local", TYPE_A)] == 1


def test_only_the_best_priority_with_a_target_is_used(
    fake_dns: tuple[FakeDns, tuple[str, int]],
) -> None:
    fake, server = fake_dns
    publish(fake, {"pod-a": "10.0.0.1", "pod-b": "10.0.0.2"})
    srvs, glue = fake.zone[(SRV, TYPE_SRV)]
    backup = (SRV, TYPE_SRV, 30, (10, 50, 8080, "pod-b.mnist.default.svc.cluster.local"))
    no_service = (SRV, TYPE_SRV, 30, (0, 50, 8080, "."))
    fake.zone[(SRV, TYPE_SRV)] = ([srvs[0], backup, no_service], glue)
    resolver = SrvResolver(srv_name("mnist", "default"), DnsClient(server))
    assert resolver.instances() == (Instance("10.0.0.1", 8080),)


# -- the TTL cache ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_answer_is_kept_for_its_smallest_ttl(fake_dns: tuple[FakeDns, tuple[str, int]]) -> None:
    fake, server = fake_dns
    publish(fake, {"pod-a": "10.0.0.1"}, srv_ttl=30, a_ttl=5)
    clock = Clock()
    resolver = SrvResolver(srv_name("mnist", "default"), DnsClient(server), clock=clock)

    def asked() -> int:
        return fake.asked[("udp", SRV, TYPE_SRV)]

    assert resolver.instances() == (Instance("10.0.0.1", 8080),)
    clock.now += 4.9
    publish(fake, {"pod-b": "10.0.0.2"})
    assert (resolver.instances(), asked()) == ((Instance("10.0.0.1", 8080),), 1)
    clock.now += 0.1  # the A record's 5 s are over
    assert (resolver.instances(), asked(), resolver.resolutions) == (
        (Instance("10.0.0.2", 8080),),
        2,
        2,
    )


def test_a_failed_re_resolution_keeps_the_last_good_answer(
    fake_dns: tuple[FakeDns, tuple[str, int]],
) -> None:
    fake, server = fake_dns
    publish(fake, {"pod-a": "10.0.0.1"}, srv_ttl=5, a_ttl=5)
    clock = Clock()
    resolver = SrvResolver(
        srv_name("mnist", "default"), DnsClient(server), clock=clock, retry_interval=2
    )
    good = resolver.instances()
    fake.zone = {}  # every instance gone from DNS: an empty answer is no answer
    clock.now += 5
    assert (resolver.instances(), resolver.stale, resolver.failures) == (good, True, 1)
    assert isinstance(resolver.last_error, DnsNoAnswer)
    clock.now += 1.9
    assert (resolver.instances(), resolver.failures) == (good, 1)  # not asked again yet
    fake.rcode = 2
    clock.now += 0.1
    assert (resolver.instances(), resolver.failures, resolver.stale) == (good, 2, True)
    fake.rcode = 0
    publish(fake, {"pod-b": "10.0.0.2"})
    clock.now += 2
    assert (resolver.instances(), resolver.stale) == ((Instance("10.0.0.2", 8080),), False)


def test_without_any_good_answer_there_is_nothing_to_call(
    fake_dns: tuple[FakeDns, tuple[str, int]],
) -> None:
    _, server = fake_dns
    resolver = SrvResolver(srv_name("mnist", "default"), DnsClient(server))
    with pytest.raises(NoInstancesError, match="not resolved"):
        resolver.instances()
    with pytest.raises(NoInstancesError):
        resolver.instances()
    assert resolver.failures == 2  # asked again on each use: there was nothing to keep


# -- the command line, through DNS to a loopback instance ---------------------------------


class _Pong(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "4")
        self.end_headers()
        self.wfile.write(b"pong")

    def log_message(self, *args: object) -> None:
        pass


def test_the_command_line_prints_who_answered(fake_dns: tuple[FakeDns, tuple[str, int]]) -> None:
    fake, (host, port) = fake_dns
    instance = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Pong)
    threading.Thread(target=instance.serve_forever, args=(0.05,), daemon=True).start()
    at = instance.server_address[1]
    publish(fake, {"pod-a": "127.0.0.1"}, port=at)
    argv = ["mnist.default", "--dns", f"{host}:{port}", "--data", "{}", "--count", "2"]
    try:
        done = subprocess.run(
            [sys.executable, "-m", "directservice.client", *argv],
            check=False, capture_output=True, text=True, env=child_env(), timeout=60,
        )  # fmt: skip
    finally:
        instance.shutdown()
        instance.server_close()
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"{n}: 200 from 127.0.0.1:{at} (try 1) pong" for n in (1, 2)
    ]
