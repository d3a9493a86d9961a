"""The one module that writes to the Kubernetes API (publish/secrets.py is the one that reads).

The official client is synchronous, so every call runs in a worker thread with a timeout and
the event loop stays free. Reads never happen here: current state comes from kopf indexes fed
by watches. Writes use resourceVersions (optimistic concurrency), so a stale view costs at most
a refused write, retried on the next poll. Every failure, whatever its kind (an HTTP status,
a refused connection, a timeout, TLS), becomes a WriteError with a condition reason.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime
import json
import logging
import socket
import ssl
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from typing import Any

import urllib3.exceptions
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

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

log = logging.getLogger(__name__)

# (connect, read) seconds for one API call: a hung API server must not hold a worker thread.
REQUEST_TIMEOUT = (5.0, 30.0)
# What the client raises when no HTTP answer came back: refused, reset, timed out, TLS.
TRANSPORT_ERRORS = (urllib3.exceptions.HTTPError, OSError, ssl.SSLError)


class Fenced(Exception):
    """A write not sent: the replica no longer serves the DirectService (its shard moved)."""


# Set by each poll loop for its own task: is this replica still the one that may write?
# A Lease can lapse in the middle of a pass; this stops the rest of that pass's writes.
FENCE: contextvars.ContextVar[Callable[[], bool] | None] = contextvars.ContextVar(
    "directservice_write_fence", default=None
)


class WriteError(Exception):
    """A write that did not happen; `reason` goes into the DiscoveryHealthy condition."""

    def __init__(self, reason: Reason, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status


def api_client() -> client.ApiClient:
    """A client for the cluster the operator runs in, else the current kubeconfig context."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    configuration = client.Configuration.get_default_copy()
    # One retry for a stale pooled connection; more would hold a worker thread for minutes
    # on a hung API server. The next poll is the real retry.
    configuration.retries = 1
    return client.ApiClient(configuration)


def refused(exc: ApiException, what: str) -> WriteError:
    status = int(exc.status or 0)
    if status == 409:
        return WriteError(Reason.PUBLISH_CONFLICT, f"{what}: changed meanwhile, will retry", 409)
    if status == 422:
        return WriteError(
            Reason.PUBLISH_INVALID, f"{what}: rejected as invalid: {_detail(exc)}", 422
        )
    if status == 403:
        return WriteError(Reason.PUBLISH_FORBIDDEN, f"{what}: forbidden by RBAC", 403)
    if status == 404:
        return WriteError(Reason.PUBLISH_NOT_FOUND, f"{what}: not found", 404)
    if status in (0, 502, 503, 504):  # status 0: the client got no HTTP answer at all
        return WriteError(
            Reason.PUBLISH_UNAVAILABLE, f"{what}: API server unavailable ({status or exc.reason})"
        )
    return WriteError(
        Reason.PUBLISH_API_ERROR, f"{what}: API server answered {status} {exc.reason}", status
    )


def unreachable(exc: BaseException, what: str) -> WriteError:
    """A transport failure: no answer from the API server. The type names what happened."""
    cause = getattr(exc, "reason", None)  # urllib3 wraps the real failure in MaxRetryError
    named = cause if isinstance(cause, BaseException) else exc
    return WriteError(
        Reason.PUBLISH_UNAVAILABLE, f"{what}: API server unreachable ({type(named).__name__})"
    )


def _detail(exc: ApiException) -> str:
    """The API server's own explanation (a Status object's message), else the reason."""
    try:
        message = json.loads(exc.body or "{}").get("message")
    except (TypeError, ValueError, AttributeError):
        message = None
    return str(message or exc.reason)[:500]


async def call_api(
    what: str, fn: Callable[..., Any], *args: Any, executor: Executor | None = None, **kw: Any
) -> bytes:
    """One API call in a worker thread with a timeout; returns the raw answer body, read in
    that thread too (the client hands back an unread response). Every failure becomes a
    WriteError. `executor`: the threads to use (None: the loop's default, shared by writes).

    A thread cannot be stopped, so a cancel waits for the call to end and is delivered at
    the caller's next await: the caller records what it wrote (e.g. a created Service that
    the deletion's cleanup must remove), and no write lands after the task has ended, when
    kopf runs the deletion handler. A task with a cancel pending sends nothing more."""

    def call() -> bytes:
        resp = fn(*args, _preload_content=False, _request_timeout=REQUEST_TIMEOUT, **kw)
        return bytes(resp.data or b"")

    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
    request = asyncio.get_running_loop().run_in_executor(executor, call)
    cancelled = False
    while not request.done():
        try:
            await asyncio.wait({request})  # a cancel of this wait leaves the request be
        except asyncio.CancelledError:
            cancelled = True  # bounded by REQUEST_TIMEOUT
    if cancelled and task is not None:
        task.uncancel()
        task.cancel()  # again, for the caller's next await
    try:
        return request.result()
    except ApiException as exc:
        raise refused(exc, what) from None
    except TRANSPORT_ERRORS as exc:
        raise unreachable(exc, what) from None


class KubeWriter:
    """Async facade over the few writes the operator makes; counts them by kind and verb."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self._core = client.CoreV1Api(api_client)
        self._discovery = client.DiscoveryV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)
        self._instance = socket.gethostname()

    async def _call(
        self, kind: str, verb: str, what: str, fn: Callable[..., Any], *args: Any, **kw: Any
    ) -> dict[str, Any]:
        """One write; returns the object the API server answered with."""
        fence = FENCE.get()
        if fence is not None and not fence():
            raise Fenced(what)
        API_WRITES.labels(kind, verb).inc()
        data = await call_api(what, fn, *args, **kw)
        try:
            answer = json.loads(data or b"{}")
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise WriteError(Reason.PUBLISH_API_ERROR, f"{what}: the answer is not a JSON object")
        return answer

    async def read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One object as the API server has it now (None: not found). Not for polls, which
        read the watches: only for a create refused as AlreadyExists."""
        fn = (
            self._core.read_namespaced_service
            if kind == "Service"
            else self._discovery.read_namespaced_endpoint_slice
        )
        try:
            data = await call_api(f"read {kind} {name}", fn, name, namespace)
        except WriteError as exc:
            if exc.status == 404:
                return None
            raise
        try:
            found = json.loads(data or b"{}")
        except ValueError:
            found = None
        return found if isinstance(found, dict) else None

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

    async def _delete(
        self, kind: str, what: str, fn: Callable[..., Any], *args: Any, **kw: Any
    ) -> None:
        """A delete; an object already gone counts as deleted (404 is done)."""
        try:
            await self._call(kind, "delete", what, fn, *args, **kw)
        except WriteError as exc:
            if exc.status != 404:
                raise

    async def delete_slice(self, namespace: str, name: str, resource_version: str) -> None:
        await self._delete(
            "EndpointSlice",
            f"delete EndpointSlice {name}",
            self._discovery.delete_namespaced_endpoint_slice,
            name,
            namespace,
            body=client.V1DeleteOptions(
                preconditions=client.V1Preconditions(resource_version=resource_version)
            ),
        )

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
            "source": {"component": EVENT_COMPONENT},
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
                self._discovery.delete_collection_namespaced_endpoint_slice,
                owner.namespace,
                label_selector=selector,
            )
        for slc in only or ():
            await self.delete_slice(owner.namespace, slc.name, slc.resource_version)
        if not service_is_ours:
            return
        await self._delete(
            "Service",
            f"delete Service {owner.name}",
            self._core.delete_namespaced_service,
            owner.name,
            owner.namespace,
        )
