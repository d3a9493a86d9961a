"""Published weights, read from the EndpointSlices of the Service through the Kubernetes API.

DNS carries no weights worth using (CoreDNS gives every SRV record the same), so the
operator publishes them on each EndpointSlice as the annotation `directservice.io/weights`,
a JSON object of IP -> number. Reading them needs get/list on endpointslices in the
namespace. Any failure (no API access, a denied or malformed answer) makes `weights()`
return None, which the client takes as equal weights: weights never fail a call.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import ssl
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .errors import ClientError

ANNOTATION_WEIGHTS = "directservice.io/weights"
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
MAX_LIST_OCTETS = 16 * 1024 * 1024  # far above any slice list; bounds a broken answer


class WeightsSource(Protocol):
    def weights(self) -> Mapping[str, float] | None: ...


@dataclass(frozen=True)
class KubeApi:
    """How to reach the API server. The token is read from `token_file` on every request
    when given there, because the kubelet rotates service-account tokens in place."""

    url: str
    token: str | None = None
    token_file: Path | None = None
    ca_file: Path | None = None
    insecure: bool = False  # no certificate check: for a test API server only

    @classmethod
    def in_cluster(cls, account: Path = SERVICE_ACCOUNT) -> KubeApi:
        host = os.environ.get("KUBERNETES_SERVICE_HOST")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise ClientError("not in a pod: KUBERNETES_SERVICE_HOST is not set")
        host = f"[{host}]" if ":" in host else host
        return cls(
            f"https://{host}:{port}", token_file=account / "token", ca_file=account / "ca.crt"
        )

    def bearer(self) -> str | None:
        if self.token_file is not None:
            return self.token_file.read_text(encoding="utf-8").strip()
        return self.token

    def opener(self) -> urllib.request.OpenerDirector:
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        # No proxy from the environment: the API server is reached directly, as kubelet does.
        return urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        )


def slices_path(service: str, namespace: str) -> str:
    selector = urllib.parse.quote(f"kubernetes.io/service-name={service}", safe="")
    return (
        f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices?labelSelector={selector}"
    )


def parse_weights(slice_list: Mapping[str, Any]) -> dict[str, float]:
    """IP -> weight over all slices of an EndpointSliceList. An entry that is not a finite
    number >= 0 is left out (its instance gets the default); an annotation that is not a
    JSON object makes the whole list unusable (ValueError)."""
    weights: dict[str, float] = {}
    items = slice_list.get("items")
    if not isinstance(items, list):
        raise ValueError("not an EndpointSliceList: no items")
    for item in items:
        annotations = ((item or {}).get("metadata") or {}).get("annotations") or {}
        raw = annotations.get(ANNOTATION_WEIGHTS)
        if raw is None:
            continue
        published = json.loads(raw)
        if not isinstance(published, dict):
            raise ValueError(f"annotation {ANNOTATION_WEIGHTS} is not a JSON object")
        for ip, weight in published.items():
            usable = isinstance(weight, int | float) and not isinstance(weight, bool)
            if usable and math.isfinite(weight) and weight >= 0:
                weights[str(ip)] = float(weight)
    return weights


class EndpointSliceWeights:
    """The published weights of one Service, read at most every `refresh_interval` seconds.

    `reads` and `failures` count the API requests; `last_error` says why the last one
    failed. After a failure the weights are None (equal weights) until the next read."""

    def __init__(
        self,
        service: str,
        namespace: str,
        api: KubeApi | None = None,
        *,
        timeout: float = 2.0,
        refresh_interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.namespace = namespace
        self.api = api
        self.timeout = timeout
        self.refresh_interval = refresh_interval
        self.reads = 0
        self.failures = 0
        self.last_error: Exception | None = None
        self._clock = clock
        self._weights: dict[str, float] | None = None
        self._next_read = float("-inf")
        self._lock = threading.Lock()

    def weights(self) -> dict[str, float] | None:
        with self._lock:
            now = self._clock()
            if now >= self._next_read:
                self._next_read = now + self.refresh_interval
                self._weights = self._read()
            return self._weights

    def _read(self) -> dict[str, float] | None:
        self.reads += 1
        try:
            api = self.api if self.api is not None else KubeApi.in_cluster()
            request = urllib.request.Request(
                api.url.rstrip("/") + slices_path(self.service, self.namespace),
                headers={"Accept": "application/json"},
            )
            token = api.bearer()
            if token:
                request.add_header("Authorization", f"Bearer {token}")
            with api.opener().open(request, timeout=self.timeout) as response:
                body = response.read(MAX_LIST_OCTETS + 1)
            if len(body) > MAX_LIST_OCTETS:
                raise ValueError(f"EndpointSlice list larger than {MAX_LIST_OCTETS} octets")
            parsed = json.loads(body)
            if not isinstance(parsed, dict):
                raise ValueError("not an EndpointSliceList")
            return parse_weights(parsed)
        # AttributeError, TypeError: a list whose objects have an unexpected shape.
        except (
            OSError,
            ValueError,
            AttributeError,
            TypeError,
            http.client.HTTPException,
            ClientError,
        ) as err:
            self.failures += 1
            self.last_error = err
            return None
