"""Small helpers for tests that drive the real API server through the built kubectl."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from devenv.controlplane import ControlPlane

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[1]


def apply(cp: ControlPlane, obj: dict[str, Any]) -> None:
    cp.kubectl("apply", "-f", "-", input=json.dumps(obj))


def get_json(cp: ControlPlane, *args: str) -> Any:
    return json.loads(cp.kubectl("get", *args, "-o", "json").stdout)


def slices_of(cp: ControlPlane, namespace: str, service: str) -> list[dict[str, Any]]:
    items = get_json(
        cp, "endpointslices", "-n", namespace, "-l", f"kubernetes.io/service-name={service}"
    )["items"]
    return sorted(items, key=lambda s: s["metadata"]["name"])


def condition(dsvc: dict[str, Any], kind: str) -> dict[str, Any]:
    for cond in (dsvc.get("status") or {}).get("conditions") or []:
        if cond["type"] == kind:
            return dict(cond)
    return {}


def eventually(what: str, probe: Callable[[], T | None], timeout: float, step: float = 0.2) -> T:
    """Poll until `probe()` returns something truthy; fail naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def example(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "examples" / name).read_text())
    return loaded


def events_for(cp: ControlPlane, namespace: str, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = get_json(
        cp, "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}"
    )["items"]
    return items
