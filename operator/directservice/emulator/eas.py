"""The Alibaba PAI-EAS service-discovery ("upstreams") API.

``GET /exported/apis/eas.alibaba-inc.k8s.io/v1/upstreams/{service}`` (older SDKs) and
``GET /api/v1/servicediscovery/upstreams/{service}`` (newer SDKs) both answer::

    {"correlative": ["svc"], "endpoints": {"items": [{"app": "svc", "ip": "...", ...}]}}

``?internal=true|false`` is accepted and only recorded in the request log.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .faults import Fault, FaultMode
from .serving import Answer, Flavour
from .state import default_app

UPSTREAMS_PATHS = (
    "/exported/apis/eas.alibaba-inc.k8s.io/v1/upstreams/{service}",
    "/api/v1/servicediscovery/upstreams/{service}",
)


class EasFlavour(Flavour):
    name = "eas"

    def routes(self) -> list[web.RouteDef]:
        return [web.get(path, self._upstreams) for path in UPSTREAMS_PATHS]

    async def _upstreams(self, request: web.Request) -> web.StreamResponse:
        return await self.serve(request, request.match_info["service"])

    def answer(self, request: web.Request, service: str) -> Answer:
        found = self.state.service(service)
        if found is None:
            return Answer.error(404, f"service {service} not found")
        return Answer.json(
            200,
            {
                "correlative": found.correlative_or_self(),
                "endpoints": {"items": list(found.instances)},
            },
        )

    def shaped(self, fault: Fault, service: str) -> Any:
        if fault.mode is FaultMode.EMPTY:
            return {"correlative": [service], "endpoints": {"items": []}}
        if fault.mode is FaultMode.NULL:
            return {"correlative": [service], "endpoints": None}
        if fault.document is not None:
            return fault.document
        # Default wrong shape: the instance list without its envelope.
        found = self.state.service(service)
        return list(found.instances) if found is not None else []

    def oversize_parts(self, service: str) -> tuple[bytes, bytes, bytes]:
        prefix = json.dumps({"correlative": [service]})[:-1] + ', "endpoints": {"items": ['
        item = {"app": default_app(service), "ip": "192.0.2.1", "port": 1, "weight": 100}
        return prefix.encode(), json.dumps(item).encode(), b"]}}"
