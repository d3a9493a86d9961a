"""The one module that writes to the Kubernetes API (publish/secrets.py is the one that reads).

Writes go over the event loop (publish/apiclient.py). Reads never happen here: current state
comes from kopf indexes fed by watches. Writes use resourceVersions (optimistic concurrency),
so a stale view costs at most a refused write, retried on the next poll. Every failure,
whatever its kind (an HTTP status, a refused connection, a timeout, TLS), becomes a
WriteError with a condition reason.
"""

from __future__ import annotations

import contextvars
import datetime
import json
import logging
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from directservice.api.names import (
    EVENT_COMPONENT,
    GROUP,
    KIND,
    LABEL_MANAGED_BY,
    LABEL_SERVICE_NAME,
    MANAGED_BY,
    PLURAL,
    VERSION,
    Owner,
)
from directservice.api.reasons import Reason
from directservice.api.status import EventSpec
from directservice.core.model import PublishedSlice
from directservice.obs.metrics import API_WRITES
from directservice.publish.apiclient import (
    MERGE_PATCH,
    ApiEndpoint,
    ApiTransport,
    WriteError,
    finish_first,
)

__all__ = ["FENCE", "Fenced", "KubeWriter", "WriteError"]

log = logging.getLogger(__name__)


class Fenced(Exception):
    """A write not sent: the replica no longer serves the DirectService (its shard moved)."""


# Set by each poll loop for its own task: is this replica still the one that may write?
# A Lease can lapse in the middle of a pass; this stops the rest of that pass's writes.
FENCE: contextvars.ContextVar[Callable[[], bool] | None] = contextvars.ContextVar(
    "directservice_write_fence", default=None
)


def _slices(namespace: str, name: str = "") -> str:
    base = f"/apis/discovery.k8s.io/v1/namespaces/{quote(namespace)}/endpointslices"
    return f"{base}/{quote(name)}" if name else base


def _services(namespace: str, name: str = "") -> str:
    base = f"/api/v1/namespaces/{quote(namespace)}/services"
    return f"{base}/{quote(name)}" if name else base


class KubeWriter:
    """Async facade over the few writes the operator makes; counts them by kind and verb."""

    def __init__(self, api: ApiTransport | ApiEndpoint | None = None) -> None:
        self.api = api if isinstance(api, ApiTransport) else ApiTransport(api)
        self._instance = socket.gethostname()

    async def _call(
        self,
        kind: str,
        verb: str,
        what: str,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        """One write; returns the object the API server answered with."""
        fence = FENCE.get()
        if fence is not None and not fence():
            raise Fenced(what)
        API_WRITES.labels(kind, verb).inc()
        data = await finish_first(lambda: self.api.request(what, method, path, body=body, **kw))
        return _object(data, what)

    async def read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One object as the API server has it now (None: not found). Not for polls, which
        read the watches: only for a create refused as AlreadyExists."""
        path = _services(namespace, name) if kind == "Service" else _slices(namespace, name)
        what = f"read {kind} {name}"
        try:
            data = await finish_first(lambda: self.api.request(what, "GET", path))
        except WriteError as exc:
            if exc.status == 404:
                return None
            raise
        try:
            return _object(data, what)
        except WriteError:
            return None

    async def create_slice(self, body: Mapping[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        what = f"create EndpointSlice {meta['name']}"
        return await self._call(
            "EndpointSlice", "create", what, "POST", _slices(meta["namespace"]), body
        )

    async def replace_slice(self, body: Mapping[str, Any], resource_version: str) -> dict[str, Any]:
        meta = dict(body["metadata"], resourceVersion=resource_version)
        return await self._call(
            "EndpointSlice",
            "update",
            f"update EndpointSlice {meta['name']}",
            "PUT",
            _slices(meta["namespace"], meta["name"]),
            dict(body, metadata=meta),
        )

    async def _delete(self, kind: str, what: str, path: str, **kw: Any) -> None:
        """A delete; an object already gone counts as deleted (404 is done)."""
        try:
            await self._call(kind, "delete", what, "DELETE", path, **kw)
        except WriteError as exc:
            if exc.status != 404:
                raise

    async def delete_slice(self, namespace: str, name: str, resource_version: str) -> None:
        await self._delete(
            "EndpointSlice",
            f"delete EndpointSlice {name}",
            _slices(namespace, name),
            body={"preconditions": {"resourceVersion": resource_version}},
        )

    async def create_service(self, body: Mapping[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        what = f"create Service {meta['name']}"
        path = _services(meta["namespace"])
        return await self._call("Service", "create", what, "POST", path, body)

    async def patch_service(self, body: Mapping[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        return await self._call(
            "Service",
            "patch",
            f"patch Service {meta['name']}",
            "PATCH",
            _services(meta["namespace"], meta["name"]),
            body,
            # JSON merge patch replaces lists; a strategic merge would add a second port.
            content_type=MERGE_PATCH,
        )

    async def patch_status(self, owner: Owner, status: Mapping[str, Any]) -> None:
        path = (
            f"/apis/{GROUP}/{VERSION}/namespaces/{quote(owner.namespace)}/{PLURAL}/"
            f"{quote(owner.name)}/status"
        )
        await self._call(
            KIND,
            "patch",
            f"patch status of {owner.namespace}/{owner.name}",
            "PATCH",
            path,
            {"status": dict(status)},
            content_type=MERGE_PATCH,
        )

    async def post_event(self, owner: Owner, event: EventSpec) -> None:
        now = datetime.datetime.now(datetime.UTC).isoformat()
        body = {
            "metadata": {"generateName": f"{owner.name}.", "namespace": owner.namespace},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": owner.name,
                "namespace": owner.namespace,
                "uid": owner.uid,
            },
            "type": event.type,
            "reason": event.reason,
            "message": event.message[:1024],
            "source": {"component": EVENT_COMPONENT},
            "reportingComponent": f"{GROUP}/operator",
            "reportingInstance": self._instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        path = f"/api/v1/namespaces/{quote(owner.namespace)}/events"
        try:
            await self._call("Event", "create", "post Event", "POST", path, body)
        except WriteError as exc:  # Events are best effort; never fail a poll on them.
            log.warning("could not post Event %s: %s", event.reason, exc.message)

    async def delete_owned(
        self, owner: Owner, service_is_ours: bool, only: Sequence[PublishedSlice] | None = None
    ) -> None:
        """Remove the Service and slices of a deleted DirectService (no GC in every cluster).

        `only`: delete just these slices, one by one at their resourceVersions, instead of
        every slice carrying our labels: for when a slice that is not ours carries them too."""
        if only is None:
            selector = f"{LABEL_SERVICE_NAME}={owner.name},{LABEL_MANAGED_BY}={MANAGED_BY}"
            await self._call(
                "EndpointSlice",
                "deletecollection",
                f"delete EndpointSlices of {owner.name}",
                "DELETE",
                _slices(owner.namespace),
                params={"labelSelector": selector},
            )
        for slc in only or ():
            await self.delete_slice(owner.namespace, slc.name, slc.resource_version)
        if not service_is_ours:
            return
        await self._delete(
            "Service", f"delete Service {owner.name}", _services(owner.namespace, owner.name)
        )


def _object(data: bytes, what: str) -> dict[str, Any]:
    try:
        answer = json.loads(data or b"{}")
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise WriteError(Reason.PUBLISH_API_ERROR, f"{what}: the answer is not a JSON object")
    return answer
