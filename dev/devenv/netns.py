"""The network lab's plumbing: names, address space, ip(8), locks and clean-up.

Names carry the lab index and the owner's PID: namespaces `dsvt<lab>-<pid>-<slot>`, root-side
links `dsvt<lab:02x><pid:06x><slot:02x>` (interface names stop at 15 characters; the link's
alias holds its namespace's name). The owner and its reaper hold the lab index with a flock
in /run/lock/directservice-netlab, so xdist workers and concurrent runs never share one.
Clean-up is idempotent and happens three ways: NetLab.stop(); a reaper process in its own
session that cleans up when the pipe from its owner reaches EOF (the owner stopped, or died
even by SIGKILL); and, at start-up, removal of what dead owners left in any lab.

    python -m devenv.netns reap --lab 3 --owner 1234 --workdir /tmp/...   (the reaper)
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

from devenv.paths import child_env

PREFIX = "dsvt"
LABS = 256  # one /24 link network and one /24 service network each
LOCK_DIR = Path("/run/lock/directservice-netlab")
NETNS_DIR = Path("/run/netns")  # where `ip netns` mounts the namespaces it names
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


# -- the reaper ----------------------------------------------------------------------------


def _reaper_log(lab: int) -> Path:
    return LOCK_DIR / f"lab-{lab}.reaper.log"


def spawn_reaper(
    lab: int, owner: int, workdir: Path, lock_fd: int
) -> tuple[subprocess.Popen[bytes], int]:
    """Start the reaper of lab `lab` in its own session: the process, and the owner's end of
    its stdin (closing it, or the owner's death, sets the reaper cleaning up)."""
    read_end, pipe = os.pipe()  # both ends non-inheritable: no other child holds it
    argv = [sys.executable, "-m", "devenv.netns", "reap", "--lab", str(lab)]
    argv += ["--owner", str(owner), "--workdir", str(workdir)]
    try:
        with _reaper_log(lab).open("wb") as log:
            # It inherits the lock too: the index stays taken until it has cleaned up.
            reaper = subprocess.Popen(
                argv,
                stdin=read_end,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(lock_fd,),
                start_new_session=True,
                env=child_env(),
            )
    except BaseException:
        os.close(pipe)
        raise
    finally:
        os.close(read_end)
    return reaper, pipe


def _reap_when_orphaned(lab: int, owner: int, workdir: Path) -> None:
    """Block until the owner's end of stdin closes (stop, exit or SIGKILL), then clean up."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the owner's to handle
    while os.read(0, 4096):
        pass
    reap(lab, owner)
    shutil.rmtree(workdir, ignore_errors=True)
    _reaper_log(lab).unlink(missing_ok=True)  # kept only when clean-up raised


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devenv.netns", description=__doc__)
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
