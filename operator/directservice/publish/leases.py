"""Reads and writes of the operator's own Leases (coordination.k8s.io/v1), nothing else.

Every write carries the resourceVersion it read (create: none exists), so two replicas
racing for one Lease end with one winner and one 409. A lost race is an answer, not an
error: `write` returns None. Calls run in worker threads of their own: a renewal must not
queue behind a burst of endpoint writes (a start-up sync), or the Lease lapses under load.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from directservice.api.names import GROUP
from directservice.core.leases import LeaseRecord
from directservice.obs.metrics import API_WRITES
from directservice.publish.apiclient import WriteError
from directservice.publish.clientcall import call_api

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

    def __init__(self, api_client: client.ApiClient, namespace: str, threads: int = 4) -> None:
        # Few threads: they share the client's connection pool (5 per core) with the writes.
        self._api = client.CoordinationV1Api(api_client)
        self.namespace = namespace
        self._threads = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="lease")

    async def read(self, name: str) -> Lease | None:
        try:
            data = await call_api(
                f"read Lease {name}",
                self._api.read_namespaced_lease,
                name,
                self.namespace,
                executor=self._threads,
            )
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
        try:
            if current is None:
                API_WRITES.labels("Lease", "create").inc()
                data = await call_api(
                    f"create Lease {name}",
                    self._api.create_namespaced_lease,
                    self.namespace,
                    body,
                    executor=self._threads,
                )
            else:
                meta["resourceVersion"] = current.record.version
                API_WRITES.labels("Lease", "update").inc()
                data = await call_api(
                    f"update Lease {name}",
                    self._api.replace_namespaced_lease,
                    name,
                    self.namespace,
                    body,
                    executor=self._threads,
                )
        except WriteError as exc:
            if exc.status == 409:  # someone else wrote (or created) it first
                return None
            raise
        return parse_lease(json.loads(data or b"{}"))
