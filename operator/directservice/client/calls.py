"""Calls to the instances of a Service: pick one, POST, retry elsewhere on failure.

A connection error, a timeout or a 5xx answer is retried on another instance, up to
`attempts` tries in all; an instance already tried in this call is picked again only once
every other has been tried too. Any other answer (2xx, 3xx, 4xx) is returned as it is.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .balance import SmoothWeightedPicker, instance_weights
from .dnsclient import DnsClient
from .errors import ClientError
from .resolver import Clock, Instance, InstanceSource, SrvResolver, srv_name
from .weights import WeightsSource

MAX_BODY_OCTETS = 64 * 1024 * 1024  # a larger answer is cut off and the attempt fails


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    instance: Instance  # which instance answered
    attempts: int  # 1 when the first try answered

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class AttemptFailure:
    instance: Instance
    reason: str
    status: int | None = None  # the HTTP status of a 5xx answer, None for a transport error


class CallFailed(ClientError):
    """Every attempt of one call failed; `failures` says where and why, in order."""

    def __init__(self, message: str, failures: tuple[AttemptFailure, ...]) -> None:
        super().__init__(message)
        self.failures = failures


class DirectClient:
    """Calls to `service`.`namespace` straight to its instances, found through cluster DNS.

    The instances come from the SRV records of the Service's named port (`port_name`) under
    `zone`, asked of `dns_server` (default: the first nameserver of /etc/resolv.conf; with
    zone None the name is completed by its search list). Pass `resolver` to find instances
    some other way. With `weights` (an EndpointSliceWeights, say) the published weights
    steer the balancing; without, every instance weighs the same.

    `token` is sent as the Authorization header as it is (no "Bearer " prefix), as PAI-EAS
    expects. `timeout` bounds each attempt's connect and each read; `path` defaults to
    /api/predict/<service>. Safe to share between threads.
    """

    def __init__(
        self,
        service: str,
        namespace: str,
        *,
        port_name: str = "http",
        zone: str | None = "cluster.local",
        dns_server: tuple[str, int] | None = None,
        resolver: InstanceSource | None = None,
        weights: WeightsSource | None = None,
        token: str | None = None,
        attempts: int = 3,
        timeout: float = 10.0,
        path: str | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.service = service
        self.namespace = namespace
        if resolver is None:
            name = srv_name(service, namespace, port_name, zone)
            resolver = SrvResolver(name, DnsClient(dns_server), clock=clock)
        self.resolver = resolver
        self.weights = weights
        self.token = token
        self.attempts = attempts
        self.timeout = timeout
        self.path = path or f"/api/predict/{service}"
        self._picker: SmoothWeightedPicker[Instance] = SmoothWeightedPicker()
        self._lock = threading.Lock()

    def instances(self) -> tuple[Instance, ...]:
        """The instances calls may go to now, with their current weights applied."""
        with self._lock:
            self._refresh_picker()
            return tuple(self._picker.weights)

    def predict(
        self,
        data: bytes | str | Mapping[str, Any] | list[Any],
        *,
        path: str | None = None,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """`call` with `data` as the body; a mapping or a list is sent as JSON."""
        if isinstance(data, bytes | str):
            return self.call(data, path=path, timeout=timeout, headers=headers)
        sent = {"Content-Type": "application/json", **(headers or {})}
        return self.call(json.dumps(data).encode(), path=path, timeout=timeout, headers=sent)

    def call(
        self,
        body: bytes | str = b"",
        *,
        path: str | None = None,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """POST `body` to one instance, retried elsewhere as the module says. CallFailed
        when every attempt failed, NoInstancesError when there is nothing to call."""
        payload = body.encode() if isinstance(body, str) else body
        sent = dict(headers or {})
        if self.token is not None:
            sent = {k: v for k, v in sent.items() if k.lower() != "authorization"}
            sent["Authorization"] = self.token
        limit = self.timeout if timeout is None else timeout
        tried: list[Instance] = []
        failures: list[AttemptFailure] = []
        for attempt in range(1, self.attempts + 1):
            instance = self._next(tried)
            tried.append(instance)
            try:
                status, answer = _post(instance, path or self.path, payload, sent, limit)
            except (OSError, http.client.HTTPException, ValueError) as err:
                failures.append(AttemptFailure(instance, _describe(err)))
                continue
            if status >= 500:
                failures.append(AttemptFailure(instance, f"HTTP {status}", status))
                continue
            return Response(status, answer, instance, attempt)
        summary = "; ".join(f"{f.instance}: {f.reason}" for f in failures)
        raise CallFailed(
            f"{self.service}.{self.namespace}: all {len(failures)} attempts failed ({summary})",
            tuple(failures),
        )

    def _next(self, tried: list[Instance]) -> Instance:
        with self._lock:
            self._refresh_picker()
            # Tries go in rounds: none is tried twice until every instance had its try.
            count = len(self._picker.weights)
            this_round = tried[len(tried) - len(tried) % count :] if count else tried
            return self._picker.pick(set(this_round))

    def _refresh_picker(self) -> None:
        instances = self.resolver.instances()
        published = self.weights.weights() if self.weights is not None else None
        self._picker.update(instance_weights(instances, published))


def _post(
    instance: Instance, path: str, body: bytes, headers: Mapping[str, str], timeout: float
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(instance.ip, instance.port, timeout=timeout)
    try:
        connection.request("POST", path, body=body, headers=dict(headers))
        response = connection.getresponse()
        answer = response.read(MAX_BODY_OCTETS + 1)
        if len(answer) > MAX_BODY_OCTETS:
            raise ValueError(f"answer larger than {MAX_BODY_OCTETS} octets")
        return response.status, answer
    finally:
        connection.close()


def _describe(err: Exception) -> str:
    if isinstance(err, TimeoutError):
        return "timed out"
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    return f"{type(err).__name__}: {err}"
