"""Reads and writes of the operator's own Leases (coordination.k8s.io/v1), nothing else.

Every write carries the resourceVersion it read (create: none exists), so two replicas
racing for one Lease end with one winner and one 409. A lost race is an answer, not an
error: `write` returns None. Calls go over a transport of their own (its own connections):
a renewal must not queue behind a burst of endpoint writes (a start-up sync), or the Lease
lapses under load.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from directservice.api.names import GROUP
from directservice.core.leases import LeaseRecord
from directservice.obs.metrics import API_WRITES
from directservice.publish.apiclient import ApiTransport, WriteError, finish_first

MEMBERS_ANNOTATION = f"{GROUP}/members"  # {identity: heartbeat, wall-clock seconds}
LEASE_LABELS = {"app.kubernetes.io/managed-by": "directservice-operator"}


@dataclass(frozen=True)
class Lease:
    record: LeaseRecord
    members: Mapping[str, float]  # only the membership Lease carries any


def _micro_time(now: datetime.datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _members(meta: Mapping[str, Any]) -> dict[str, float]:
    raw = (meta.get("annotations") or {}).get(MEMBERS_ANNOTATION, "{}")
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(parsed, dict):
        return {}
    return {
        str(k): float(v)
        for k, v in parsed.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def parse_lease(obj: Mapping[str, Any]) -> Lease:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    transitions = spec.get("leaseTransitions")
    record = LeaseRecord(
        name=str(meta.get("name", "")),
        holder=str(spec.get("holderIdentity") or ""),
        version=str(meta.get("resourceVersion", "")),
        transitions=transitions if isinstance(transitions, int) else 0,
    )
    return Lease(record, _members(meta))


class LeaseClient:
    """The Leases of one operator deployment, in one namespace."""

    def __init__(self, api: ApiTransport, namespace: str) -> None:
        self._api = api
        self.namespace = namespace

    def _path(self, name: str = "") -> str:
        base = f"/apis/coordination.k8s.io/v1/namespaces/{quote(self.namespace)}/leases"
        return f"{base}/{quote(name)}" if name else base

    async def read(self, name: str) -> Lease | None:
        what, path = f"read Lease {name}", self._path(name)
        try:
            data = await finish_first(lambda: self._api.request(what, "GET", path))
        except WriteError as exc:
            if exc.status == 404:
                return None
            raise
        return parse_lease(json.loads(data or b"{}"))

    async def write(
        self,
        name: str,
        holder: str,
        duration: float,
        current: Lease | None,
        members: Mapping[str, float] | None = None,
    ) -> Lease | None:
        """Write `holder` into the Lease over `current` (None: create it). None: lost a race."""
        now = _micro_time(datetime.datetime.now(datetime.UTC))
        spec: dict[str, Any] = {
            "holderIdentity": holder or None,
            "leaseDurationSeconds": max(1, round(duration)),
            "renewTime": now,
        }
        transitions = current.record.transitions if current else 0
        previous = current.record.holder if current else ""
        if holder and holder != previous:
            spec["acquireTime"] = now
            transitions += 1 if previous else 0
        spec["leaseTransitions"] = transitions
        meta: dict[str, Any] = {"name": name, "namespace": self.namespace, "labels": LEASE_LABELS}
        if members is not None:
            meta["annotations"] = {MEMBERS_ANNOTATION: json.dumps(dict(sorted(members.items())))}
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta}
        body["spec"] = spec
        if current is None:
            verb, what, method, path = "create", f"create Lease {name}", "POST", self._path()
        else:
            meta["resourceVersion"] = current.record.version
            verb, what, method, path = "update", f"update Lease {name}", "PUT", self._path(name)
        API_WRITES.labels("Lease", verb).inc()
        try:
            data = await finish_first(lambda: self._api.request(what, method, path, body=body))
        except WriteError as exc:
            if exc.status == 409:  # someone else wrote (or created) it first
                return None
            raise
        return parse_lease(json.loads(data or b"{}"))
