"""Prometheus metrics, served on their own port (`directservice run --metrics-address`).

Freshness is exported as seconds since the last success, computed at scrape time, so an
alert needs no clock arithmetic and a stalled poll loop shows up even though nothing runs.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)

DISCOVERY_REQUESTS = Counter(
    "directservice_discovery_requests",
    "Discovery calls by provider and result (ok, or the condition reason of the failure).",
    ["provider", "result"],
    registry=REGISTRY,
)
DISCOVERY_LATENCY = Histogram(
    "directservice_discovery_duration_seconds",
    "Time a discovery call took, failures included.",
    ["provider"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
BUDGET_WAIT = Counter(
    "directservice_rate_budget_wait_seconds",
    "Seconds polls spent waiting for a shared rate budget.",
    ["budget"],
    registry=REGISTRY,
)
API_WRITES = Counter(
    "directservice_api_writes",
    "Writes sent to the Kubernetes API, by object kind and verb.",
    ["kind", "verb"],
    registry=REGISTRY,
)

SHARDS = Gauge(
    "directservice_shards",
    "Shards configured (--shards); 1 without sharding.",
    registry=REGISTRY,
)

SHARDS_HELD = Gauge(
    "directservice_shards_held",
    "Shards this replica holds and serves now (standalone: all of them).",
    registry=REGISTRY,
)

LEASE_RENEW_FAILURES = Counter(
    "directservice_lease_renew_failures",
    "Lease reads or writes of the election that failed (an API error, not a lost race).",
    registry=REGISTRY,
)

INTERNAL_ERRORS = Counter(
    "directservice_internal_errors",
    "Polls of a DirectService that ended in an unforeseen exception (condition InternalError).",
    ["namespace", "name"],
    registry=REGISTRY,
)


class _PerService(Collector):
    """The gauges of each DirectService: one row of floats per DirectService, turned into
    series at scrape time. A labelled child of prometheus_client costs about a KiB (an
    object with its own lock and value), and there were 8 per DirectService; a row costs a
    list. NaN is a series never set, and is not exported."""

    def __init__(self) -> None:
        self.series: list[tuple[str, str]] = []  # (name, help), by column
        self.rows: dict[tuple[str, str], list[float]] = {}

    def column(self, name: str, documentation: str) -> int:
        self.series.append((name, documentation))
        return len(self.series) - 1

    def set(self, column: int, namespace: str, name: str, value: float) -> None:
        row = self.rows.get((namespace, name))
        if row is None:
            row = self.rows[(namespace, name)] = [math.nan] * len(self.series)
        row[column] = float(value)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = [
            GaugeMetricFamily(name, documentation, labels=["namespace", "name"])
            for name, documentation in self.series
        ]
        for (namespace, name), row in list(self.rows.items()):
            for family, value in zip(families, row, strict=True):
                if not math.isnan(value):
                    family.add_metric([namespace, name], value)
        yield from families


PER_SERVICE = _PerService()


class ServiceGauge:
    """One gauge of every DirectService, labelled namespace and name."""

    __slots__ = ("_column",)

    def __init__(self, name: str, documentation: str) -> None:
        self._column = PER_SERVICE.column(name, documentation)

    def set(self, namespace: str, name: str, value: float) -> None:
        PER_SERVICE.set(self._column, namespace, name, value)


READY_ENDPOINTS = ServiceGauge(
    "directservice_ready_endpoints", "Ready endpoints published for a DirectService."
)
TOTAL_ENDPOINTS = ServiceGauge(
    "directservice_total_endpoints",
    "All endpoints (ready or not) published for a DirectService.",
)
DROPPED_ENTRIES = ServiceGauge(
    "directservice_dropped_entries",
    "Entries of the last accepted answer that were refused (invalid or disallowed address).",
)
DISCOVERY_STALE = ServiceGauge(
    "directservice_discovery_stale",
    "1 while discovery has failed for longer than spec.maxStaleness (condition Stale), else 0.",
)
UNHEALTHY_ENDPOINTS = ServiceGauge(
    "directservice_unhealthy_endpoints",
    "Instances failing their active health checks (published not ready unless in panic).",
)
HEALTH_PANIC = ServiceGauge(
    "directservice_health_panic",
    "1 while too many instances fail their checks and all are kept published (HealthPanic).",
)
DRAINING_ENDPOINTS = ServiceGauge(
    "directservice_draining_endpoints",
    "Instances that left discovery and are published as terminating for spec.drainSeconds.",
)
CONFLICTING_OBJECTS = ServiceGauge(
    "directservice_conflicting_objects",
    "Services and EndpointSlices of a DirectService's name it does not own (status.conflicts).",
)
REGISTRY.register(PER_SERVICE)


Metric = TypeVar("Metric", bound=MetricWrapperBase)
# Label children by metric and label values. Every poll touches about ten series, and
# `labels()` validates, stringifies and locks each time: the child is looked up once.
_CHILDREN: dict[tuple[MetricWrapperBase, tuple[str, ...]], MetricWrapperBase] = {}


def child(metric: Metric, *values: str) -> Metric:
    """`metric.labels(*values)`, cached (forget() drops a DirectService's)."""
    key = (metric, values)
    found = _CHILDREN.get(key)
    if found is None:
        found = _CHILDREN[key] = metric.labels(*values)
    return found  # type: ignore[return-value]  # labels() returns the metric's own type


class _Freshness(Collector):
    """directservice_seconds_since_last_success, from remembered success times."""

    def __init__(self) -> None:
        self.last_success: dict[tuple[str, str], float] = {}
        self.started = time.time()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "directservice_seconds_since_last_success",
            "Seconds since discovery last answered successfully (since operator start if never).",
            labels=["namespace", "name"],
        )
        now = time.time()
        for (namespace, name), when in list(self.last_success.items()):
            family.add_metric([namespace, name], now - when)
        yield family


FRESHNESS = _Freshness()
REGISTRY.register(FRESHNESS)


def track(namespace: str, name: str) -> None:
    """A DirectService appeared: it counts as stale from now until its first success."""
    FRESHNESS.last_success.setdefault((namespace, name), time.time())


def record_success(namespace: str, name: str, ready: int, total: int, dropped: int) -> None:
    FRESHNESS.last_success[(namespace, name)] = time.time()
    READY_ENDPOINTS.set(namespace, name, ready)
    TOTAL_ENDPOINTS.set(namespace, name, total)
    DROPPED_ENTRIES.set(namespace, name, dropped)


def forget(namespace: str, name: str) -> None:
    """A DirectService was deleted: its series go with it (and only then, so a poll loop
    that is restarting never hides a stale service from the freshness alert)."""
    FRESHNESS.last_success.pop((namespace, name), None)
    PER_SERVICE.rows.pop((namespace, name), None)
    _CHILDREN.pop((INTERNAL_ERRORS, (namespace, name)), None)
    with contextlib.suppress(KeyError):
        INTERNAL_ERRORS.remove(namespace, name)


def serve(address: str) -> None:
    """Serve /metrics on HOST:PORT in a background thread."""
    host, _, port = address.rpartition(":")
    start_http_server(int(port), addr=host or "0.0.0.0", registry=REGISTRY)


# --- Active health checks (directservice.health.checker) ------------------------------------

HEALTH_CHECKS = Counter(
    "directservice_health_checks",
    "Active health checks of published instances, by probe kind (tcp, http) and result.",
    ["kind", "result"],
    registry=REGISTRY,
)
HEALTH_CHECK_DURATION = Histogram(
    "directservice_health_check_duration_seconds",
    "Time a health check took, from its start to its verdict (timeouts included).",
    ["kind"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
HEALTH_CHECKS_IN_FLIGHT = Gauge(
    "directservice_health_checks_in_flight",
    "Health checks running now (at most the checker's concurrency cap).",
    registry=REGISTRY,
)
HEALTH_CHECK_LATENESS = Histogram(
    "directservice_health_check_lateness_seconds",
    "How late health checks start after their due time (waiting for a slot, a busy loop).",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
HEALTH_CHECKER_RESTARTS = Counter(
    "directservice_health_checker_restarts",
    "Times the health checker's child process ended unasked and was started again.",
    registry=REGISTRY,
)
# --- end of active health checks --------------------------------------------------------------
# --- load ---------------------------------------------------------------------------------------
LOOP_LAG = Histogram(
    "directservice_event_loop_lag_seconds",
    "How late the event loop runs a timer due every half second: time it was busy elsewhere.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
GC_PAUSE = Histogram(
    "directservice_gc_pause_seconds",
    "Passes of Python's cyclic garbage collector, by generation: the event loop waits them out.",
    ["generation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    registry=REGISTRY,
)
POLL_LATENESS = Histogram(
    "directservice_poll_lateness_seconds",
    "How late polls start after their due time (condition Overloaded when it persists).",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
OVERLOAD_VERDICT = Gauge(
    "directservice_overloaded",
    "1 while the operator's polls start late (its Overloaded verdict), else 0.",
    registry=REGISTRY,
)
STATUS_WRITES_DEFERRED = Counter(
    "directservice_status_writes_deferred_total",
    "Status writes put off because a DirectService had used its allowance (a flapping source).",
    registry=REGISTRY,
)
# --- end of load --------------------------------------------------------------
