"""The health benchmark's target server: one process, run inside a network-lab host.

    python -m bench.acceptor --port 9000 [--http-port 9001] [--cpu 1]

Listens on 0.0.0.0, so one socket serves every address of the host's namespace. On `port`
it accepts and closes at once, which is all a TCP check needs. The close is a plain FIN: a
reset could reach the checker before it looked at its socket and fail the check; and the
checker resets its end right after, so no TIME_WAIT piles up on this side either. On
`http-port` it reads the request once, answers a fixed `200` and closes, for HTTP checks.
`cpu` pins it to one core, away from the prober being measured. Prints "ready" when both
listen. Standard library only, single-threaded.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import selectors
import socket
import sys
from collections.abc import Sequence

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def listener(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def _accept_all(lst: socket.socket) -> list[socket.socket]:
    """Every connection waiting in the backlog (a check may already have reset its own)."""
    accepted: list[socket.socket] = []
    while True:
        try:
            conn, _ = lst.accept()
        except (BlockingIOError, InterruptedError):
            return accepted
        except ConnectionAbortedError:
            continue
        accepted.append(conn)


def serve(tcp: socket.socket, http: socket.socket | None) -> None:
    sel = selectors.DefaultSelector()
    sel.register(tcp, selectors.EVENT_READ, "tcp")
    if http is not None:
        sel.register(http, selectors.EVENT_READ, "http")
    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if key.data == "tcp":
                for conn in _accept_all(sock):
                    conn.close()
            elif key.data == "http":
                for conn in _accept_all(sock):
                    conn.setblocking(False)
                    sel.register(conn, selectors.EVENT_READ, "request")
            else:  # the request (or its first bytes: the check reads the status line only)
                sel.unregister(sock)
                with contextlib.suppress(OSError):
                    if sock.recv(4096):
                        sock.send(ANSWER)
                sock.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.acceptor", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--http-port", type=int)
    parser.add_argument("--cpu", type=int, help="pin to this core")
    args = parser.parse_args(argv)
    if args.cpu is not None and args.cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {args.cpu})
    tcp = listener(args.port)
    http = listener(args.http_port) if args.http_port else None
    print("ready", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        serve(tcp, http)
    return 0


if __name__ == "__main__":
    sys.exit(main())
