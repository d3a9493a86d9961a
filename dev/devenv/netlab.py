"""A network lab for end-to-end tests: model-instance hosts in network namespaces, routed.

No bridge: each Host is one namespace joined to the root namespace by one veth pair on a /31
link network (from 10.249.<lab>.0/24). Its service addresses sit on the namespace's `lo`, in
one block per host taken from 10.250.<lab>.0/24 (or, for hosts with more addresses than that
holds, from the lab's /18 of 10.128.0.0/10); the root namespace routes the block via the
host's link address and the host routes back by default, so a host costs one route and one
neighbour entry however many addresses it holds. An `unreachable` route covers every lab
network: traffic for a host whose link is down fails at once instead of leaving the machine
by the default route.

Names, locks, clean-up and the reaper that cleans up after a dead owner: devenv.netns.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any, Self

from devenv import debian
from devenv.instance import Mode, control
from devenv.netns import (
    PREFIX,
    LabNetworks,
    claim_lab,
    ip,
    ip_batch,
    link_name,
    netns_name,
    reap,
    remove,
    spawn_reaper,
)
from devenv.paths import child_env
from devenv.procs import Lifecycle, ManagedProcess, wait_until

MAX_HOSTS = 128  # /31 link networks in a lab's /24
PEER = "veth0"  # the link's end inside a host's namespace


class InstanceServer:
    """The client side of one `devenv.instance` server inside a host's namespace."""

    def __init__(self, host: Host, service: str, port: int, identity: str) -> None:
        self.host, self.service, self.port, self.identity = host, service, port, identity
        self.control_path = host.workdir / f"{host.slot}-{port}.sock"
        self.log_path = host.workdir / f"{host.slot}-{port}.log"
        self._proc: ManagedProcess | None = None

    @property
    def address(self) -> tuple[str, int]:
        return (self.host.ip, self.port)

    @property
    def url(self) -> str:
        return f"http://{self.host.ip}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 10.0) -> Self:
        """Start the server and wait until its control socket says it is listening."""
        if self._proc is not None:
            raise RuntimeError(f"instance {self.identity} already running")
        argv = [sys.executable, "-m", "devenv.instance", "--port", str(self.port)]
        argv += ["--service", self.service, "--identity", self.identity]
        argv += ["--control", str(self.control_path)]
        self._proc = proc = ManagedProcess(
            self.identity, self.host.exec_argv(argv), self.log_path, env=child_env()
        )

        def ready() -> bool:
            proc.check_alive()
            try:
                return bool(self.status()["listening"])
            except OSError:  # the socket is not there yet
                return False

        try:
            wait_until(f"instance {self.identity} listening", ready, timeout, step=0.01)
        except (TimeoutError, RuntimeError) as err:
            self.stop()
            err.add_note(proc.tail())
            raise
        return self

    def status(self) -> dict[str, Any]:
        """Mode, listening, per-path request counts and their total, as the server says."""
        return control(self.control_path, {"op": "status"})

    def set_mode(self, mode: Mode) -> None:
        """ok, error (503 to everything), hang (read, never answer) or refuse (not listening);
        in effect when this returns."""
        control(self.control_path, {"op": "mode", "mode": mode})

    def requests(self, path: str | None = None) -> int:
        """Requests received for `path` (all paths when None) since the server started."""
        status = self.status()
        return int(status["total"] if path is None else status["requests"].get(path, 0))

    def kill(self) -> None:
        """SIGKILL the server process (no clean-up of any kind), and reap it."""
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.stop()
            self._proc = None

    def restart(self, timeout: float = 10.0) -> Self:
        """Start again on the same port with the same identity (counters start from zero)."""
        self.stop()
        return self.start(timeout)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop(timeout=2.0)
            self._proc = None


class Host:
    """One namespace of a NetLab: a veth link to the root namespace and `ips` on its lo."""

    def __init__(self, lab: NetLab, slot: int, block: IPv4Network, addresses: int) -> None:
        self.slot, self.block, self.workdir = slot, block, lab.workdir
        self.name = netns_name(lab.lab, lab.owner, slot)
        self.link = link_name(lab.lab, lab.owner, slot)
        pair = list(lab.networks.link.subnets(new_prefix=31))[slot]
        self.gateway, self.link_address = str(pair[0]), str(pair[1])  # root side, host side
        self.ips = tuple(str(block[i]) for i in range(addresses))
        self.ip = self.ips[0]
        self.servers: list[InstanceServer] = []
        self._procs: list[subprocess.Popen[Any]] = []

    def create(self) -> None:
        """Two ip processes, however many addresses: the root side, then the namespace."""
        ip_batch(
            [
                f"netns add {self.name}",
                f"link add {self.link} type veth peer name {PEER} netns {self.name}",
                f"link set {self.link} alias {self.name} addrgenmode none",
                f"address add {self.gateway}/31 dev {self.link}",
                f"link set {self.link} up",
                self._route("add"),
            ]
        )
        inside = ["link set lo up", f"link set {PEER} addrgenmode none"]
        inside += [f"address add {self.link_address}/31 dev {PEER}", f"link set {PEER} up"]
        inside += [f"route add default via {self.gateway}"]
        ip_batch(inside + [f"address add {addr}/32 dev lo" for addr in self.ips], self.name)

    def _route(self, verb: str) -> str:
        return f"route {verb} {self.block} via {self.link_address} dev {self.link} onlink"

    def link_down(self) -> None:
        """Set the root-side link down: the host's route goes with it, so connections to the
        host fail at once (no route to host) until link_up()."""
        ip("link", "set", self.link, "down")

    def link_up(self) -> None:
        ip_batch([f"link set {self.link} up", self._route("replace")])

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Run `argv` inside the namespace (own session unless told otherwise); the lab
        kills it, and anything it forks, when the host goes."""
        kwargs.setdefault("start_new_session", True)
        proc: subprocess.Popen[Any] = subprocess.Popen(self.exec_argv(argv), **kwargs)
        self._procs.append(proc)
        return proc

    def serve(self, service: str, port: int = 8000, identity: str | None = None) -> InstanceServer:
        """A model-instance server for `service` on `port` of every address of the host."""
        server = InstanceServer(self, service, port, identity or f"{self.name}:{port}")
        self.servers.append(server)
        return server.start()

    def stop_processes(self) -> None:
        """Stop its servers, SIGKILL what popen() started (and its group), reap them all."""
        for server in self.servers:
            server.stop()
        for proc in self._procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)  # its own group, if it leads one
                proc.kill()
            proc.wait()
        self.servers.clear()
        self._procs.clear()


class NetLab(Lifecycle):
    """Hosts in network namespaces under one lab index; `with NetLab() as lab:` (or
    start/stop). `lab` picks the index; by default the first free one from the xdist
    worker's number on."""

    def __init__(self, lab: int | None = None) -> None:
        self._wanted = lab
        self.owner = os.getpid()
        self.lab = -1
        self.hosts: list[Host] = []
        self._workdir: Path | None = None
        self._lock_fd: int | None = None
        self._pipe: int | None = None  # the owner's end of the reaper's stdin
        self._reaper: subprocess.Popen[bytes] | None = None

    @property
    def prefix(self) -> str:
        """What every namespace of this lab is named with."""
        return f"{PREFIX}{self.lab}-{self.owner}-"

    @property
    def networks(self) -> LabNetworks:
        return LabNetworks.of(self.lab)

    @property
    def reaper_pid(self) -> int | None:
        return self._reaper.pid if self._reaper is not None else None

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            raise RuntimeError("NetLab is not started")
        return self._workdir

    def start(self) -> Self:
        if self._lock_fd is not None:
            raise RuntimeError(f"NetLab {self.lab} already started")
        debian.ensure({"ip": "iproute2"})  # absent from slim Debian images
        with self._stopped_on_failure():
            self.lab, self._lock_fd = claim_lab(self._wanted)
            self._workdir = Path(tempfile.mkdtemp(prefix=self.prefix))
            self._start_reaper()
            ip_batch(f"route add unreachable {net}" for net in self.networks.all())
        return self

    def _start_reaper(self) -> None:
        assert self._lock_fd is not None
        self._reaper, self._pipe = spawn_reaper(self.lab, self.owner, self.workdir, self._lock_fd)

    def add_host(self, addresses: int = 1) -> Host:
        """A new host holding `addresses` service addresses (one block, one route)."""
        taken = {host.slot for host in self.hosts}
        slot = next((n for n in range(MAX_HOSTS) if n not in taken), None)
        if slot is None:
            raise RuntimeError(f"NetLab {self.lab} has {MAX_HOSTS} hosts already")
        host = Host(self, slot, self._free_block(addresses), addresses)
        self.hosts.append(host)
        try:
            host.create()
        except BaseException:
            self.remove_host(host)  # whatever half of it was made
            raise
        return host

    def remove_host(self, host: Host) -> None:
        host.stop_processes()
        remove([host.name], [host.link])
        self.hosts.remove(host)

    def _free_block(self, addresses: int) -> IPv4Network:
        if not 1 <= addresses <= self.networks.wide.num_addresses:
            raise ValueError(f"a host holds 1 to {self.networks.wide.num_addresses} addresses")
        prefix = 32 - (addresses - 1).bit_length()
        used = [host.block for host in self.hosts]
        for net in (self.networks.service, self.networks.wide):
            if prefix >= net.prefixlen:
                for block in net.subnets(new_prefix=prefix):
                    if not any(block.overlaps(other) for other in used):
                        return block
        raise RuntimeError(f"NetLab {self.lab} has no free block for {addresses} addresses")

    def stop(self) -> None:
        try:
            for host in self.hosts:
                host.stop_processes()
            self.hosts.clear()
            if self._lock_fd is not None:
                reap(self.lab, self.owner)
        finally:  # whatever failed above, the reaper tries again
            self._release()

    def _release(self) -> None:
        if self._pipe is not None:
            os.close(self._pipe)  # the reaper finds nothing left, and exits
            self._pipe = None
        if self._reaper is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._reaper.wait(timeout=10)
            self._reaper = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
