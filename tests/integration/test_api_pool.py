"""The bounded API session against the real API server: a burst of requests shares at most
`limit` TLS connections, where kopf's unbounded pool opens one per request in flight.
Connections are counted as the kernel sees them: this process's sockets to the API server's
port, which the pools keep open (keep-alive) until the session closes."""

from __future__ import annotations

import asyncio
import os
import ssl
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

from devenv.controlplane import ControlPlane
from directservice.controller.apisession import bounded_session

pytestmark = pytest.mark.integration

BURST = 40


def sockets_to(port: int) -> int:
    """This process's established TCP sockets whose peer listens on `port`."""
    fds = Path("/proc/self/fd")
    inodes = set()
    for fd in os.listdir(fds):
        target = os.readlink(fds / fd) if (fds / fd).is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    count = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            peer_port = int(fields[2].rsplit(":", 1)[1], 16)
            if peer_port == port and fields[3] == "01" and fields[9] in inodes:
                count += 1
    return count


async def connections_for_a_burst(cp: ControlPlane, session: aiohttp.ClientSession) -> int:
    """The connections a burst of BURST concurrent requests opened."""
    port = urlsplit(cp.server).port
    assert port is not None
    before = sockets_to(port)

    async def one() -> None:
        async with session.get(f"{cp.server}/api/v1/namespaces/default") as response:
            assert response.status == 200, await response.text()

    async with session:
        await asyncio.gather(*(one() for _ in range(BURST)))
        return sockets_to(port) - before


def tls(cp: ControlPlane) -> tuple[ssl.SSLContext, dict[str, str]]:
    return ssl.create_default_context(cafile=str(cp.ca_file)), {
        "Authorization": f"Bearer {cp.admin_token}"
    }


def test_a_burst_shares_the_bounded_pool(control_plane: ControlPlane) -> None:
    context, headers = tls(control_plane)

    async def bounded() -> int:
        return await connections_for_a_burst(
            control_plane, bounded_session(limit=4, ssl_context=context, headers=headers)
        )

    async def unbounded() -> int:  # kopf's own pool: aiohttp's limit=0
        connector = aiohttp.TCPConnector(limit=0, ssl=context)
        return await connections_for_a_burst(
            control_plane, aiohttp.ClientSession(connector=connector, headers=headers)
        )

    assert 1 <= asyncio.run(bounded()) <= 4
    assert asyncio.run(unbounded()) > 4  # what the bound is for
