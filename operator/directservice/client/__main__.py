"""`python -m directservice.client SERVICE.NAMESPACE --data '{...}'`: a few calls, each
printed with the instance that answered it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .calls import CallFailed, DirectClient
from .errors import ClientError
from .weights import EndpointSliceWeights

PREVIEW = 200  # characters of each answer shown


def parse_server(text: str) -> tuple[str, int]:
    """HOST:PORT, with an IPv6 host in brackets ([::1]:53)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m directservice.client", description=__doc__)
    parser.add_argument("target", metavar="SERVICE.NAMESPACE")
    parser.add_argument("--data", required=True, help="the request body, sent as it is")
    parser.add_argument("--port-name", default="http")
    parser.add_argument("--zone", default="cluster.local", help="'': use the search list")
    parser.add_argument("--dns", type=parse_server, help="HOST:PORT (default: resolv.conf)")
    parser.add_argument("--token-file", type=Path, help="sent as the Authorization header")
    parser.add_argument("--path", help="default: /api/predict/SERVICE")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--attempts", type=int, default=3)
    parser.add_argument(
        "--weights", action="store_true", help="use the published weights (in a pod)"
    )
    args = parser.parse_args(argv)
    if "." not in args.target:
        parser.error("the target is SERVICE.NAMESPACE")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = arguments(argv)
    service, namespace = args.target.split(".", 1)
    token = args.token_file.read_text(encoding="utf-8").strip() if args.token_file else None
    client = DirectClient(
        service,
        namespace,
        port_name=args.port_name,
        zone=args.zone or None,
        dns_server=args.dns,
        weights=EndpointSliceWeights(service, namespace) if args.weights else None,
        token=token,
        attempts=args.attempts,
        timeout=args.timeout,
        path=args.path,
    )
    failed = 0
    for number in range(1, args.count + 1):
        try:
            answer = client.call(args.data)
        except CallFailed as err:
            failed += 1
            print(f"{number}: failed: {err}", file=sys.stderr)
            continue
        except ClientError as err:
            print(f"{number}: {err}", file=sys.stderr)
            return 2
        preview = answer.body.decode("utf-8", errors="replace")[:PREVIEW]
        print(f"{number}: {answer.status} from {answer.instance} (try {answer.attempts}) {preview}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
