"""Credentials from Secrets: how providers read them, and the shared IAM token cache.

Rules that hold everywhere in this module and its callers:
- a secret value never appears in a log line, an exception message, an Event, status or a
  metric label; errors name the Secret and the key, never the value;
- cache keys and budget keys are SHA-256 digests, so even they reveal nothing.
Pure asyncio, no Kubernetes client: the operator supplies a SecretReader.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from directservice.api.reasons import Reason
from directservice.core.model import DiscoveryError

# (namespace, name) -> the Secret's data, as bytes (or text, from tests and the CLI). Only the
# keys a provider needs are ever decoded (read_keys), so other keys may hold anything.
# Implementations raise DiscoveryError(Reason.SECRET_NOT_FOUND, ...) when the Secret is missing or
# unreadable (see secret_not_found) and should cache: providers call it on every poll.
SecretValue = str | bytes
SecretReader = Callable[[str, str], Awaitable[Mapping[str, SecretValue]]]

TOKEN_LIFETIME = 24 * 3600.0  # IAM tokens live 24 h unless the answer says otherwise
REFRESH_FRACTION = 0.8  # renew at 80 % of the lifetime: well before expiry, yet rarely
# After IAM refuses a login, the same credentials are not tried again for this long: IAM
# locks accounts after repeated failures, and a poll every 5 s would get there quickly.
# Changing the Secret changes the fingerprint, so a fix is picked up at once.
REFUSAL_HOLD = 300.0
REFUSED = Reason.CREDENTIALS_REJECTED


def secret_not_found(namespace: str, name: str, why: str = "does not exist") -> DiscoveryError:
    return DiscoveryError(
        Reason.SECRET_NOT_FOUND,
        f"Secret {namespace}/{name} {why}; create it in the DirectService's namespace",
    )


async def no_secrets(namespace: str, name: str) -> Mapping[str, SecretValue]:
    """The reader used when the operator wired none: every Secret is unavailable."""
    raise secret_not_found(namespace, name, "cannot be read (no Secret reader configured)")


async def read_keys(
    secrets: SecretReader,
    namespace: str,
    name: str,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
) -> dict[str, str]:
    """The non-empty values of `required` (else SecretKeyMissing) and `optional` keys.

    A Secret that lacks a key is dropped from the reader's cache (when it has one, like
    publish.secrets.SecretReader), so adding the key is seen at the next poll, not after the
    cache TTL: a missing Secret is never cached either. Only these keys are decoded as text."""
    data = await secrets(namespace, name)
    missing = [k for k in required if not data.get(k)]
    if missing:
        _forget(secrets, namespace, name)
        raise DiscoveryError(
            Reason.SECRET_KEY_MISSING,
            f"Secret {namespace}/{name} has no (or an empty) key {', '.join(missing)}",
        )
    try:
        return {
            k: _as_text(data[k], namespace, name, k) for k in (*required, *optional) if data.get(k)
        }
    except DiscoveryError:
        _forget(secrets, namespace, name)  # so a fixed Secret is read at the next poll
        raise


def _forget(secrets: SecretReader, namespace: str, name: str) -> None:
    forget = getattr(secrets, "invalidate", None)  # readers with a cache have one
    if callable(forget):
        forget(namespace, name)


def _as_text(value: SecretValue, namespace: str, name: str, key: str) -> str:
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise DiscoveryError(
            Reason.INVALID_SECRET_VALUE,
            f"key {key} of Secret {namespace}/{name} is not UTF-8 text; it must hold the "
            "credential as text",
        ) from None


def header_value(value: str, what: str) -> str:
    """A secret as a header value: trimmed (a trailing newline from `echo` is common) and
    refused if it would break the header, without ever quoting it."""
    text = value.strip()
    if not text or not all(c == "\t" or 32 <= ord(c) < 127 for c in text):
        raise DiscoveryError(
            Reason.INVALID_SECRET_VALUE,
            f"{what} is empty or holds a line break or non-ASCII character; it cannot be sent "
            "as an HTTP header",
        )
    return text


def scrub(text: str, values: tuple[str, ...]) -> str:
    """`text` with every secret value in `values` replaced: belt and braces for text that
    came from a server, which might echo a credential back (error pages, odd entries)."""
    for value in values:
        if len(value) >= 4:
            text = text.replace(value, "[redacted]")
    return text


def digest(*parts: str) -> str:
    """A short stable fingerprint of credential material, safe to log and to use as a key."""
    raw = json.dumps(parts, separators=(",", ":")).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class CachedToken:
    """An issued token; `value` is left out of repr so a stray log of this object is safe."""

    value: str = field(repr=False)
    issued_at: float
    expires_at: float

    @property
    def refresh_at(self) -> float:
        lifetime = self.expires_at - self.issued_at
        return self.issued_at + lifetime * REFRESH_FRACTION


class TokenCache:
    """Tokens by credential fingerprint, shared by every DirectService using that credential.

    get_or_fetch is single-flight per key: when many services need a fresh token at once,
    one logs in and the others wait for its result instead of hammering IAM.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._tokens: dict[str, CachedToken] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._refusals: dict[str, tuple[float, DiscoveryError]] = {}

    def fresh(self, key: str) -> CachedToken | None:
        token = self._tokens.get(key)
        if token is None or self.clock() >= token.refresh_at:
            return None
        return token

    async def get_or_fetch(
        self, key: str, fetch: Callable[[], Awaitable[CachedToken]]
    ) -> CachedToken:
        token = self.fresh(key)
        if token is not None:
            return token
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            token = self.fresh(key)  # another waiter may have fetched it meanwhile
            if token is not None:
                return token
            refusal = self._refusals.get(key)
            if refusal is not None and self.clock() < refusal[0]:
                raise DiscoveryError(
                    refusal[1].reason,
                    f"{refusal[1].message} (not retried for {REFUSAL_HOLD:.0f}s unless the "
                    "Secret changes)",
                )
            try:
                token = await fetch()
            except DiscoveryError as exc:
                if exc.reason == REFUSED:
                    self._refusals[key] = (self.clock() + REFUSAL_HOLD, exc)
                raise
            self._refusals.pop(key, None)
            self._tokens[key] = token
            return token

    def invalidate(self, key: str, token: CachedToken) -> None:
        """Forget `token` after the API refused it. Only that exact token: if another service
        already replaced it with a new one, the new one stays."""
        if self._tokens.get(key) is token:
            del self._tokens[key]

    def __len__(self) -> int:
        return len(self._tokens)
