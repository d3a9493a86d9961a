"""Discovery providers: one module per discovery API, behind providers.base.Provider."""

from __future__ import annotations

from directservice.providers.base import Provider
from directservice.providers.pai_eas import PaiEasProvider
from directservice.spec import DirectServiceSpec, PaiEasSpec

__all__ = ["PaiEasProvider", "Provider", "provider_for"]


def provider_for(spec: DirectServiceSpec) -> Provider:
    """The provider for a parsed spec."""
    if isinstance(spec.provider, PaiEasSpec):
        return PaiEasProvider(spec.provider, spec.timeouts)
    raise TypeError(f"no provider for {type(spec.provider).__name__}")
