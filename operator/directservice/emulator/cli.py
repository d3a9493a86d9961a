"""``directservice emulate``: run the discovery emulator until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from .server import create_app, start_server
from .state import DEFAULT_LOG_SIZE, ConfigError, EmulatorState, load_config

log = logging.getLogger("directservice.emulator")


def build_parser(prog: str = "directservice emulate") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve the PAI-EAS service-discovery API from a file, with an admin API "
        "under /admin to change instances and inject faults while running.",
    )
    parser.add_argument("--config", metavar="FILE", help="YAML or JSON file with 'services'")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (0: any free)")
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
        services = load_config(args.config).values() if args.config else ()
    except (OSError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    state = EmulatorState(services, log_size=args.request_log_size)
    try:
        asyncio.run(_serve(state, args.host, args.port, log_requests=args.log_requests))
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve(state: EmulatorState, host: str, port: int, *, log_requests: bool) -> None:
    server = await start_server(create_app(state, log_requests=log_requests), host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Printed on stdout so scripts that passed --port 0 can read the real address.
    print(f"emulator listening on {server.url}", flush=True)
    log.info("serving %d service(s); admin API under %s/admin", len(state.services()), server.url)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await server.stop()
