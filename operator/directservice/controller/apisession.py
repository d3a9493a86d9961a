"""The HTTP session kopf talks to the API server with: a bounded connection pool.

kopf's own session has no limit (aiohttp `limit=0`). At start-up every DirectService's
worker PATCHes at once, so 1,000 DirectServices opened about a thousand TLS connections to
the API server. Each held OpenSSL's buffers in the C heap; when aiohttp's keep-alive closed
them, glibc kept the freed pages, and the process stayed about 40 MiB larger for good
(docs/benchmarks.md, "Peak RSS at 1,000 services: where it went"). With a bound, a request
past it waits for a connection to come free, which costs less than a new handshake.

A watch stream holds its connection for as long as it runs, so the pool has a place for
each stream on top of API_CONNECTIONS: the watches can never take every place.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping

import aiohttp

API_CONNECTIONS = 64  # for requests, besides the watch streams
WATCHED_KINDS = 3  # DirectServices, EndpointSlices, Services: a stream per namespace each


def connection_limit(namespaces: int) -> int:
    """Places in the pool: API_CONNECTIONS, plus one per watch stream (cluster-wide: one
    stream per kind; namespaced: one per kind and namespace)."""
    return API_CONNECTIONS + WATCHED_KINDS * max(1, namespaces)


def bounded_session(
    *,
    limit: int,
    ssl_context: ssl.SSLContext,
    headers: Mapping[str, str],
    proxy: str | None = None,
    trust_env: bool = False,
) -> aiohttp.ClientSession:
    """What kopf would build from its connection info, with at most `limit` connections.
    Call it on the event loop that will use it."""
    connector = aiohttp.TCPConnector(limit=limit, ssl=ssl_context)
    return aiohttp.ClientSession(
        connector=connector, headers=dict(headers), proxy=proxy, trust_env=trust_env
    )
