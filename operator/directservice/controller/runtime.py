"""What one operator process shares, as the one typed object kopf's memo carries."""

from __future__ import annotations

from dataclasses import dataclass, field

from directservice.controller.config import OperatorConfig
from directservice.controller.reconciler import Reconciler
from directservice.discovery.budget import RateBudgets
from directservice.discovery.credentials import TokenCache
from directservice.discovery.httpclient import HttpClient
from directservice.health.checker import HealthChecker
from directservice.publish.secrets import SecretReader
from directservice.publish.writer import KubeWriter, api_client


@dataclass(frozen=True)
class Options:
    """How `directservice run` was started."""

    config: OperatorConfig = field(default_factory=OperatorConfig)
    namespaces: tuple[str, ...] = ()  # empty: cluster-wide
    peering: str = ""  # kopf peering object name; empty: standalone
    liveness: str = "http://0.0.0.0:8080/healthz"


@dataclass
class Runtime:
    options: Options
    writer: KubeWriter
    secrets: SecretReader
    http: HttpClient = field(default_factory=HttpClient)
    tokens: TokenCache = field(default_factory=TokenCache)  # one IAM login per credential
    budgets: RateBudgets = field(default_factory=RateBudgets)
    health: HealthChecker = field(default_factory=HealthChecker)  # one pool for all
    # The poll loop of each DirectService, by (namespace, name).
    reconcilers: dict[tuple[str, str], Reconciler] = field(default_factory=dict)

    @classmethod
    def connect(cls, options: Options) -> Runtime:
        """Clients for the cluster the operator runs in (else the kubeconfig's)."""
        api = api_client()
        return cls(
            options=options,
            writer=KubeWriter(api),
            secrets=SecretReader(api),
            budgets=RateBudgets(defaults=options.config.rate_budgets),
            health=HealthChecker(max_in_flight=options.config.health_checks_in_flight),
        )
