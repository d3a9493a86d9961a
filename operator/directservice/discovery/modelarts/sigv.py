"""Huawei Cloud AK/SK request signing (SDK-HMAC-SHA256), for APIs called without a token.

    CanonicalRequest = METHOD \\n CanonicalURI \\n CanonicalQuery \\n CanonicalHeaders \\n
                       SignedHeaders \\n hex(sha256(body))
    StringToSign     = "SDK-HMAC-SHA256" \\n X-Sdk-Date \\n hex(sha256(CanonicalRequest))
    Authorization    = SDK-HMAC-SHA256 Access=AK, SignedHeaders=..., Signature=hex(hmac(SK, ...))

The canonical URI percent-encodes each path segment and always ends in '/'; the query is
sorted; headers are lower-cased, trimmed and sorted, each line ending in '\\n'. The signed
Host must be the Host the client sends, so sign() returns it for the caller to send as is.
Pure: no I/O. The secret key never leaves sign().
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import quote, unquote

from yarl import URL

ALGORITHM = "SDK-HMAC-SHA256"
DATE_HEADER = "X-Sdk-Date"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"


def _encode(text: str) -> str:
    # RFC 3986 unreserved characters stay; everything else becomes %XX (upper-case hex).
    return quote(text, safe="-_.~")


def canonical_uri(path: str) -> str:
    segments = [_encode(unquote(segment)) for segment in path.split("/")]
    uri = "/".join(segments) or "/"
    return uri if uri.endswith("/") else uri + "/"


def canonical_query(url: URL) -> str:
    pairs = sorted((_encode(k), _encode(v)) for k, v in url.query.items())
    return "&".join(f"{k}={v}" for k, v in pairs)


def canonical_request(
    method: str, url: str, headers: Mapping[str, str], body: bytes = b""
) -> tuple[str, str]:
    """(canonical request, signed header list) for a request with exactly these headers."""
    parsed = URL(url)
    lines = sorted((name.lower(), value.strip()) for name, value in headers.items())
    canonical_headers = "".join(f"{name}:{value}\n" for name, value in lines)
    signed = ";".join(name for name, _ in lines)
    request = "\n".join(
        [
            method.upper(),
            canonical_uri(parsed.raw_path),
            canonical_query(parsed),
            canonical_headers,
            signed,
            hashlib.sha256(body).hexdigest(),
        ]
    )
    return request, signed


def string_to_sign(canonical: str, sdk_date: str) -> str:
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return f"{ALGORITHM}\n{sdk_date}\n{digest}"


def hmac_hex(secret_key: str, text: str) -> str:
    return hmac.new(secret_key.encode(), text.encode(), hashlib.sha256).hexdigest()


def sign(
    access_key: str,
    secret_key: str,
    method: str,
    url: str,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    now: datetime.datetime | None = None,
) -> dict[str, str]:
    """The headers to send: the given ones plus Host, X-Sdk-Date and Authorization."""
    when = now or datetime.datetime.now(datetime.UTC)
    sdk_date = when.astimezone(datetime.UTC).strftime(DATE_FORMAT)
    # yarl leaves out default ports, as HTTP clients do in the Host header they send.
    out = {"Host": URL(url).host_port_subcomponent or "", **(headers or {}), DATE_HEADER: sdk_date}
    canonical, signed = canonical_request(method, url, out, body)
    signature = hmac_hex(secret_key, string_to_sign(canonical, sdk_date))
    out["Authorization"] = (
        f"{ALGORITHM} Access={access_key}, SignedHeaders={signed}, Signature={signature}"
    )
    return out
