"""Huawei Cloud ModelArts host_endpoints discovery and the IAM login it needs.

``GET /v1/{project}/services/{service}/predict/endpoints?type=host_endpoints`` answers with
the service's instances. It requires ``X-Auth-Token`` holding a token this emulator issued
(valid, not revoked, scoped to ``{project}``) or an ``SDK-HMAC-SHA256`` signature by a
configured access key; otherwise 401 with ``{"error_code": "APIGW.0301", ...}``.

Huawei does not publish this answer's shape, so it is a knob (config ``modelarts.shape`` or
``PUT /admin/modelarts/shape``)::

    {"list": "endpoints",          # dot path of the list ("" for a bare list)
     "rename": {"ip": "host"},     # instance keys as served
     "drop": ["app"],              # keys left out (app is filled in for PAI-EAS)
     "defaults": {"schema": "http"}}

``POST /v3/auth/tokens`` takes a Keystone v3 password request and answers 201 with the token
in ``X-Subject-Token`` and ``token.expires_at`` in the body (see :mod:`.iam`).

Admin: ``GET /admin/iam``; ``PUT /admin/iam/users/{name}`` (``password``, ``domain``,
``projects``, ``keep_tokens``: a new password revokes the user's tokens unless true);
``POST /admin/iam/revoke`` ``{"user": name or null}``; ``GET|PUT /admin/modelarts/shape``.
Discovery requests are counted per credential (``user:NAME``, ``invalid``, ``anonymous``).
"""

from __future__ import annotations

import datetime
import json
import re
import time
from typing import Any

from aiohttp import web

from directservice.discovery.modelarts import sigv

from .errors import ConfigError
from .faults import Fault, FaultMode
from .iam import Token, parse_user
from .serving import Answer, Flavour

ENDPOINTS_PATH = "/v1/{project}/services/{service}/predict/endpoints"
TOKENS_PATH = "/v3/auth/tokens"
DEFAULT_SHAPE: dict[str, Any] = {
    "list": "endpoints",
    "rename": {},
    "drop": ["app"],
    "defaults": {"schema": "http"},
}
MAX_CLOCK_SKEW = 15 * 60.0
_AUTHORIZATION = re.compile(
    r"^SDK-HMAC-SHA256\s+Access=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]+)$"
)


def _refused(message: str) -> Answer:
    return Answer.json(401, {"error_code": "APIGW.0301", "error_msg": message})


def _iso(when: float) -> str:
    return datetime.datetime.fromtimestamp(when, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def place(document: Any, path: str) -> Any:
    """`document` nested under a dot path: place(x, "data.endpoints") -> {"data": {...: x}}."""
    for segment in reversed([s for s in path.split(".") if s]):
        document = {segment: document}
    return document


class ModelArtsFlavour(Flavour):
    name = "modelarts"

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(ENDPOINTS_PATH, self._endpoints),
            web.post(TOKENS_PATH, self._login),
            web.get("/admin/iam", self._iam_state),
            web.put("/admin/iam/users/{name}", self._put_user),
            web.post("/admin/iam/revoke", self._revoke),
            web.get("/admin/modelarts/shape", self._get_shape),
            web.put("/admin/modelarts/shape", self._put_shape),
        ]

    # Discovery.

    async def _endpoints(self, request: web.Request) -> web.StreamResponse:
        return await self.serve(request, request.match_info["service"])

    def answer(self, request: web.Request, service: str) -> Answer:
        if request.query.get("type") != "host_endpoints":
            return Answer.json(
                400, {"error_code": "ModelArts.0104", "error_msg": "Parameter error."}
            )
        denied = self._check_auth(request, request.match_info["project"])
        if denied is not None:
            return denied
        found = self.state.service(service)
        if found is None:
            message = f"service {service} not found"
            return Answer.json(404, {"error_code": "EMULATOR.0404", "error_msg": message})
        return Answer.json(200, self.document(list(found.instances)))

    def document(self, instances: list[Any] | None) -> Any:
        shape = {**DEFAULT_SHAPE, **(self.state.shape(self.name) or {})}
        # Defaults are given in instance terms, so they are renamed like the instance's keys.
        rename, drop, defaults = shape["rename"], set(shape["drop"]), shape["defaults"]
        items = None
        if instances is not None:
            items = [
                {rename.get(k, k): v for k, v in {**defaults, **i}.items() if k not in drop}
                if isinstance(i, dict)
                else i
                for i in instances
            ]
        return place(items, str(shape["list"]))

    def shaped(self, fault: Fault, service: str) -> Any:
        if fault.mode is FaultMode.EMPTY:
            return self.document([])
        if fault.mode is FaultMode.NULL:
            return self.document(None)
        if fault.document is not None:
            return fault.document
        return {"service_id": service, "status": "running"}  # valid JSON, no instance list

    def _check_auth(self, request: web.Request, project: str) -> Answer | None:
        value = request.headers.get("X-Auth-Token")
        if value is not None:
            token = self.state.iam.token(value)
            if token is None:
                return _refused("Incorrect IAM authentication information: decrypt token fail")
            if not token.valid(time.time()):
                return _refused(
                    "Incorrect IAM authentication information: token expires, "
                    f"expires_at: {_iso(token.expires_at)}"
                )
            if token.project != project:
                return Answer.json(
                    403,
                    {"error_code": "EMULATOR.0403", "error_msg": f"token not scoped to {project}"},
                )
            return None
        if "Authorization" in request.headers:
            return self._check_signature(request)
        return _refused("Incorrect IAM authentication information: x-auth-token not found")

    def _check_signature(self, request: web.Request) -> Answer | None:
        match = _AUTHORIZATION.match(request.headers["Authorization"])
        key = self.state.iam.access_key(match.group(1)) if match else None
        if match is None or key is None:
            return _refused("Incorrect IAM authentication information: Get secretKey failed")
        names = match.group(2).split(";")
        if "x-sdk-date" not in names or any(n not in request.headers for n in names):
            return _refused("Incorrect IAM authentication information: verify aksk signature fail")
        headers = {n: request.headers[n] for n in names}
        try:
            signed_at = datetime.datetime.strptime(headers["x-sdk-date"], sigv.DATE_FORMAT)
        except ValueError:
            return _refused("Incorrect IAM authentication information: bad X-Sdk-Date")
        skew = abs(time.time() - signed_at.replace(tzinfo=datetime.UTC).timestamp())
        canonical, _ = sigv.canonical_request(request.method, str(request.url), headers)
        expected = sigv.hmac_hex(key[0], sigv.string_to_sign(canonical, headers["x-sdk-date"]))
        if skew > MAX_CLOCK_SKEW or expected != match.group(3):
            return _refused("Incorrect IAM authentication information: verify aksk signature fail")
        return None

    def credential(self, request: web.Request) -> str | None:
        value = request.headers.get("X-Auth-Token")
        token: Token | None = self.state.iam.token(value) if value is not None else None
        if token is not None:
            return f"user:{token.user}"
        match = _AUTHORIZATION.match(request.headers.get("Authorization", ""))
        key = self.state.iam.access_key(match.group(1)) if match else None
        if key is not None:
            return f"user:{key[1]}"
        return "invalid" if value is not None or match is not None else "anonymous"

    # IAM.

    async def _login(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        result = self.state.iam.login(body)
        if isinstance(result, str):
            status = 400 if result == "malformed" else 401
            error = {
                "code": status,
                "title": "Unauthorized",
                "message": f"login refused ({result})",
            }
            return Answer.json(status, {"error": error}).to_response()
        value, token = result
        document = {
            "token": {
                "expires_at": _iso(token.expires_at),
                "issued_at": _iso(time.time()),
                "methods": ["password"],
                "project": {"id": token.project},
                "user": {"name": token.user},
            }
        }
        return Answer.json(201, document, {"X-Subject-Token": value}).to_response()

    # Admin.

    async def _iam_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.iam.to_json())

    async def _put_user(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            body = json.loads(await request.read())
            keep = bool(body.pop("keep_tokens", False)) if isinstance(body, dict) else False
            user = parse_user(name, body)
        except (ValueError, ConfigError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        self.state.iam.put_user(user, keep_tokens=keep)
        return web.json_response(user.to_json())

    async def _revoke(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            body = {}
        user = body.get("user") if isinstance(body, dict) else None
        return web.json_response({"revoked": self.state.iam.revoke(user)})

    async def _get_shape(self, request: web.Request) -> web.Response:
        return web.json_response({**DEFAULT_SHAPE, **(self.state.shape(self.name) or {})})

    async def _put_shape(self, request: web.Request) -> web.Response:
        try:
            shape = json.loads(await request.read())
        except ValueError:
            shape = None
        if not isinstance(shape, dict) or set(shape) - set(DEFAULT_SHAPE):
            keys = ", ".join(DEFAULT_SHAPE)
            return web.json_response({"error": f"shape is an object with {keys}"}, status=400)
        self.state.set_shape(self.name, shape)
        return await self._get_shape(request)
