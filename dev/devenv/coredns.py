"""CoreDNS serving cluster.local from a ControlPlane, on a free loopback port (UDP and TCP).

It runs outside any cluster, so the kubernetes plugin reads the control plane through a
kubeconfig (as admin: it lists and watches Services, EndpointSlices and Namespaces).
"""

from __future__ import annotations

import random
import shutil
import socket
import struct
import subprocess
import tempfile
from pathlib import Path
from typing import Self

from devenv.controlplane import CONTEXT, ControlPlane
from devenv.procs import Lifecycle, ManagedProcess, free_port, http_ok, wait_until
from devenv.tools import resolve

HOST = "127.0.0.1"


class CoreDNS(Lifecycle):
    """A CoreDNS process answering for `zone` from a running ControlPlane (or a kubeconfig)."""

    def __init__(
        self,
        cluster: ControlPlane | Path,
        *,
        context: str | None = CONTEXT,
        binary: Path | None = None,
        zone: str = "cluster.local",
        ttl: int = 5,
        query_log: bool = False,
        timeout: float = 30.0,
    ) -> None:
        self._cluster = cluster
        self._context = context
        self._binary = binary
        self.zone = zone
        self.ttl = ttl
        self._query_log = query_log
        self._timeout = timeout
        self._proc: ManagedProcess | None = None
        self.workdir: Path | None = None
        self.host = HOST
        self.port = 0

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) to send DNS queries to, over UDP or TCP."""
        return (self.host, self.port)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def corefile(self, ready_port: int, health_port: int, *, bind: bool) -> str:
        path = self._cluster if isinstance(self._cluster, Path) else self._cluster.kubeconfig
        kubeconfig = f"{path} {self._context or ''}".strip()
        lines = [
            f".:{self.port} {{",
            # Without the bind plugin CoreDNS listens on every interface; we only query loopback.
            f"    bind {HOST}" if bind else "",
            "    errors",
            "    log" if self._query_log else "",
            f"    health {HOST}:{health_port}",
            f"    ready {HOST}:{ready_port}",
            f"    kubernetes {self.zone} {{",
            f"        kubeconfig {kubeconfig}",
            f"        ttl {self.ttl}",
            "    }",
            "}",
        ]
        return "\n".join(line for line in lines if line) + "\n"

    def start(self) -> Self:
        if self._proc is not None:
            raise RuntimeError("CoreDNS already started")
        binary = self._binary or resolve().coredns
        self.workdir = Path(tempfile.mkdtemp(prefix="directservice-coredns-"))
        with self._stopped_on_failure():
            self.port = free_port(udp=True)
            ready_port, health_port = free_port(), free_port()
            corefile = self.workdir / "Corefile"
            corefile.write_text(
                self.corefile(ready_port, health_port, bind=_has_plugin(binary, "bind"))
            )
            self._proc = ManagedProcess(
                "coredns",
                [str(binary), "-conf", str(corefile)],
                self.workdir / "coredns.log",
                cwd=self.workdir,
            )
            self._wait_ready(self._proc, ready_port)
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()
            self._proc = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def _wait_ready(self, proc: ManagedProcess, ready_port: int) -> None:
        def ready() -> bool:
            proc.check_alive()
            ready_url = f"http://{HOST}:{ready_port}/ready"
            return http_ok(ready_url) and _answers(HOST, self.port, self.zone)

        try:
            # /ready turns 200 once the kubernetes plugin has synced its informers.
            wait_until("CoreDNS /ready and a DNS answer", ready, self._timeout)
        except (TimeoutError, RuntimeError) as err:
            raise RuntimeError(f"CoreDNS failed to start: {err}\n{proc.tail()}") from err


def _has_plugin(binary: Path, name: str) -> bool:
    listing = subprocess.run(
        [str(binary), "-plugins"], capture_output=True, text=True, check=True
    ).stdout
    return name in listing.split()


def _answers(host: str, port: int, zone: str) -> bool:
    """Whether a minimal DNS query over UDP gets a reply (any rcode) with our query id.

    Hand-rolled so the dev environment does not need a DNS library at runtime.
    """
    query_id = random.randrange(1 << 16)
    header = struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0)  # RD set, one question
    question = b"".join(bytes([len(p)]) + p.encode() for p in zone.split(".") if p)
    packet = header + question + b"\x00" + struct.pack("!HH", 6, 1)  # SOA, IN
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        try:
            sock.sendto(packet, (host, port))
            reply = sock.recv(4096)
        except OSError:
            return False
    return len(reply) >= 2 and struct.unpack("!H", reply[:2])[0] == query_id
