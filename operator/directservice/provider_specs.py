"""The spec.provider section as typed values: one frozen dataclass per provider.

Split from spec.py so each file stays readable; spec.py re-exports everything here. The
checks repeat the CRD schema where a wrong value would otherwise fail deep inside a poll.
Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_EAS_PATH = "/exported/apis/eas.alibaba-inc.k8s.io/v1/upstreams/{serviceName}"
AUTH_TOKEN, AUTH_PASSWORD, AUTH_ACCESS_KEY = "Token", "Password", "AccessKey"
DEFAULT_TOKEN_KEY = "token"
MAX_STATIC_INSTANCES = 1000

_BASE_URL = re.compile(r"^https?://[^/?#\s]+(/[^?#\s]*)?$")
_FULL_URL = re.compile(r"^https?://[^/?#\s]+[^#\s]*$")
# A dot path: segments without dots or spaces ("data.endpoints", "items.0.ip").
_DOT_PATH = re.compile(r"^[^.\s]+(\.[^.\s]+)*$")
_PATH_PARAM = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_.]*$")
_SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Headers the operator sets itself or that would change how the request is framed.
_RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


class SpecError(ValueError):
    """The DirectService spec cannot be used; the message is shown to the user."""


@dataclass(frozen=True)
class SecretKeyRef:
    """A key of a Secret in the DirectService's own namespace."""

    name: str
    key: str


@dataclass(frozen=True)
class FieldPaths:
    """Dot paths into a discovery answer; None means "not read" (or "guess", for modelArts)."""

    list: str | None = None
    ip: str | None = None
    port: str | None = None
    scheme: str | None = None
    weight: str | None = None
    ready: str | None = None
    hostname: str | None = None


@dataclass(frozen=True)
class PaiEasSpec:
    endpoint: str
    service_name: str
    path: str = DEFAULT_EAS_PATH
    internal: bool | None = None


@dataclass(frozen=True)
class ModelArtsSpec:
    endpoint: str
    project_id: str
    service_id: str
    secret_name: str
    auth_method: str = AUTH_PASSWORD
    token_key: str = DEFAULT_TOKEN_KEY
    iam_endpoint: str | None = None
    fields: FieldPaths = FieldPaths()


@dataclass(frozen=True)
class HeaderSpec:
    """One request header: a literal value or a Secret key (never both)."""

    name: str
    value: str | None = field(default=None, repr=False)
    secret: SecretKeyRef | None = None


@dataclass(frozen=True)
class HttpJsonSpec:
    url: str
    headers: tuple[HeaderSpec, ...] = ()
    list_path: str = ""
    fields: FieldPaths = FieldPaths(ip="ip", port="port", weight="weight")
    success_statuses: frozenset[int] = frozenset({200})


@dataclass(frozen=True)
class StaticInstance:
    ip: str
    port: int
    weight: float | None = None
    ready: bool = True
    hostname: str | None = None


@dataclass(frozen=True)
class StaticSpec:
    instances: tuple[StaticInstance, ...]


ProviderSpec = PaiEasSpec | ModelArtsSpec | HttpJsonSpec | StaticSpec
PROVIDER_KINDS: dict[type[Any], str] = {
    PaiEasSpec: "paiEas",
    ModelArtsSpec: "modelArts",
    HttpJsonSpec: "httpJson",
    StaticSpec: "static",
}


def kind_of(spec: ProviderSpec) -> str:
    return PROVIDER_KINDS[type(spec)]


def parse_provider(raw: Any) -> ProviderSpec:
    known = ", ".join(PROVIDER_KINDS.values())
    if not isinstance(raw, Mapping) or len(raw) != 1:
        raise SpecError(f"spec.provider must set exactly one provider ({known})")
    kind, body = next(iter(raw.items()))
    parser = _PARSERS.get(kind)
    if parser is None:
        raise SpecError(f"spec.provider.{kind} is not a known provider ({known})")
    if not isinstance(body, Mapping):
        raise SpecError(f"spec.provider.{kind} must be an object")
    return parser(body, f"spec.provider.{kind}")


def _text(body: Mapping[str, Any], key: str, where: str, pattern: re.Pattern[str]) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not pattern.match(value):
        raise SpecError(f"{where}.{key} is missing or malformed")
    return value


def _optional(
    body: Mapping[str, Any], key: str, where: str, pattern: re.Pattern[str]
) -> str | None:
    return None if body.get(key) in (None, "") else _text(body, key, where, pattern)


def _pai_eas(body: Mapping[str, Any], where: str) -> PaiEasSpec:
    endpoint = str(body.get("endpoint") or "")
    if not re.match(r"^https?://[^/?#\s]+", endpoint):
        raise SpecError(f"{where}.endpoint must be an http(s):// base URL")
    service = str(body.get("serviceName") or "")
    if not service:
        raise SpecError(f"{where}.serviceName is required")
    path = str(body.get("path") or DEFAULT_EAS_PATH)
    if not path.startswith("/"):
        raise SpecError(f"{where}.path must start with '/'")
    internal = body.get("internal")
    return PaiEasSpec(
        endpoint=endpoint.rstrip("/"),
        service_name=service,
        path=path,
        internal=None if internal is None else bool(internal),
    )


def parse_fields(raw: Any, where: str, base: FieldPaths = FieldPaths()) -> FieldPaths:
    """Field paths over `base`; an explicit empty string unsets a default."""
    if raw is None:
        return base
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where} must be an object")
    values = {name: getattr(base, name) for name in FieldPaths.__dataclass_fields__}
    for name, value in raw.items():
        if name not in values:
            raise SpecError(f"{where}.{name} is not a known field")
        if value in (None, ""):
            values[name] = None
        elif not isinstance(value, str) or not _DOT_PATH.match(value):
            raise SpecError(f"{where}.{name} must be a dot path like data.endpoints")
        else:
            values[name] = value
    return FieldPaths(**values)


def _model_arts(body: Mapping[str, Any], where: str) -> ModelArtsSpec:
    endpoint = _text(body, "endpoint", where, _BASE_URL)
    ref = body.get("credentialsSecretRef")
    if not isinstance(ref, Mapping):
        raise SpecError(f"{where}.credentialsSecretRef is required")
    secret = _text(ref, "name", f"{where}.credentialsSecretRef", _SECRET_NAME)
    token_key = _optional(ref, "tokenKey", f"{where}.credentialsSecretRef", _SECRET_KEY)
    iam = _optional(body, "iamEndpoint", where, _BASE_URL)
    method = body.get("authMethod")
    if method is None:
        # Inferred from what is set, so the common cases need no extra field.
        method = AUTH_TOKEN if token_key else AUTH_PASSWORD if iam else None
    if method not in (AUTH_TOKEN, AUTH_PASSWORD, AUTH_ACCESS_KEY):
        raise SpecError(
            f"{where}: set iamEndpoint (IAM password login), credentialsSecretRef.tokenKey "
            "(a ready token) or authMethod: AccessKey"
        )
    if method == AUTH_PASSWORD and not iam:
        raise SpecError(f"{where}.iamEndpoint is required with authMethod Password")
    if token_key and method != AUTH_TOKEN:
        raise SpecError(f"{where}.credentialsSecretRef.tokenKey is only used with authMethod Token")
    return ModelArtsSpec(
        endpoint=endpoint.rstrip("/"),
        project_id=_text(body, "projectId", where, _PATH_PARAM),
        service_id=_text(body, "serviceId", where, _PATH_PARAM),
        secret_name=secret,
        auth_method=method,
        token_key=token_key or DEFAULT_TOKEN_KEY,
        iam_endpoint=iam.rstrip("/") if iam else None,
        fields=parse_fields(body.get("fields"), f"{where}.fields"),
    )


def _header(raw: Any, where: str) -> HeaderSpec:
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where} must be an object")
    name = _text(raw, "name", where, _HEADER_NAME)
    if name.lower() in _RESERVED_HEADERS:
        raise SpecError(f"{where}.name: {name} is set by the operator")
    value, source = raw.get("value"), raw.get("valueFrom")
    if (value is None) == (source is None):
        raise SpecError(f"{where} must set exactly one of value and valueFrom")
    if value is not None:
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise SpecError(f"{where}.value must be a single-line string")
        return HeaderSpec(name=name, value=value)
    ref = source.get("secretKeyRef") if isinstance(source, Mapping) else None
    if not isinstance(ref, Mapping):
        raise SpecError(f"{where}.valueFrom.secretKeyRef is required")
    inner = f"{where}.valueFrom.secretKeyRef"
    return HeaderSpec(
        name=name,
        secret=SecretKeyRef(
            _text(ref, "name", inner, _SECRET_NAME), _text(ref, "key", inner, _SECRET_KEY)
        ),
    )


def _http_json(body: Mapping[str, Any], where: str) -> HttpJsonSpec:
    url = _text(body, "url", where, _FULL_URL)
    raw_headers = body.get("headers") or []
    if not isinstance(raw_headers, list):
        raise SpecError(f"{where}.headers must be a list")
    headers = tuple(_header(h, f"{where}.headers[{i}]") for i, h in enumerate(raw_headers))
    list_path = body.get("listPath") or ""
    if list_path and (not isinstance(list_path, str) or not _DOT_PATH.match(list_path)):
        raise SpecError(f"{where}.listPath must be a dot path like data.hosts, or empty")
    statuses = body.get("successStatuses") or [200]
    if not isinstance(statuses, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) and 200 <= s <= 299 for s in statuses
    ):
        raise SpecError(f"{where}.successStatuses must list HTTP statuses between 200 and 299")
    raw_fields = body.get("fields")
    if isinstance(raw_fields, Mapping) and "list" in raw_fields:
        raise SpecError(f"{where}.fields.list is not a field here; set {where}.listPath")
    fields = parse_fields(raw_fields, f"{where}.fields", HttpJsonSpec.fields)
    if fields.ip is None or fields.port is None:
        raise SpecError(f"{where}.fields.ip and .port cannot be unset")
    return HttpJsonSpec(
        url=url,
        headers=headers,
        list_path=list_path,
        fields=fields,
        success_statuses=frozenset(statuses),
    )


def _static(body: Mapping[str, Any], where: str) -> StaticSpec:
    raw = body.get("instances")
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_STATIC_INSTANCES:
        raise SpecError(f"{where}.instances must list 1..{MAX_STATIC_INSTANCES} instances")
    instances = []
    for index, item in enumerate(raw):
        at = f"{where}.instances[{index}]"
        if not isinstance(item, Mapping) or not isinstance(item.get("ip"), str):
            raise SpecError(f"{at}.ip is required")
        port, weight = item.get("port"), item.get("weight")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise SpecError(f"{at}.port must be 1..65535")
        if weight is not None and (isinstance(weight, bool) or not isinstance(weight, int | float)):
            raise SpecError(f"{at}.weight must be a number")
        ready = item.get("ready", True)
        if not isinstance(ready, bool):
            raise SpecError(f"{at}.ready must be a boolean")
        hostname = item.get("hostname")
        instances.append(
            StaticInstance(
                ip=item["ip"],
                port=port,
                weight=None if weight is None else float(weight),
                ready=ready,
                hostname=str(hostname) if hostname else None,
            )
        )
    return StaticSpec(instances=tuple(instances))


_PARSERS: dict[str, Callable[[Mapping[str, Any], str], ProviderSpec]] = {
    "paiEas": _pai_eas,
    "modelArts": _model_arts,
    "httpJson": _http_json,
    "static": _static,
}
