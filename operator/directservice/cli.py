"""The `directservice` command: run the operator, emulate discovery, print the version.

Errors are one line on stderr with a distinct exit code; never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from directservice import __version__
from directservice.api.spec import Network, parse_duration
from directservice.controller.config import (
    DEFAULT_ALLOWED_HOSTS,
    OperatorConfig,
    parse_cidr,
    parse_host_rule,
    parse_rate_budget,
)
from directservice.core.leases import Timing
from directservice.core.model import DiscoveryError

if TYPE_CHECKING:
    from directservice.controller.runtime import Election

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_DISCOVERY = 3


def _operator_config(args: argparse.Namespace) -> OperatorConfig:
    from directservice.discovery import registry

    budgets = dict(parse_rate_budget(text) for text in args.rate_budget)
    kinds = registry.kinds()
    # Any --allowed-host replaces the defaults, so a list narrowed by hand is never widened.
    hosts = tuple(parse_host_rule(text, kinds) for text in args.allowed_host)

    def cidrs(flag: str, texts: list[str]) -> tuple[Network, ...]:
        return tuple(parse_cidr(text, flag) for text in texts)

    return OperatorConfig(
        min_poll_interval=parse_duration(args.min_poll_interval, "--min-poll-interval"),
        allowed_hosts=hosts or DEFAULT_ALLOWED_HOSTS,
        discovery_cidrs=cidrs("--allow-discovery-cidr", args.allow_discovery_cidr),
        service_cidrs=cidrs("--service-cidr", args.service_cidr),
        pod_cidrs=cidrs("--pod-cidr", args.pod_cidr),
        denied_cidrs=cidrs("--denied-cidr", args.denied_cidr),
        rate_budgets=budgets,
        health_checks_in_flight=args.health_checks_in_flight,
    )


def _election(args: argparse.Namespace) -> Election | None:
    from directservice.controller.runtime import Election

    if not args.leader_election:
        if args.shards != 1:
            raise ValueError("--shards needs --leader-election: shards are Leases")
        return None
    if args.shards < 1:
        raise ValueError(f"--shards must be at least 1, got {args.shards}")
    identity = args.identity or (
        f"{os.environ.get('POD_NAME') or socket.gethostname()}-{secrets.token_hex(3)}"
    )
    return Election(
        identity=identity,
        lease_name=args.lease_name,
        namespace=args.lease_namespace or os.environ.get("POD_NAMESPACE") or "default",
        shards=args.shards,
        timing=Timing(
            duration=parse_duration(args.lease_duration, "--lease-duration"),
            renew_deadline=parse_duration(args.renew_deadline, "--renew-deadline"),
            retry_period=parse_duration(args.retry_period, "--retry-period"),
        ),
    )


def _run(args: argparse.Namespace) -> int:
    from directservice.controller.clientless import without_client_libraries

    with without_client_libraries():  # kopf would load the kubernetes client (17 MiB)
        from directservice.controller import handlers
    from directservice.controller.runtime import Options
    from directservice.obs import logs, metrics

    options = Options(
        config=_operator_config(args),
        namespaces=tuple(args.namespace),
        liveness=args.liveness,
        election=_election(args),
    )
    logs.configure(args.log_level, args.log_format)
    if args.metrics_address:
        metrics.serve(args.metrics_address)
    asyncio.run(handlers.run(options))
    return EXIT_OK


def _discover(args: argparse.Namespace) -> int:
    from directservice import offline

    _obj, spec = offline.load_directservice(args.file)
    discovery = offline.discover(spec)
    print(offline.discovery_table(discovery, spec.exclude))
    return EXIT_OK


def _render(args: argparse.Namespace) -> int:
    from directservice import offline

    obj, spec = offline.load_directservice(args.file)
    print(offline.render_objects(obj, spec, offline.discover(spec)), end="")
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
    run.add_argument("--log-format", default="text", choices=["text", "json"])
    run.add_argument(
        "--metrics-address",
        default="0.0.0.0:9090",
        help="HOST:PORT for Prometheus /metrics; empty disables",
    )
    run.add_argument(
        "--min-poll-interval",
        default="1s",
        help="floor for every DirectService's pollInterval (protects discovery quotas)",
    )
    run.add_argument(
        "--health-checks-in-flight",
        type=int,
        default=4096,
        metavar="N",
        help="most active health checks running at once, over all DirectServices",
    )
    defaults = " ".join(str(rule) for rule in DEFAULT_ALLOWED_HOSTS)
    run.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="[PROVIDER=]GLOB",
        help="discovery host glob, for one provider or all (repeatable; replaces the default: "
        f"{defaults}; '*' allows any host, unsafe where DirectService authors are not admins)",
    )
    run.add_argument(
        "--allow-discovery-cidr",
        action="append",
        default=[],
        metavar="CIDR",
        help="network discovery may connect to although loopback, link-local, unspecified, "
        "multicast or a cloud metadata address (repeatable; default: none)",
    )
    for flag, what in (
        ("--service-cidr", "the cluster's Service network"),
        ("--pod-cidr", "the cluster's pod network"),
        ("--denied-cidr", "another network, e.g. the nodes' or the API server's"),
    ):
        run.add_argument(
            flag,
            action="append",
            default=[],
            metavar="CIDR",
            help=f"{what}: no published address may fall in it (repeatable)",
        )
    run.add_argument(
        "--rate-budget",
        action="append",
        default=[],
        help="PROVIDER=CALLS_PER_MINUTE shared per credential, e.g. modelArts=20 (repeatable)",
    )
    ha = run.add_argument_group("leader election and shards (coordination.k8s.io Leases)")
    ha.add_argument(
        "--leader-election",
        action="store_true",
        help="serve only the shards whose Lease this replica holds (default: standalone)",
    )
    ha.add_argument("--lease-name", default="directservice-operator", help="Lease name prefix")
    ha.add_argument(
        "--lease-namespace", default="", help="namespace of the Leases (default: $POD_NAMESPACE)"
    )
    ha.add_argument("--lease-duration", default="15s", help="how long a Lease lasts unrenewed")
    ha.add_argument(
        "--renew-deadline", default="10s", help="stop serving this long after the last renewal"
    )
    ha.add_argument("--retry-period", default="1s", help="how often every Lease is read")
    ha.add_argument("--shards", type=int, default=1, help="shards across replicas (default 1)")
    ha.add_argument("--identity", default="", help="this replica's name in the Leases")
    run.add_argument(
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        help="liveness endpoint URL served by the operator",
    )

    discover = sub.add_parser(
        "discover",
        help="run a DirectService's discovery once, no cluster: what would be published/dropped",
    )
    discover.add_argument("-f", "--file", required=True, help="DirectService YAML ('-': stdin)")
    render = sub.add_parser(
        "render", help="print the Service and EndpointSlices the operator would write, no cluster"
    )
    render.add_argument("-f", "--file", required=True, help="DirectService YAML ('-': stdin)")

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
        if args.command == "discover":
            return _discover(args)
        if args.command == "render":
            return _render(args)
    except KeyboardInterrupt:
        return EXIT_OK
    except DiscoveryError as exc:
        print(f"directservice: discovery failed: {exc.reason}: {exc.message}", file=sys.stderr)
        return EXIT_DISCOVERY
    except Exception as exc:  # one line for the user, never a traceback
        print(f"directservice: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    parser.error(f"unknown command {args.command}")
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
