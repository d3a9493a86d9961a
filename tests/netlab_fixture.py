"""The network lab as pytest fixtures: register with `pytest_plugins = ["netlab_fixture"]`.

`netlab` is one NetLab per session, so per xdist worker: each worker claims its own lab index,
with its own namespaces and subnets. `netlab_host` is a fresh host with one address for one
test, removed afterwards (a lab holds at most 128 hosts at a time).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devenv.netlab import Host, NetLab


@pytest.fixture(scope="session")
def netlab() -> Iterator[NetLab]:
    with NetLab() as lab:
        yield lab


@pytest.fixture
def netlab_host(netlab: NetLab) -> Iterator[Host]:
    host = netlab.add_host()
    yield host
    netlab.remove_host(host)
