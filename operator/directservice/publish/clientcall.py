"""The official client's calls, each in a worker thread with a timeout: Lease and Secret
calls (publish/leases.py, publish/secrets.py). The writes of every poll go over the event
loop instead (publish/apiclient.py).

A thread cannot be stopped, so a cancel waits for the call to end (apiclient.finish_first).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import urllib3.exceptions
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from directservice.publish.apiclient import finish_first, refused, unreachable

# (connect, read) seconds for one API call: a hung API server must not hold a worker thread.
REQUEST_TIMEOUT = (5.0, 30.0)
# What the client raises when no HTTP answer came back: refused, reset, timed out, TLS.
CLIENT_TRANSPORT_ERRORS = (urllib3.exceptions.HTTPError, OSError, ssl.SSLError)


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


async def call_api(
    what: str, fn: Callable[..., Any], *args: Any, executor: Executor | None = None, **kw: Any
) -> bytes:
    """One API call in a worker thread; returns the raw answer body, read in that thread
    too (the client hands back an unread response). Every failure becomes a WriteError.
    `executor`: the threads to use (None: the loop's default)."""

    def call() -> bytes:
        resp = fn(*args, _preload_content=False, _request_timeout=REQUEST_TIMEOUT, **kw)
        return bytes(resp.data or b"")

    loop = asyncio.get_running_loop()
    try:
        return await finish_first(lambda: loop.run_in_executor(executor, call))
    except ApiException as exc:
        raise refused(int(exc.status or 0), str(exc.reason), exc.body, what) from None
    except CLIENT_TRANSPORT_ERRORS as exc:
        raise unreachable(exc, what) from None
