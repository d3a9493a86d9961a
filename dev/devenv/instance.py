"""A model instance for the network lab: an HTTP server run inside a host's network namespace.

`POST /api/predict/<service>` echoes who answered (identity, the local address the request
came to, its Authorization header, the body); `GET /healthz` answers 200. A test steers it
over a Unix-domain socket, which works across network namespaces and while the host's link
is down: switch the mode (ok, error: 503 to everything, hang: read but never answer, refuse:
listening socket closed) and read the per-path request counters.

    python -m devenv.instance --port 8000 --service m --identity a --control /tmp/x.sock

Standard library only: it runs with nothing but the interpreter inside the namespace.
"""

from __future__ import annotations

import argparse
import json
import socket
import socketserver
import sys
import threading
from collections import Counter
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal, cast, get_args
from urllib.parse import urlsplit

Mode = Literal["ok", "error", "hang", "refuse"]
MODES: tuple[Mode, ...] = get_args(Mode)
BODY_LIMIT = 1 << 20  # larger bodies are refused with 413 (read no further)
ECHO_LIMIT = 4096  # characters of the body echoed back


class Instance:
    """The state shared by request threads and the control channel, and the HTTP listener.

    The listener is closed in mode `refuse` and bound again (same address and port) on leaving
    it; requests parked by `hang` are released when the mode changes.
    """

    def __init__(self, bind: str, port: int, service: str, identity: str) -> None:
        self.bind, self.port, self.service, self.identity = bind, port, service, identity
        self.mode: Mode = "ok"
        self.requests: Counter[str] = Counter()
        self._changed = threading.Condition()
        self._http: _HTTPServer | None = None
        self._listen()

    def count(self, path: str) -> None:
        with self._changed:
            self.requests[path] += 1

    def mode_after_hang(self) -> Mode:
        """The mode, once it is no longer `hang` (parks the calling request thread)."""
        with self._changed:
            self._changed.wait_for(lambda: self.mode != "hang")
            return self.mode

    def set_mode(self, mode: Mode) -> None:
        """Switch modes; returns once the listener is closed or open as the mode says."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
        with self._changed:
            self.mode = mode
            self._changed.notify_all()
        if mode == "refuse" and self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        elif mode != "refuse" and self._http is None:
            self._listen()

    def status(self) -> dict[str, Any]:
        with self._changed:
            counts = dict(self.requests)
        return {
            "identity": self.identity,
            "port": self.port,
            "mode": self.mode,
            "listening": self._http is not None,
            "requests": counts,
            "total": sum(counts.values()),
        }

    def _listen(self) -> None:
        server = _HTTPServer(self)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        self._http = server


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        super().__init__((instance.bind, instance.port), _PredictHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would look the bind address up by reverse DNS: a query that
        # must not leave the namespace (and could stall start-up for the resolver's timeout).
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.instance.bind, self.server_address[1]
        self.instance.port = self.server_port  # port 0 picks one; refuse → ok rebinds it

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timed out on a hang) is expected, not worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _PredictHandler(BaseHTTPRequestHandler):
    server: _HTTPServer

    # HTTP/1.0: one request per connection, so a mode change applies to the very next request.
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        instance = self.server.instance
        path = urlsplit(self.path).path
        instance.count(path)
        length = int(self.headers.get("Content-Length") or 0)
        if length > BODY_LIMIT:
            self._reply(413, {"error": "body too large"})
            return
        body = self.rfile.read(length) if length > 0 else b""
        mode = instance.mode_after_hang()
        if mode == "refuse":  # released from a hang into refuse: drop the connection unanswered
            self.close_connection = True
        elif mode == "error":
            self._reply(503, {"error": "instance in error mode", "identity": instance.identity})
        elif self.command == "GET" and path == "/healthz":
            self._reply(200, {"identity": instance.identity})
        elif self.command == "POST" and path == f"/api/predict/{instance.service}":
            self._reply(200, self._echo(instance, body))
        else:
            self._reply(404, {"error": f"no route for {self.command} {path}"})

    def _echo(self, instance: Instance, body: bytes) -> dict[str, Any]:
        return {
            "identity": instance.identity,
            "service": instance.service,
            "address": self.connection.getsockname()[0],
            "authorization": self.headers.get("Authorization"),
            "body": body.decode("utf-8", errors="replace")[:ECHO_LIMIT],
        }

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: thousands of requests would only fill the log."""


class _ControlHandler(socketserver.StreamRequestHandler):
    """One JSON request line in, one JSON reply line out: {"op": "status"} or
    {"op": "mode", "mode": "hang"}; errors come back as {"error": "..."}."""

    def handle(self) -> None:
        instance = cast(_ControlServer, self.server).instance
        try:
            request = json.loads(self.rfile.readline(4096))
            if request.get("op") == "mode":
                instance.set_mode(cast(Mode, request.get("mode")))
            elif request.get("op") != "status":
                raise ValueError(f"unknown op {request.get('op')!r}")
            reply = instance.status()
        except (ValueError, OSError) as err:
            reply = {"error": str(err)}
        self.wfile.write(json.dumps(reply).encode() + b"\n")


class _ControlServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path, instance: Instance) -> None:
        super().__init__(str(path), _ControlHandler)
        self.instance = instance


def control(path: Path, request: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Send one control request to the instance listening on `path`; its reply, parsed.

    Raises OSError when nothing listens there and RuntimeError when the instance refuses it.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(json.dumps(request).encode() + b"\n")
        with sock.makefile("rb") as stream:
            line = stream.readline(1 << 20)
    if not line:
        raise OSError(f"the instance at {path} closed the control connection unanswered")
    reply: dict[str, Any] = json.loads(line)
    if "error" in reply:
        raise RuntimeError(f"instance control {request}: {reply['error']}")
    return reply


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devenv.instance", description=__doc__)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--bind", default="0.0.0.0", help="every address of the host")
    parser.add_argument("--service", default="model")
    parser.add_argument("--identity", required=True)
    parser.add_argument("--control", type=Path, required=True, help="Unix socket to listen on")
    args = parser.parse_args(argv)
    instance = Instance(args.bind, args.port, args.service, args.identity)
    # The control socket exists only once the HTTP listener is bound: its answer means ready.
    args.control.unlink(missing_ok=True)  # left by a killed predecessor (restart)
    with _ControlServer(args.control, instance) as control_server:
        control_server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
