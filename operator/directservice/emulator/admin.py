"""The admin API (JSON under ``/admin``) and ``/healthz``; see the package docstring."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .errors import ConfigError
from .faults import FaultError, parse_fault
from .state import EmulatorState, parse_service


def admin_routes(state: EmulatorState) -> list[web.RouteDef]:
    api = _Admin(state)
    return [
        web.get("/healthz", api.healthz),
        web.get("/admin/services", api.list_services),
        web.get("/admin/services/{name}", api.get_service),
        web.put("/admin/services/{name}", api.put_service),
        web.delete("/admin/services/{name}", api.delete_service),
        web.get("/admin/faults", api.list_faults),
        web.post("/admin/faults", api.add_fault),
        web.delete("/admin/faults", api.clear_faults),
        web.delete("/admin/faults/{id}", api.delete_fault),
        web.get("/admin/requests", api.requests),
        web.post("/admin/requests/reset", api.reset_requests),
    ]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _body(request: web.Request) -> Any:
    try:
        return json.loads(await request.read())
    except ValueError as exc:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"body is not JSON: {exc}"}),
            content_type="application/json",
        ) from None


class _Admin:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def list_services(self, request: web.Request) -> web.Response:
        services = {name: s.to_json() for name, s in sorted(self.state.services().items())}
        return web.json_response({"services": services})

    async def get_service(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        found = self.state.service(name)
        if found is None:
            return _error(404, f"service {name} not found")
        return web.json_response(found.to_json())

    async def put_service(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            service = parse_service(name, await _body(request))
        except ConfigError as exc:
            return _error(400, str(exc))
        self.state.put_service(service)
        return web.json_response(service.to_json())

    async def delete_service(self, request: web.Request) -> web.Response:
        # Idempotent, so test teardown need not care whether the service still exists.
        return web.json_response({"deleted": self.state.delete_service(request.match_info["name"])})

    async def list_faults(self, request: web.Request) -> web.Response:
        return web.json_response({"faults": [f.to_json() for f in self.state.faults()]})

    async def add_fault(self, request: web.Request) -> web.Response:
        try:
            fault = parse_fault(await _body(request))
        except FaultError as exc:
            return _error(400, str(exc))
        return web.json_response(self.state.add_fault(fault).to_json(), status=201)

    async def clear_faults(self, request: web.Request) -> web.Response:
        return web.json_response({"cleared": self.state.clear_faults()})

    async def delete_fault(self, request: web.Request) -> web.Response:
        raw = request.match_info["id"]
        if not raw.isdigit() or not self.state.delete_fault(int(raw)):
            return _error(404, f"no fault with id {raw}")
        return web.json_response({"deleted": int(raw)})

    async def requests(self, request: web.Request) -> web.Response:
        service = request.query.get("service")
        log = [r.to_json() for r in self.state.request_log(service)]
        counters = self.state.counters()
        if service is not None:  # total: that service's requests (the log is filtered too)
            counters["total"] = counters["per_service"].get(service, 0)
        return web.json_response({**counters, "log": log})

    async def reset_requests(self, request: web.Request) -> web.Response:
        self.state.reset_requests()
        return web.json_response({"reset": True})
