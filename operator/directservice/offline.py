"""`directservice discover` and `render`: the pipeline once, from a file, with no cluster."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from directservice.api.names import KIND, Owner
from directservice.api.spec import DirectServiceSpec, Exclusion, SpecError, check_service_name
from directservice.core.endpoints import Traffic, compose, is_excluded
from directservice.core.model import Discovery, ServiceShape
from directservice.core.planner import desired_endpoints, plan_slices
from directservice.discovery import parse_spec, provider_for
from directservice.discovery.httpclient import HttpClient
from directservice.publish.render import build_endpoint_slice, build_service


class OfflineError(Exception):
    """A one-line reason for the user; the CLI exits non-zero with it."""


def load_directservice(path: str) -> tuple[dict[str, Any], DirectServiceSpec]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
        docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    except (OSError, yaml.YAMLError) as exc:
        raise OfflineError(f"cannot read {path}: {exc}") from None
    found = [d for d in docs if d.get("kind") == KIND]
    if len(found) != 1:
        raise OfflineError(f"{path}: expected exactly one {KIND}, found {len(found)}")
    obj = found[0]
    try:
        check_service_name(str((obj.get("metadata") or {}).get("name", "")))
        return obj, parse_spec(obj.get("spec") or {})
    except SpecError as exc:
        raise OfflineError(str(exc)) from None


async def _discover(spec: DirectServiceSpec) -> Discovery:
    http = HttpClient()
    try:
        return await provider_for(spec).discover(http)
    finally:
        await http.close()


def discover(spec: DirectServiceSpec) -> Discovery:
    """Run the provider once; DiscoveryError propagates with its reason."""
    return asyncio.run(_discover(spec))


def discovery_table(discovery: Discovery, exclude: tuple[Exclusion, ...] = ()) -> str:
    rows = [("ADDRESS", "PORT", "WEIGHT", "PUBLISHED AS", "")]
    for inst in discovery.instances:
        state = (
            "excluded"
            if is_excluded(inst, exclude)
            else "ready"
            if inst.serving
            else "not ready"
            if not inst.ready
            else "drained (weight 0)"
        )
        rows.append((inst.ip, str(inst.port), f"{inst.weight:g}", state, inst.scheme or ""))
    for dropped in discovery.dropped:
        rows.append((dropped.entry, "", "", "DROPPED", dropped.reason))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def render_objects(obj: Mapping[str, Any], spec: DirectServiceSpec, discovery: Discovery) -> str:
    """The Service and EndpointSlices the operator would create, as YAML documents."""
    meta = obj.get("metadata") or {}
    owner = Owner(
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta["name"]),
        uid=str(meta.get("uid") or "00000000-0000-0000-0000-000000000000"),
    )
    shape = ServiceShape(
        port_name=spec.port.name,
        port=spec.port.number or min(inst.port for inst in discovery.instances),
        app_protocol=spec.port.app_protocol,
        owner_uid=owner.uid,
    )
    plan = plan_slices(
        owner.name,
        desired_endpoints(
            compose(discovery.instances, Traffic(exclude=spec.exclude)).endpoints,
            spec.port.app_protocol,
        ),
        [],
        port_name=spec.port.name,
        owner_uid=owner.uid,
        max_per_slice=spec.max_endpoints_per_slice,
    )
    objects = [build_service(owner, shape)] + [build_endpoint_slice(owner, s) for s in plan.create]
    return yaml.safe_dump_all(objects, sort_keys=False)
