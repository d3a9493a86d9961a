"""Huawei Cloud IAM password login (Keystone v3): POST {iam}/v3/auth/tokens.

The token comes back in the X-Subject-Token response header; the body's token.expires_at
says when it stops working (24 h by default). The password travels only in the request body
and the token only in headers the operator sends: neither is ever put into a message.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from directservice.api.reasons import Reason
from directservice.api.spec import Timeouts
from directservice.core.model import DiscoveryError
from directservice.discovery.base import check_status, error_code
from directservice.discovery.credentials import REFUSED, TOKEN_LIFETIME, CachedToken, digest
from directservice.discovery.httpclient import HttpClient, HttpResponse

log = logging.getLogger(__name__)

TOKEN_PATH = "/v3/auth/tokens"
TOKEN_HEADER = "X-Subject-Token"
# Status codes with which IAM refuses a login itself (wrong password, unknown user or
# domain, locked account): retrying cannot help until the Secret changes.
_REFUSING_STATUSES = frozenset({400, 401, 403})


@dataclass(frozen=True)
class IamCredentials:
    username: str
    password: str = field(repr=False)
    domain: str
    project_id: str | None = None
    project_name: str | None = None

    def identity(self, iam_endpoint: str) -> str:
        """Who this is, without the password: the key of the account's shared call budget."""
        return digest(iam_endpoint, self.domain, self.username)

    def fingerprint(self, iam_endpoint: str) -> str:
        """Everything that makes a token, password included: the token cache key."""
        return digest(
            iam_endpoint,
            self.domain,
            self.username,
            self.password,
            self.project_id or "",
            self.project_name or "",
        )


def keystone_body(creds: IamCredentials) -> dict[str, Any]:
    """The standard Keystone v3 password request, scoped to one project."""
    project: dict[str, Any] = (
        {"id": creds.project_id}
        if creds.project_id
        else {"name": creds.project_name, "domain": {"name": creds.domain}}
    )
    return {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": creds.username,
                        "password": creds.password,
                        "domain": {"name": creds.domain},
                    }
                },
            },
            "scope": {"project": project},
        }
    }


def parse_expiry(body: bytes, issued_at: float) -> float:
    """token.expires_at from the answer (ISO 8601, UTC), or issue time + 24 h when absent,
    unreadable or already past (a wrong server clock must not cause a login per poll)."""
    try:
        document = json.loads(body)
        text = document["token"]["expires_at"]
        when = datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)
        expires = when.timestamp()
    except (ValueError, TypeError, KeyError, UnicodeDecodeError):
        return issued_at + TOKEN_LIFETIME
    return expires if expires > issued_at else issued_at + TOKEN_LIFETIME


def _refused(resp: HttpResponse, secret_label: str) -> DiscoveryError:
    code = error_code(resp)
    return DiscoveryError(
        REFUSED,
        f"IAM ({resp.url}) refused the credentials in {secret_label}: HTTP {resp.status}"
        + (f" ({code})" if code else "")
        + "; check username, password, domainName and the project",
    )


async def fetch_token(
    http: HttpClient,
    iam_endpoint: str,
    creds: IamCredentials,
    *,
    timeouts: Timeouts,
    secret_label: str,
    now: float,
) -> CachedToken:
    resp = await http.request(
        "POST",
        iam_endpoint + TOKEN_PATH,
        connect_timeout=timeouts.connect,
        read_timeout=timeouts.read,
        headers={"Content-Type": "application/json;charset=utf8"},
        json_body=keystone_body(creds),
    )
    if resp.status in _REFUSING_STATUSES:
        raise _refused(resp, secret_label)
    check_status(resp, frozenset({200, 201}))
    token = _header(resp.headers, TOKEN_HEADER)
    if not token:
        raise DiscoveryError(
            Reason.WRONG_SHAPE, f"IAM ({resp.url}) answered without {TOKEN_HEADER}"
        )
    issued = CachedToken(value=token, issued_at=now, expires_at=parse_expiry(resp.body, now))
    log.debug(
        "IAM token for credential %s issued; refresh in %.0fs",
        creds.identity(iam_endpoint),
        issued.refresh_at - now,
    )
    return issued


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    return value.strip() if isinstance(value, str) and value.strip() else None
