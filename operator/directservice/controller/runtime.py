"""What one operator process shares, as the one typed object kopf's memo carries."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from directservice import __version__
from directservice.controller.config import OperatorConfig
from directservice.controller.election import Elector, Ownership
from directservice.controller.looplag import LoopLoad
from directservice.controller.reconciler import Reconciler
from directservice.core.leases import Timing
from directservice.discovery.budget import RateBudgets
from directservice.discovery.credentials import TokenCache
from directservice.discovery.httpclient import HttpClient
from directservice.health.process import CheckerProcess
from directservice.publish.apiclient import ApiEndpoint, ApiTransport
from directservice.publish.leases import LeaseClient
from directservice.publish.secrets import SecretReader
from directservice.publish.writer import KubeWriter


@dataclass(frozen=True)
class Election:
    """--leader-election: which Leases, and this replica's name in them."""

    identity: str
    lease_name: str = "directservice-operator"
    namespace: str = "default"
    shards: int = 1
    timing: Timing = field(default_factory=Timing)


@dataclass(frozen=True)
class Options:
    """How `directservice run` was started."""

    config: OperatorConfig = field(default_factory=OperatorConfig)
    namespaces: tuple[str, ...] = ()  # empty: cluster-wide
    liveness: str = "http://0.0.0.0:8080/healthz"
    election: Election | None = None  # None: standalone, serves every DirectService


@dataclass
class Runtime:
    options: Options
    writer: KubeWriter
    secrets: SecretReader
    http: HttpClient = field(default_factory=HttpClient)
    tokens: TokenCache = field(default_factory=TokenCache)  # one IAM login per credential
    budgets: RateBudgets = field(default_factory=RateBudgets)
    health: CheckerProcess = field(default_factory=CheckerProcess)  # one pool for all
    # The poll loop of each DirectService, by (namespace, name).
    reconcilers: dict[tuple[str, str], Reconciler] = field(default_factory=dict)
    ownership: Ownership = field(default_factory=Ownership)
    load: LoopLoad = field(default_factory=LoopLoad)  # the Overloaded verdict of the process
    elector: Elector | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)  # kopf's stop flag
    election_task: asyncio.Task[None] | None = None
    # The writes and Secret reads share one; Leases have their own connections, so a
    # renewal never waits behind a burst of writes (publish/leases.py).
    transports: tuple[ApiTransport, ...] = ()

    @classmethod
    def connect(cls, options: Options) -> Runtime:
        """Clients for the cluster the operator runs in (else the kubeconfig's)."""
        # Credentials come with kopf's login (handlers.login calls log_in).
        api, lease_api = ApiTransport(), ApiTransport()
        election = options.election
        ownership = Ownership()
        elector = None
        if election is not None:
            ownership = Ownership(shards=election.shards, timing=election.timing)
            elector = Elector(
                leases=LeaseClient(lease_api, election.namespace),
                ownership=ownership,
                identity=election.identity,
                name=election.lease_name,
                timing=election.timing,
            )
        # Discovery servers see which replica calls (a standby never should).
        agent = f"directservice-operator/{__version__}"
        if election is not None:
            agent += f" ({election.identity})"
        return cls(
            options=options,
            http=HttpClient(user_agent=agent),
            writer=KubeWriter(api),
            secrets=SecretReader(api),
            budgets=RateBudgets(defaults=options.config.rate_budgets),
            health=CheckerProcess(max_in_flight=options.config.health_checks_in_flight),
            ownership=ownership,
            elector=elector,
            transports=(api, lease_api),
        )

    def log_in(self, endpoint: ApiEndpoint) -> None:
        """Where and as whom every call goes, from kopf's (re-)login."""
        for transport in self.transports:
            transport.use(endpoint)

    async def close_transports(self) -> None:
        for transport in self.transports:
            await transport.close()
