"""The emulator's slow and unbounded bodies: `trickle` and chunked `oversize`, over loopback.

A trickled answer is the normal one, sent so slowly that only a limit on the whole exchange
ends it; a chunked oversize body announces no length, so only a cap on what is read does.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest
import requests

from directservice.emulator import EmulatorThread
from directservice.emulator.faults import FaultError, FaultMode, parse_fault
from support import wait_for_count

pytestmark = pytest.mark.unit

SERVICE = "slow_model"
INSTANCES = [{"ip": "10.1.0.1", "port": 50000}, {"ip": "10.1.0.2", "port": 50000}]
EMULATOR: dict[str, Any] = {"services": {SERVICE: INSTANCES}}


def get(http: requests.Session, emu: EmulatorThread, **kw: Any) -> requests.Response:
    return http.get(emu.upstreams_url(SERVICE), timeout=10, **kw)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"mode": "trickle", "bytes_per_second": 0}, "bytes_per_second"),
        ({"mode": "trickle", "bytes_per_second": -1.5}, "bytes_per_second"),
        ({"mode": "trickle", "bytes_per_second": True}, "bytes_per_second"),
        ({"mode": "trickle", "bytes_per_second": "fast"}, "bytes_per_second"),
        ({"mode": "trickle", "bytes": 10}, "unknown keys"),
        ({"mode": "oversize", "chunked": "yes"}, "chunked"),
        ({"mode": "status", "status": 500, "chunked": True}, "unknown keys"),
    ],
)
def test_invalid_pace_parameters_are_refused(data: dict[str, Any], message: str) -> None:
    with pytest.raises(FaultError, match=message):
        parse_fault(data)


def test_pace_parameters_have_defaults_and_round_trip() -> None:
    trickle = parse_fault({"mode": "trickle"})
    assert (trickle.mode, trickle.rate) == (FaultMode.TRICKLE, 1.0)
    assert parse_fault({"mode": "trickle", "bytes_per_second": 3}).rate == 3.0
    assert trickle.to_json() == {
        "id": 0,
        "mode": "trickle",
        "service": None,
        "count": None,
        "bytes_per_second": 1.0,
    }
    oversize = parse_fault({"mode": "oversize", "bytes": 100, "chunked": True})
    assert oversize.to_json()["chunked"] is True
    assert parse_fault({"mode": "oversize"}).chunked is False


def test_a_trickled_answer_is_the_normal_one_sent_slowly(
    emu: EmulatorThread, http: requests.Session
) -> None:
    normal = get(http, emu)
    emu.add_fault("trickle", service=SERVICE, bytes_per_second=400, count=1)
    started = time.monotonic()
    slow = get(http, emu)
    elapsed = time.monotonic() - started
    assert slow.status_code == 200
    assert slow.content == normal.content
    assert int(slow.headers["Content-Length"]) == len(normal.content)
    # ~250 bytes at 400 bytes/s, in 40-byte pieces a tenth of a second apart.
    pieces = -(-len(normal.content) // 40)
    assert elapsed >= (pieces - 1) * 0.1 * 0.9
    assert [e["fault"] for e in emu.requests(SERVICE)["log"]] == [None, "trickle"]


def test_a_trickle_outlasts_a_per_read_timeout_until_the_client_gives_up(
    emu: EmulatorThread,
) -> None:
    """Every piece arrives well within a 2 s per-read timeout, so only the client's own
    deadline on the whole exchange ends it; the emulator still records the request."""
    emu.add_fault("trickle", service=SERVICE, bytes_per_second=2, count=1)
    path = emu.upstreams_url(SERVICE).removeprefix(emu.url)
    with socket.create_connection(("127.0.0.1", emu.port), timeout=2.0) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: emulator\r\n\r\n".encode())
        received = b""
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            chunk = sock.recv(4096)  # a 2 s read timeout that never fires
            assert chunk, "the emulator closed the connection"
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status, *fields = head.decode().split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (f.partition(":") for f in fields)}
    assert status.startswith("HTTP/1.1 200")
    # Two bytes a second (one every half second) for 1.5 to 2 s, of a ~200-byte body.
    assert 1 <= len(body) <= 5 < int(headers["content-length"])
    # The client went away; the emulator's next write fails and the request is logged.
    wait_for_count("the abandoned request logged", lambda: emu.requests(SERVICE)["total"], 1, 10)
    assert emu.requests(SERVICE)["log"][0]["fault"] == "trickle"


def test_chunked_oversize_announces_no_length(emu: EmulatorThread, http: requests.Session) -> None:
    size = 2 * 1024 * 1024 + 5
    emu.add_fault("oversize", service=SERVICE, bytes=size, chunked=True, count=1)
    response = get(http, emu, stream=True)
    assert "Content-Length" not in response.headers
    assert response.headers["Transfer-Encoding"] == "chunked"
    body = response.raw.read()
    assert len(body) == size
    assert len(json.loads(body)["endpoints"]["items"]) > 10_000


def test_a_client_that_stops_reading_a_chunked_oversize_body_is_logged(
    emu: EmulatorThread, http: requests.Session
) -> None:
    emu.add_fault("oversize", service=SERVICE, bytes=50 * 1024 * 1024, chunked=True, count=1)
    with get(http, emu, stream=True) as response:
        assert len(response.raw.read(1024 * 1024)) == 1024 * 1024
    wait_for_count("the cut-off request logged", lambda: emu.requests(SERVICE)["total"], 1, 10)
    assert [(e["status"], e["fault"]) for e in emu.requests(SERVICE)["log"]] == [(200, "oversize")]
