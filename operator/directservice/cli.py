"""The `directservice` command: run the operator, emulate discovery, print the version.

Errors are one line on stderr with a distinct exit code; never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from directservice import __version__

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


def _run(args: argparse.Namespace) -> int:
    import kopf

    import directservice.handlers  # noqa: F401  (registers the handlers)

    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    memo = kopf.Memo(standalone=not args.peering, peering_name=args.peering or "")
    asyncio.run(
        kopf.operator(
            clusterwide=not args.namespace,
            namespaces=args.namespace or (),
            standalone=not args.peering,
            peering_name=args.peering or None,
            liveness_endpoint=args.liveness,
            memo=memo,
        )
    )
    return EXIT_OK


def _emulate(argv: Sequence[str]) -> int:
    from directservice.emulator import main as emulator_main

    return emulator_main(list(argv))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="directservice",
        description="Publish managed inference instances as headless Services + EndpointSlices.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator against the current kubeconfig")
    run.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable); default: all namespaces",
    )
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.add_argument(
        "--peering",
        default="",
        help="kopf peering object name for active/standby replicas (default: standalone)",
    )
    run.add_argument(
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        help="liveness endpoint URL served by the operator",
    )

    sub.add_parser(
        "emulate", help="run the discovery emulator (see: directservice emulate -h)", add_help=False
    )
    sub.add_parser("version", help="print the version")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["emulate"]:
        return _emulate(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    try:
        if args.command == "version":
            print(__version__)
            return EXIT_OK
        if args.command == "run":
            return _run(args)
    except KeyboardInterrupt:
        return EXIT_OK
    except Exception as exc:  # one line for the user, never a traceback
        print(f"directservice: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    parser.error(f"unknown command {args.command}")
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
