"""Discovery providers: one module per discovery API, behind providers.base.Provider."""

from __future__ import annotations

from directservice.budget import DEFAULT_CALLS_PER_MINUTE, RateBudgets
from directservice.credentials import SecretReader, TokenCache, no_secrets
from directservice.providers.base import Provider
from directservice.providers.http_json import HttpJsonProvider
from directservice.providers.modelarts import ModelArtsProvider
from directservice.providers.pai_eas import PaiEasProvider
from directservice.providers.static import StaticProvider
from directservice.spec import (
    DirectServiceSpec,
    HttpJsonSpec,
    ModelArtsSpec,
    PaiEasSpec,
    StaticSpec,
)

__all__ = [
    "HttpJsonProvider",
    "ModelArtsProvider",
    "PaiEasProvider",
    "Provider",
    "StaticProvider",
    "provider_for",
]


def provider_for(
    spec: DirectServiceSpec,
    *,
    namespace: str = "default",
    secrets: SecretReader = no_secrets,
    token_cache: TokenCache | None = None,
    budgets: RateBudgets | None = None,
    member_id: str | None = None,
) -> Provider:
    """The provider for a parsed spec.

    namespace: the DirectService's; Secrets are read from it only.
    secrets: reads a Secret's decoded data (credentials.SecretReader).
    token_cache: shared by all DirectServices so one credential logs in to IAM once; a
        private cache is made when None (every spec change then logs in again).
    budgets: shared by all DirectServices; None disables call budgets (tests, the CLI).
    member_id: identifies the DirectService within its budget, e.g. "namespace/name".
    Call provider.close() when the DirectService is deleted or this provider is replaced.
    """
    kind = spec.provider_kind
    calls: float | None = spec.calls_per_minute
    if calls is None:  # the operator's default for this provider (--rate-budget), if any
        calls = budgets.default_for(kind) if budgets else DEFAULT_CALLS_PER_MINUTE.get(kind)
    member = budgets.member(member_id or f"{namespace}/{id(spec)}") if budgets else None
    provider = spec.provider
    if isinstance(provider, PaiEasSpec):
        return PaiEasProvider(
            provider,
            spec.timeouts,
            allowed=spec.allowed_cidrs,
            member=member,
            calls_per_minute=calls,
        )
    if isinstance(provider, ModelArtsSpec):
        return ModelArtsProvider(
            provider,
            spec.timeouts,
            namespace=namespace,
            secrets=secrets,
            tokens=token_cache if token_cache is not None else TokenCache(),
            allowed=spec.allowed_cidrs,
            member=member,
            calls_per_minute=calls,
        )
    if isinstance(provider, HttpJsonSpec):
        return HttpJsonProvider(
            provider,
            spec.timeouts,
            namespace=namespace,
            secrets=secrets,
            allowed=spec.allowed_cidrs,
            member=member,
            calls_per_minute=calls,
        )
    if isinstance(provider, StaticSpec):
        return StaticProvider(provider, allowed=spec.allowed_cidrs)
    raise TypeError(f"no provider for {type(provider).__name__}")
