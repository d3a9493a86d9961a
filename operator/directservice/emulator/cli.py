"""``directservice emulate``: run the discovery emulator until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from .errors import ConfigError
from .server import create_app, start_server
from .state import DEFAULT_LOG_SIZE, EmulatorState, load_document, parse_config
from .tls import self_signed

log = logging.getLogger("directservice.emulator")


def build_parser(prog: str = "directservice emulate") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve the PAI-EAS and ModelArts service-discovery APIs (and a ModelArts "
        "IAM login) from a file, with an admin API under /admin to change instances and "
        "inject faults while running.",
    )
    parser.add_argument("--config", metavar="FILE", help="YAML or JSON file with 'services'")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (0: any free)")
    parser.add_argument(
        "--also-listen",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="also serve on ADDRESS, at the same port (repeatable): one emulator then stands "
        "for several discovery hosts, e.g. 127.0.0.2 and 127.0.0.3",
    )
    parser.add_argument(
        "--tls-port",
        type=int,
        metavar="PORT",
        help="also serve HTTPS on PORT (0: any free) with a self-signed certificate made by "
        "openssl at start; clients that do not trust it fail with a TLS error",
    )
    parser.add_argument(
        "--log-requests", action="store_true", help="log every discovery request to stderr"
    )
    parser.add_argument(
        "--request-log-size",
        type=int,
        default=DEFAULT_LOG_SIZE,
        metavar="N",
        help="how many requests GET /admin/requests keeps",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        document = load_document(args.config) if args.config else None
        state = EmulatorState(parse_config(document).values(), log_size=args.request_log_size)
        state.configure(document)
    except (OSError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(
            _serve(
                state,
                args.host,
                args.port,
                log_requests=args.log_requests,
                tls_port=args.tls_port,
                also_on=args.also_listen,
            )
        )
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve(
    state: EmulatorState,
    host: str,
    port: int,
    *,
    log_requests: bool,
    tls_port: int | None,
    also_on: Sequence[str] = (),
) -> None:
    app = create_app(state, log_requests=log_requests)
    with tempfile.TemporaryDirectory(prefix="emulator-tls-") as tls_dir:
        context = None
        if tls_port is not None:
            context = (await asyncio.to_thread(self_signed, Path(tls_dir))).server_context()
        server = await start_server(
            app, host, port, tls_port=tls_port, ssl_context=context, also_on=also_on
        )
        await _run_until_signalled(state, server.url, server.https_url, server.stop)


async def _run_until_signalled(
    state: EmulatorState,
    url: str,
    https_url: str | None,
    stop_server: Callable[[], Awaitable[None]],
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Printed on stdout so scripts that passed --port 0 can read the real address.
    print(f"emulator listening on {url}", flush=True)
    if https_url is not None:
        print(f"emulator listening on {https_url}", flush=True)
    log.info("serving %d service(s); admin API under %s/admin", len(state.services()), url)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await stop_server()
