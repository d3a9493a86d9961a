"""Operator-wide settings from `directservice run` flags (pure)."""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
from dataclasses import dataclass, field

from yarl import URL

from directservice.api.spec import Network
from directservice.core.entries import DeniedNetwork


@dataclass(frozen=True)
class HostRule:
    """One --allowed-host entry: a host glob, for one provider kind or (None) for every kind."""

    glob: str
    kind: str | None = None

    def matches(self, kind: str, host: str) -> bool:
        if self.kind is not None and self.kind != kind:
            return False
        return fnmatch.fnmatchcase(host, self.glob.lower())

    def __str__(self) -> str:
        return self.glob if self.kind is None else f"{self.kind}={self.glob}"


# The providers' own endpoint domains, each for its own kind only: a paiEas spec cannot
# reach a Huawei host nor the reverse, and httpJson, whose URL can be anything, has none.
# PAI-EAS: pai-eas-vpc.{region}.aliyuncs.com and {uid}.vpc.{region}.pai-eas.aliyuncs.com;
# ModelArts and IAM: modelarts.{region}.myhuaweicloud.com, iam.{region}.myhuaweicloud.com.
DEFAULT_ALLOWED_HOSTS: tuple[HostRule, ...] = (
    HostRule("pai-eas-vpc.*.aliyuncs.com", "paiEas"),
    HostRule("*.pai-eas.aliyuncs.com", "paiEas"),
    HostRule("*.myhuaweicloud.com", "modelArts"),
)


@dataclass(frozen=True)
class OperatorConfig:
    """Cluster-wide policy a DirectService cannot override."""

    min_poll_interval: float = 1.0
    # Hosts discovery URLs may point at. Never empty-means-any: "*" must be said.
    allowed_hosts: tuple[HostRule, ...] = DEFAULT_ALLOWED_HOSTS
    # Networks discovery may connect to although loopback, link-local, metadata, ...
    discovery_cidrs: tuple[Network, ...] = ()
    # Networks no published address may fall in, whatever spec.allowedCIDRs says.
    service_cidrs: tuple[Network, ...] = ()
    pod_cidrs: tuple[Network, ...] = ()
    denied_cidrs: tuple[Network, ...] = ()
    # Calls per minute per provider kind, shared per credential.
    rate_budgets: dict[str, float] = field(default_factory=dict)
    # Health checks in flight at once, over every DirectService of the process.
    health_checks_in_flight: int = 4096

    def host_allowed(self, kind: str, url: str) -> bool:
        return _host_allowed(self.allowed_hosts, kind, url)

    def denied_networks(self) -> tuple[DeniedNetwork, ...]:
        return _denied_networks(self.service_cidrs, self.pod_cidrs, self.denied_cidrs)


# Asked on every poll with the same few answers: cached (a glob match and a URL parse cost
# more than the rest of an unchanged poll's checks together).
@functools.lru_cache(maxsize=4096)
def _host_allowed(rules: tuple[HostRule, ...], kind: str, url: str) -> bool:
    host = (URL(url).host or "").lower()
    return bool(host) and any(rule.matches(kind, host) for rule in rules)


@functools.lru_cache(maxsize=16)
def _denied_networks(
    service: tuple[Network, ...], pod: tuple[Network, ...], denied: tuple[Network, ...]
) -> tuple[DeniedNetwork, ...]:
    return (
        *(DeniedNetwork(net, "the cluster's Service network") for net in service),
        *(DeniedNetwork(net, "the cluster's pod network") for net in pod),
        *(DeniedNetwork(net, "a network the operator denies") for net in denied),
    )


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


def parse_host_rule(text: str, kinds: tuple[str, ...]) -> HostRule:
    """ "paiEas=*.pai-eas.aliyuncs.com" → that glob for paiEas; "example.com" → for every kind."""
    kind, sep, glob = text.partition("=")
    if not sep:
        kind, glob = "", text
    if not glob.strip() or glob != glob.strip():
        raise ValueError(f"--allowed-host {text!r}: expected [PROVIDER=]HOST_GLOB")
    if sep and kind not in kinds:
        raise ValueError(f"--allowed-host {text!r}: {kind!r} is no provider ({', '.join(kinds)})")
    return HostRule(glob, kind or None)


def parse_cidr(text: str, flag: str) -> Network:
    """A network with its host bits zero ("10.96.0.0/12"); "10.96.0.1/12" is likely a typo."""
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        raise ValueError(f"{flag} {text!r}: {exc}") from None
