"""Spec vocabulary shared by the providers' own spec parsers: field paths into an answer,
Secret key references, and checked text. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from yarl import URL

from directservice.api.spec import SpecError, mapping

BASE_URL = re.compile(r"^https?://[^/?#\s]+(/[^?#\s]*)?$")
FULL_URL = re.compile(r"^https?://[^/?#\s]+[^#\s]*$")
# A dot path: segments without dots or spaces ("data.endpoints", "items.0.ip").
DOT_PATH = re.compile(r"^[^.\s]+(\.[^.\s]+)*$")
PATH_PARAM = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_.]*$")
SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


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


def text(body: Mapping[str, Any], key: str, where: str, pattern: re.Pattern[str]) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not pattern.match(value):
        raise SpecError(f"{where}.{key} is missing or malformed")
    return value


def url(body: Mapping[str, Any], key: str, where: str, pattern: re.Pattern[str]) -> str:
    """A URL that matches `pattern` and that the HTTP client can use (host, port in range)."""
    value = text(body, key, where, pattern)
    try:
        parsed = URL(value)
        if not parsed.host or parsed.host_port_subcomponent is None:
            raise ValueError(value)
    except (ValueError, TypeError):
        raise SpecError(f"{where}.{key} is not a usable http(s) URL (host or port)") from None
    return value


def optional_url(
    body: Mapping[str, Any], key: str, where: str, pattern: re.Pattern[str]
) -> str | None:
    return None if body.get(key) in (None, "") else url(body, key, where, pattern)


def optional_text(
    body: Mapping[str, Any], key: str, where: str, pattern: re.Pattern[str]
) -> str | None:
    return None if body.get(key) in (None, "") else text(body, key, where, pattern)


def optional_bool(body: Mapping[str, Any], key: str, where: str) -> bool | None:
    value = body.get(key)
    if value is not None and not isinstance(value, bool):
        raise SpecError(f"{where}.{key} must be true or false")
    return value


def parse_fields(raw: Any, where: str, base: FieldPaths = FieldPaths()) -> FieldPaths:
    """Field paths over `base`; an explicit empty string unsets a default."""
    if raw is None:
        return base
    values = {name: getattr(base, name) for name in FieldPaths.__dataclass_fields__}
    for name, value in mapping(raw, where).items():
        if name not in values:
            raise SpecError(f"{where}.{str(name)[:40]} is not a known field")
        if value in (None, ""):
            values[name] = None
        elif not isinstance(value, str) or not DOT_PATH.match(value):
            raise SpecError(f"{where}.{name} must be a dot path like data.endpoints")
        else:
            values[name] = value
    return FieldPaths(**values)


def secret_key_ref(raw: Any, where: str) -> SecretKeyRef:
    ref = mapping(raw, where)
    own_namespace_only(ref, where)
    return SecretKeyRef(text(ref, "name", where, SECRET_NAME), text(ref, "key", where, SECRET_KEY))


def own_namespace_only(ref: Mapping[str, Any], where: str) -> None:
    """A Secret reference names no namespace: Secrets are read from the DirectService's own.
    The CRD has no such field (the API server drops it); a file or an object stored under a
    looser CRD may still carry one, which is refused rather than quietly ignored."""
    if "namespace" in ref:
        raise SpecError(
            f"{where}.namespace is not allowed: Secrets are read from the DirectService's "
            "own namespace only"
        )
