"""A network lab for end-to-end tests: model-instance hosts in network namespaces, routed.

No bridge: each Host is one namespace joined to the root namespace by one veth pair on a /31
link network (from 10.249.<lab>.0/24). Its service addresses sit on the namespace's `lo`, in
one block per host taken from 10.250.<lab>.0/24 (or, for hosts with more addresses than that
holds, from the lab's /18 of 10.128.0.0/10); the root namespace routes the block via the
host's link address and the host routes back by default, so a host costs one route and one
neighbour entry however many addresses it holds. An `unreachable` route covers every lab
network: traffic for a host whose link is down fails at once instead of leaving the machine
by the default route.

Names carry the lab index and the owner's PID: namespaces `dsvt<lab>-<pid>-<slot>`, root-side
links `dsvt<lab:02x><pid:06x><slot:02x>` (interface names stop at 15 characters; the link's
alias holds its namespace's name). The owner and its reaper hold the lab index with a flock
in /run/lock/directservice-netlab, so xdist workers and concurrent runs never share one.
Clean-up is idempotent and happens three ways: stop(); a reaper process in its own session
that cleans up when the pipe from its owner reaches EOF (the owner stopped, or died even by
SIGKILL); and, at start-up, removal of what dead owners left in any lab.

    python -m devenv.netlab reap --lab 3 --owner 1234 --workdir /tmp/...   (the reaper)
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any, Self

from devenv import debian
from devenv.instance import Mode, control
from devenv.paths import child_env
from devenv.procs import Lifecycle, ManagedProcess, wait_until

PREFIX = "dsvt"
LABS = 256  # one /24 link network and one /24 service network each
MAX_HOSTS = 128  # /31 link networks in a lab's /24
LOCK_DIR = Path("/run/lock/directservice-netlab")
NETNS_DIR = Path("/run/netns")  # where `ip netns` mounts the namespaces it names
PEER = "veth0"  # the link's end inside a host's namespace
_WIDE_POOL = IPv4Network("10.128.0.0/10")
_WIDE_PREFIX = 18  # 16384 addresses per lab
_NETNS_NAME = re.compile(rf"{PREFIX}(\d+)-(\d+)-(\d+)")
_WORKDIR_NAME = re.compile(rf"{PREFIX}\d+-(\d+)-\w+")  # mkdtemp(prefix=NetLab.prefix)
_LINK_NAME = re.compile(rf"{PREFIX}([0-9a-f]{{2}})([0-9a-f]{{6}})([0-9a-f]{{2}})")


@dataclass(frozen=True)
class LabNetworks:
    """The address space of one lab index: no two indices overlap."""

    link: IPv4Network  # a /31 per host, root side first
    service: IPv4Network
    wide: IPv4Network  # for hosts whose block does not fit in `service`

    @classmethod
    def of(cls, lab: int) -> LabNetworks:
        wide = IPv4Address(int(_WIDE_POOL.network_address) + (lab << (32 - _WIDE_PREFIX)))
        return cls(
            IPv4Network(f"10.249.{lab}.0/24"),
            IPv4Network(f"10.250.{lab}.0/24"),
            IPv4Network(f"{wide}/{_WIDE_PREFIX}"),
        )

    def all(self) -> tuple[IPv4Network, ...]:
        return (self.link, self.service, self.wide)


def netns_name(lab: int, owner: int, slot: int) -> str:
    return f"{PREFIX}{lab}-{owner}-{slot}"


def link_name(lab: int, owner: int, slot: int) -> str:
    return f"{PREFIX}{lab:02x}{owner:06x}{slot:02x}"  # 14 characters: pid_max is at most 2**22


def owner_of(name: str) -> tuple[int, int] | None:
    """(lab, owner pid) of a lab namespace or link name; None for any other name."""
    if match := _NETNS_NAME.fullmatch(name):
        return int(match[1]), int(match[2])
    if match := _LINK_NAME.fullmatch(name):
        return int(match[1], 16), int(match[2], 16)
    return None


# -- ip(8) ---------------------------------------------------------------------------------


def ip(*args: str) -> str:
    """Run `ip ARGS`; its output. Raises RuntimeError with ip's message on failure."""
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def ip_batch(commands: Iterable[str], netns: str | None = None, *, force: bool = False) -> None:
    """Run many ip commands in one process (`ip -batch`), inside `netns` if given.

    `force` carries on past failing commands and ignores them (for idempotent clean-up)."""
    argv = ["ip", *(["-n", netns] if netns else []), *(["-force"] if force else []), "-b", "-"]
    script = "".join(f"{command}\n" for command in commands)
    if not script:
        return
    proc = subprocess.run(argv, input=script, capture_output=True, text=True, check=False)
    if proc.returncode and not force:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")


def namespaces() -> list[str]:
    return [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]


def links() -> list[str]:
    """Names of the root namespace's veth links (`ip -o` lines read "7: name@peer: <...")."""
    out = ip("-o", "link", "show", "type", "veth")
    return [line.split(": ", 2)[1].split("@")[0] for line in out.splitlines() if ": " in line]


# -- clean-up ------------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (a dead owner not yet reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"  # the state follows "(comm)"


def _kill_inside(names: Sequence[str]) -> None:
    """SIGKILL every process whose network namespace is one of `names`."""
    wanted: set[tuple[int, int]] = set()
    for name in names:
        with contextlib.suppress(OSError):
            st = os.stat(NETNS_DIR / name)
            wanted.add((st.st_dev, st.st_ino))
    if not wanted:
        return
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                st = os.stat(f"/proc/{entry.name}/ns/net")
                if (st.st_dev, st.st_ino) in wanted:
                    os.kill(int(entry.name), signal.SIGKILL)


def remove(netns: Sequence[str], veths: Sequence[str]) -> None:
    """Kill the processes inside `netns`, then delete `veths` (each takes its peer along:
    a deleted namespace would free its links only later) and the namespaces."""
    _kill_inside(netns)
    ip_batch((f"link del {name}" for name in veths), force=True)
    ip_batch((f"netns del {name}" for name in netns), force=True)


def _drop_lab_routes(lab: int) -> None:
    ip_batch((f"route del unreachable {net}" for net in LabNetworks.of(lab).all()), force=True)


def reap(lab: int, owner: int) -> None:
    """Remove every namespace, link and route that lab `lab` of `owner` made (idempotent).
    Only the holder of the lab's lock may call it: the lab's routes go too."""
    remove(
        [n for n in namespaces() if owner_of(n) == (lab, owner)],
        [n for n in links() if owner_of(n) == (lab, owner)],
    )
    _drop_lab_routes(lab)


def sweep() -> None:
    """Remove the namespaces, links and work dirs dead owners left, in any lab (a zombie
    owner counts as dead)."""

    def left_over(name: str) -> bool:
        owner = owner_of(name)
        return owner is not None and not pid_alive(owner[1])

    remove([n for n in namespaces() if left_over(n)], [n for n in links() if left_over(n)])
    for workdir in Path(tempfile.gettempdir()).glob(f"{PREFIX}*-*-*"):
        owner = _WORKDIR_NAME.fullmatch(workdir.name)
        if owner and workdir.is_dir() and not pid_alive(int(owner[1])):
            shutil.rmtree(workdir, ignore_errors=True)


def routes_into(nets: Iterable[IPv4Network]) -> list[str]:
    """Routes of the main table inside `nets` (a route covering them, such as the default
    route, is no conflict: the lab's more specific routes win, and nothing leaks)."""
    found = (ip("-4", "route", "show", "root", str(net)).splitlines() for net in nets)
    return [line for lines in found for line in lines if line.strip()]


def claim_lab(wanted: int | None = None) -> tuple[int, int]:
    """Lock a free lab index (`wanted`, or the first free one from the xdist worker's number
    on), cleared of leftovers: (lab, the locked file descriptor)."""
    if shutil.which("ip") is None or os.geteuid() != 0:
        raise RuntimeError("the network lab runs as root and needs ip(8), from iproute2")
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    worker = re.fullmatch(r"gw(\d+)", os.environ.get("PYTEST_XDIST_WORKER", ""))
    start = int(worker[1]) % LABS if worker else 0
    order = [wanted] if wanted is not None else [(start + i) % LABS for i in range(LABS)]
    sweep()
    for lab in order:
        fd = os.open(LOCK_DIR / f"lab-{lab}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        # Names of a live owner (a reused PID, or a run that ignores the lock) mean hands off.
        owners = (owner_of(name) for name in namespaces() + links())
        if not any(owner is not None and owner[0] == lab for owner in owners):
            _drop_lab_routes(lab)  # an owner that died before its reaper ran left them
            if not routes_into(LabNetworks.of(lab).all()):
                return lab, fd
        os.close(fd)  # in use, or the machine routes these networks itself: leave it alone
    raise RuntimeError(f"no free lab index among {order[:8]}{'...' if len(order) > 8 else ''}")


# -- the live objects ----------------------------------------------------------------------


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
        read_end, self._pipe = os.pipe()  # both ends non-inheritable: no other child holds it
        argv = [sys.executable, "-m", "devenv.netlab", "reap", "--lab", str(self.lab)]
        argv += ["--owner", str(self.owner), "--workdir", str(self.workdir)]
        try:
            with _reaper_log(self.lab).open("wb") as log:
                # It inherits the lock too: the index stays taken until it has cleaned up.
                self._reaper = subprocess.Popen(
                    argv,
                    stdin=read_end,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    pass_fds=(self._lock_fd,),
                    start_new_session=True,
                    env=child_env(),
                )
        finally:
            os.close(read_end)

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


def _reaper_log(lab: int) -> Path:
    return LOCK_DIR / f"lab-{lab}.reaper.log"


def _reap_when_orphaned(lab: int, owner: int, workdir: Path) -> None:
    """Block until the owner's end of stdin closes (stop, exit or SIGKILL), then clean up."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the owner's to handle
    while os.read(0, 4096):
        pass
    reap(lab, owner)
    shutil.rmtree(workdir, ignore_errors=True)
    _reaper_log(lab).unlink(missing_ok=True)  # kept only when clean-up raised


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devenv.netlab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    reaper = commands.add_parser("reap", help="clean up a lab once its owner's pipe closes")
    reaper.add_argument("--lab", type=int, required=True)
    reaper.add_argument("--owner", type=int, required=True)
    reaper.add_argument("--workdir", type=Path, required=True)
    args = parser.parse_args(argv)
    _reap_when_orphaned(args.lab, args.owner, args.workdir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
