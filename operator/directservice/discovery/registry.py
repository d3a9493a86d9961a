"""The providers by kind: each provider module registers its spec parser and its factory.

spec.provider holds exactly one key, the provider kind; its value is parsed by that
provider's own parser, and a poll loop gets its provider from provider_for(). Nothing here
knows a provider by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from directservice.api import spec as api_spec
from directservice.api.spec import DirectServiceSpec, Network, ProviderSpec, SpecError, Timeouts
from directservice.discovery.base import Provider
from directservice.discovery.budget import Member, RateBudgets
from directservice.discovery.credentials import SecretReader, TokenCache, no_secrets

S = TypeVar("S", bound=ProviderSpec)


@dataclass(frozen=True)
class ProviderContext:
    """What a provider gets besides its own spec section."""

    namespace: str  # the DirectService's: Secrets are read from it only
    timeouts: Timeouts
    allowed: tuple[Network, ...]
    secrets: SecretReader = no_secrets
    tokens: TokenCache | None = None  # shared, so one credential logs in to IAM once
    member: Member | None = None  # the seat in the shared call budget; None: unlimited
    calls_per_minute: float | None = None


@dataclass(frozen=True)
class ProviderKind(Generic[S]):
    kind: str
    parse: Callable[[Mapping[str, Any], str], S]  # (spec.provider.<kind>, its field path)
    build: Callable[[S, ProviderContext], Provider]
    spec_type: type[S]


_KINDS: dict[str, ProviderKind[Any]] = {}


def register(kind: ProviderKind[S]) -> ProviderKind[S]:
    if kind.kind in _KINDS:
        raise ValueError(f"provider kind {kind.kind} registered twice")
    _KINDS[kind.kind] = kind
    return kind


def kinds() -> tuple[str, ...]:
    return tuple(sorted(_KINDS))


def parse_provider(raw: Any) -> ProviderSpec:
    known = ", ".join(sorted(_KINDS))
    if not isinstance(raw, Mapping) or len(raw) != 1:
        raise SpecError(f"spec.provider must set exactly one provider ({known})")
    name, body = next(iter(raw.items()))
    kind = _KINDS.get(name)
    if kind is None:
        raise SpecError(f"spec.provider.{str(name)[:40]} is not a known provider ({known})")
    where = f"spec.provider.{name}"
    parsed: ProviderSpec = kind.parse(api_spec.mapping(body, where), where)
    return parsed


def parse_spec(raw: Any) -> DirectServiceSpec:
    """A DirectService spec, its provider section parsed by that provider."""
    return api_spec.parse_spec(raw, parse_provider)


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

    budgets: shared by all DirectServices; None disables call budgets (tests, the CLI).
    member_id: identifies the DirectService within its budget, e.g. "namespace/name".
    Call provider.close() when the DirectService is deleted or this provider is replaced.
    """
    kind = _KINDS[spec.provider_kind]
    calls: float | None = spec.calls_per_minute
    if calls is None and budgets is not None:  # the operator's default (--rate-budget)
        calls = budgets.default_for(kind.kind)
    if calls is None:  # the provider's own, e.g. the vendor's per-credential limit
        calls = spec.provider.default_calls_per_minute
    context = ProviderContext(
        namespace=namespace,
        timeouts=spec.timeouts,
        allowed=spec.allowed_cidrs,
        secrets=secrets,
        tokens=token_cache,
        member=budgets.member(member_id or f"{namespace}/{id(spec)}") if budgets else None,
        calls_per_minute=calls,
    )
    provider = spec.provider
    if not isinstance(provider, kind.spec_type):
        raise TypeError(f"{type(provider).__name__} is no {kind.kind} spec")
    return kind.build(provider, context)
