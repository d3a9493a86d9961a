"""Operator-wide settings from `directservice run` flags (pure)."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from yarl import URL


@dataclass(frozen=True)
class OperatorConfig:
    """Cluster-wide policy a DirectService cannot override."""

    min_poll_interval: float = 1.0
    # Host globs discovery URLs may point at; empty allows any host.
    allowed_hosts: tuple[str, ...] = ()
    # Calls per minute per provider kind, shared per credential.
    rate_budgets: dict[str, float] = field(default_factory=dict)
    # Health checks in flight at once, over every DirectService of the process.
    health_checks_in_flight: int = 512

    def host_allowed(self, url: str) -> bool:
        if not self.allowed_hosts:
            return True
        host = (URL(url).host or "").lower()
        return any(fnmatch.fnmatchcase(host, pattern.lower()) for pattern in self.allowed_hosts)


def parse_rate_budget(text: str) -> tuple[str, float]:
    """ "modelArts=20" → ("modelArts", 20.0) calls per minute."""
    provider, sep, value = text.partition("=")
    try:
        calls = float(value)
    except ValueError:
        calls = -1.0
    if not sep or not provider or calls <= 0:
        raise ValueError(
            f"--rate-budget {text!r}: expected PROVIDER=CALLS_PER_MINUTE, e.g. modelArts=20"
        )
    return provider, calls
