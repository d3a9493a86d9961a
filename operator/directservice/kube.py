"""The one module that writes to the Kubernetes API.

The official client is synchronous, so every call runs in a worker thread and the
event loop stays free. Reads never happen here: current state comes from kopf
indexes fed by watches. Writes use resourceVersions (optimistic concurrency), so a
stale view costs at most a refused write, retried on the next poll.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import logging
import socket
from collections.abc import Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from directservice.metrics import API_WRITES
from directservice.model import DiscoveryError
from directservice.render import (
    GROUP,
    KIND,
    LABEL_MANAGED_BY,
    LABEL_SERVICE_NAME,
    MANAGED_BY,
    PLURAL,
    VERSION,
    Owner,
)
from directservice.status import EventSpec

log = logging.getLogger(__name__)

COMPONENT = "directservice-operator"


class WriteError(Exception):
    """A write the API server refused; `reason` goes into the condition."""

    def __init__(self, reason: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status


def _refused(exc: ApiException, what: str) -> WriteError:
    if exc.status == 409:
        return WriteError("Conflict", f"{what}: changed meanwhile, will retry", 409)
    if exc.status == 422:
        return WriteError("Invalid", f"{what}: rejected as invalid: {_detail(exc)}", 422)
    if exc.status == 403:
        return WriteError("Forbidden", f"{what}: forbidden by RBAC", 403)
    return WriteError("APIError", f"{what}: API server answered {exc.status} {exc.reason}")


def _detail(exc: ApiException) -> str:
    """The API server's own explanation (a Status object's message), else the reason."""
    try:
        message = json.loads(exc.body or "{}").get("message")
    except (TypeError, ValueError, AttributeError):
        message = None
    return str(message or exc.reason)[:500]


class KubeWriter:
    """Async facade over the few writes the operator makes; counts them by kind and verb."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self._core = client.CoreV1Api(api_client)
        self._discovery = client.DiscoveryV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)
        self._instance = socket.gethostname()

    async def _call(
        self, kind: str, verb: str, what: str, fn: Any, *args: Any, **kw: Any
    ) -> dict[str, Any]:
        """One write in a worker thread; returns the object the API server answered with."""
        API_WRITES.labels(kind, verb).inc()
        try:
            resp = await asyncio.to_thread(fn, *args, _preload_content=False, **kw)
        except ApiException as exc:
            raise _refused(exc, what) from None
        answer: dict[str, Any] = json.loads(resp.data or b"{}")
        return answer

    async def create_slice(self, body: Mapping[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        return await self._call(
            "EndpointSlice",
            "create",
            f"create EndpointSlice {meta['name']}",
            self._discovery.create_namespaced_endpoint_slice,
            meta["namespace"],
            body,
        )

    async def replace_slice(self, body: Mapping[str, Any], resource_version: str) -> dict[str, Any]:
        meta = dict(body["metadata"], resourceVersion=resource_version)
        return await self._call(
            "EndpointSlice",
            "update",
            f"update EndpointSlice {meta['name']}",
            self._discovery.replace_namespaced_endpoint_slice,
            meta["name"],
            meta["namespace"],
            dict(body, metadata=meta),
        )

    async def delete_slice(self, namespace: str, name: str, resource_version: str) -> None:
        try:
            await self._call(
                "EndpointSlice",
                "delete",
                f"delete EndpointSlice {name}",
                self._discovery.delete_namespaced_endpoint_slice,
                name,
                namespace,
                body=client.V1DeleteOptions(
                    preconditions=client.V1Preconditions(resource_version=resource_version)
                ),
            )
        except WriteError as exc:
            if exc.status != 404:
                raise

    async def create_service(self, body: Mapping[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        return await self._call(
            "Service",
            "create",
            f"create Service {meta['name']}",
            self._core.create_namespaced_service,
            meta["namespace"],
            body,
        )

    async def patch_service(self, body: Mapping[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        return await self._call(
            "Service",
            "patch",
            f"patch Service {meta['name']}",
            self._core.patch_namespaced_service,
            meta["name"],
            meta["namespace"],
            body,
            # JSON merge patch replaces lists; a strategic merge would add a second port.
            _content_type="application/merge-patch+json",
        )

    async def patch_status(self, owner: Owner, status: Mapping[str, Any]) -> None:
        await self._call(
            KIND,
            "patch",
            f"patch status of {owner.namespace}/{owner.name}",
            self._custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            owner.namespace,
            PLURAL,
            owner.name,
            {"status": dict(status)},
            _content_type="application/merge-patch+json",
        )

    async def post_event(self, owner: Owner, event: EventSpec) -> None:
        now = datetime.datetime.now(datetime.UTC)
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
            "source": {"component": COMPONENT},
            "reportingComponent": f"{GROUP}/operator",
            "reportingInstance": self._instance,
            "firstTimestamp": now.isoformat(),
            "lastTimestamp": now.isoformat(),
            "count": 1,
        }
        try:
            await self._call(
                "Event",
                "create",
                "post Event",
                self._core.create_namespaced_event,
                owner.namespace,
                body,
            )
        except WriteError as exc:  # Events are best effort; never fail a poll on them.
            log.warning("could not post Event %s: %s", event.reason, exc.message)

    async def delete_owned(self, owner: Owner, service_is_ours: bool) -> None:
        """Remove the Service and slices of a deleted DirectService (no GC in every cluster)."""
        selector = f"{LABEL_SERVICE_NAME}={owner.name},{LABEL_MANAGED_BY}={MANAGED_BY}"
        await self._call(
            "EndpointSlice",
            "deletecollection",
            f"delete EndpointSlices of {owner.name}",
            self._discovery.delete_collection_namespaced_endpoint_slice,
            owner.namespace,
            label_selector=selector,
        )
        if not service_is_ours:
            return
        try:
            await self._call(
                "Service",
                "delete",
                f"delete Service {owner.name}",
                self._core.delete_namespaced_service,
                owner.name,
                owner.namespace,
            )
        except WriteError as exc:
            if exc.status != 404:
                raise


class SecretReader:
    """Reads Secrets for providers with a short cache: RBAC grants `get` only (no list or
    watch), and many DirectServices share one credential, so a GET per poll is avoided.
    Values stay in memory; errors name the Secret, never its content."""

    def __init__(self, api_client: client.ApiClient, ttl: float = 60.0) -> None:
        self._core = client.CoreV1Api(api_client)
        self._ttl = ttl
        self._cache: dict[tuple[str, str], tuple[float, dict[str, str]]] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def __call__(self, namespace: str, name: str) -> dict[str, str]:
        key = (namespace, name)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # one GET for many pollers of the same Secret
            cached = self._cache.get(key)
            now = asyncio.get_running_loop().time()
            if cached and now - cached[0] < self._ttl:
                return cached[1]
            values = await self._fetch(namespace, name)
            self._cache[key] = (now, values)
            return values

    def invalidate(self, namespace: str, name: str) -> None:
        """Forget a Secret, e.g. after the provider rejected credentials read from it."""
        self._cache.pop((namespace, name), None)

    async def _fetch(self, namespace: str, name: str) -> dict[str, str]:
        try:
            resp: Any = await asyncio.to_thread(
                self._core.read_namespaced_secret, name, namespace, _preload_content=False
            )
        except ApiException as exc:
            if exc.status == 404:
                raise DiscoveryError(
                    "SecretNotFound", f"Secret {namespace}/{name} does not exist"
                ) from None
            if exc.status == 403:
                raise DiscoveryError(
                    "SecretForbidden", f"the operator may not read Secret {namespace}/{name}"
                ) from None
            raise DiscoveryError(
                "SecretUnavailable", f"reading Secret {namespace}/{name} failed: {exc.status}"
            ) from None
        obj = json.loads(resp.data or b"{}")
        values = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
        values.update(obj.get("stringData") or {})
        return values
