"""A JSON-aware mutator for libFuzzer: edits the document's tree, not its bytes.

Byte-level mutation of JSON mostly breaks the syntax, and the parsers behind json.loads then
never run; the C decoder is not instrumented, so coverage cannot guide the fuzzer back.
This mutator decodes the input, changes one node (replaces it with a value the parsers care
about or with another node of the document, deletes it, inserts next to it, wraps it),
and encodes the result; now and then it nests the whole input deeper than the decoder's
recursion limit. Inputs that are not JSON, and one mutation in five, go to
libFuzzer's own byte-level mutator, so malformed bodies are still explored.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

ByteMutator = Callable[[bytes, int], bytes]
Path = tuple[str | int, ...]

KEYS = (
    "ip", "port", "weight", "ready", "hostname", "scheme", "schema", "host", "address",
    "url", "endpoints", "items", "host_endpoints", "data", "hosts", "result", "addr", "v4",
    "p", "w", "up", "name", "proto", "instances", "provider", "static", "paiEas", "httpJson",
    "modelArts", "endpoint", "serviceName", "path", "internal", "listPath", "fields",
    "headers", "value", "valueFrom", "secretKeyRef", "key", "successStatuses", "projectId",
    "serviceId", "credentialsSecretRef", "tokenKey", "iamEndpoint", "authMethod",
    "pollInterval", "timeouts", "connect", "read", "maxEndpointsPerSlice", "allowedCIDRs",
    "maxShrinkPercent", "shrinkConfirmations", "rateBudget", "callsPerMinute", "port",
    "appProtocol", "healthCheck", "type", "interval", "timeout", "expectedStatus", "min",
    "max", "exclude", "drainSeconds", "maxStaleness", "list",
)  # fmt: skip
VALUES: tuple[Any, ...] = (
    None, True, False, 0, 1, -1, 80, 65535, 65536, 0.5, 1e308, 10**30, float("nan"),
    float("inf"), "", " ", "0", "80", "1e400", "0x50", "healthy", "down", "http", "HTTPS",
    "10.0.0.1", "10.0.0.01", " 10.0.0.2 ", "192.168.1.2:8080", "[fd00::1]:80", "fd00::1",
    "::ffff:10.0.0.1", "fe80::1%eth0", "127.0.0.1", "8.8.8.8", "http://10.0.0.3:81/x",
    "https://[fd00::3]:443", "10.0.0.0/8", "fd00::/8", "a.b.c", "data.hosts", "5s", "1m30s",
    "250ms", "0s", "99999h", "http://127.0.0.1:8080", "https://127.0.0.1:8443/v1",
    "Token", "Password", "AccessKey", "tcp", "GET", "/healthz", "svc", "a-1", "Bad_Label",
    [], {}, [{}], {"ip": "10.0.0.9", "port": 9000}, ["10.0.0.1", 80],
    10**400, -(10**400), "9" * 400 + "s",  # beyond the float range
)  # fmt: skip
MAX_NESTING = 1500  # past the interpreter's recursion limit (1000)


def _nodes(doc: Any, path: Path = ()) -> list[Path]:
    found = [path]
    if isinstance(doc, dict):
        for key, child in doc.items():
            found += _nodes(child, (*path, key))
    elif isinstance(doc, list):
        for index, child in enumerate(doc):
            found += _nodes(child, (*path, index))
    return found


def _get(doc: Any, path: Path) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def _set(doc: Any, path: Path, value: Any) -> Any:
    if not path:
        return value
    _get(doc, path[:-1])[path[-1]] = value
    return doc


def _delete(doc: Any, path: Path) -> Any:
    if not path:
        return doc
    parent = _get(doc, path[:-1])
    del parent[path[-1]]
    return doc


def _insert(doc: Any, path: Path, rng: random.Random, new: Any) -> Any:
    node = _get(doc, path)
    if isinstance(node, dict):
        node[rng.choice(KEYS)] = new
    elif isinstance(node, list):
        node.insert(rng.randint(0, len(node)), new)
    else:
        return _set(doc, path, rng.choice(([node, new], {rng.choice(KEYS): node})))
    return doc


def mutate_document(doc: Any, rng: random.Random) -> Any:
    """`doc` with one node changed (it may be changed in place)."""
    nodes = _nodes(doc)
    path = rng.choice(nodes)
    donor = _get(doc, rng.choice(nodes))  # another part of the same document
    new = json.loads(json.dumps(donor)) if rng.random() < 0.3 else rng.choice(VALUES)
    operation = rng.randrange(4)
    if operation == 0:
        return _set(doc, path, json.loads(json.dumps(new)))
    if operation == 1:
        return _delete(doc, path)
    if operation == 2:
        return _insert(doc, path, rng, json.loads(json.dumps(new)))
    return _insert(doc, path, rng, json.loads(json.dumps(_get(doc, path))))  # duplicate


def json_mutator(fallback: ByteMutator) -> Callable[[bytes, int, int], bytes]:
    """A libFuzzer custom mutator (data, max_size, seed) -> data over `fallback`."""

    def mutate(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError):
            return fallback(data, max_size)
        if rng.random() < 0.2:
            return fallback(data, max_size)
        if rng.random() < 0.02:  # deep nesting, written as text: json.dumps would refuse it
            depth = rng.randint(1, MAX_NESTING)
            nested = b"[" * depth + data + b"]" * depth
            return nested if len(nested) <= max_size else fallback(data, max_size)
        try:
            for _ in range(rng.choice((1, 1, 2, 3))):
                doc = mutate_document(doc, rng)
            out = json.dumps(doc).encode()
        except RecursionError:  # a document nested nearly as deep as the decoder allows
            return fallback(data, max_size)
        return out if len(out) <= max_size else fallback(data, max_size)

    return mutate
