"""The operator with two dormant fault hooks, for the error-boundary e2e tests only.

Each hook fires only on a marker in a discovery answer, so the test switches a fault on and
off through the emulator, and the operator is otherwise the real one:
- discovery: an upstreams answer whose `correlative` is ["x-test-fault"] makes parsing raise;
- publishing: an instance with hostname "x-test-fault" makes rendering its slice raise.
Run as `python -m faultyoperator run ...` with this folder on PYTHONPATH.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from directservice import cli
from directservice.api.names import Owner
from directservice.api.spec import DEFAULT_ALLOWED_CIDRS, Network
from directservice.core.model import DesiredSlice, Discovery
from directservice.discovery import pai_eas
from directservice.publish import publisher

MARKER = "x-test-fault"
_parse_upstreams = pai_eas.parse_upstreams
_build_endpoint_slice = publisher.build_endpoint_slice


def parse_upstreams(payload: Any, allowed: Sequence[Network] = DEFAULT_ALLOWED_CIDRS) -> Discovery:
    if isinstance(payload, dict) and payload.get("correlative") == [MARKER]:
        raise RuntimeError("injected discovery fault")
    return _parse_upstreams(payload, allowed)


def build_endpoint_slice(owner: Owner, desired: DesiredSlice) -> dict[str, Any]:
    if any(state.hostname == MARKER for _, state in desired.content.endpoints):
        raise RuntimeError("injected publish fault")
    return _build_endpoint_slice(owner, desired)


pai_eas.parse_upstreams = parse_upstreams  # type: ignore[assignment]
publisher.build_endpoint_slice = build_endpoint_slice  # type: ignore[assignment]

if __name__ == "__main__":
    sys.exit(cli.main())
