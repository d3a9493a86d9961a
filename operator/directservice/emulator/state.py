"""Pure emulator state: configured services, queued faults and the request log.

No HTTP here, so it can be unit-tested directly. All methods are thread-safe: the server
runs on its own event loop thread while tests may inspect the state in-process.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .faults import Fault
from .iam import IamState

DEFAULT_WEIGHT = 100
DEFAULT_LOG_SIZE = 10_000
_SERVICE_KEYS = frozenset({"instances", "correlative", "fill_defaults"})
# Top-level config keys read by flavours (see EmulatorState.configure), not by parse_config.
FLAVOUR_KEYS = frozenset({"iam", "modelarts"})


@dataclass(frozen=True)
class Service:
    """A discoverable service. Instances are arbitrary JSON values served as-is, so tests can
    feed clients deliberately odd data (string weights, extra keys, non-objects)."""

    name: str
    instances: tuple[Any, ...] = ()
    correlative: tuple[str, ...] = ()  # empty: just [name]

    def correlative_or_self(self) -> list[str]:
        return list(self.correlative) if self.correlative else [self.name]

    def to_json(self) -> dict[str, Any]:
        return {
            "instances": copy.deepcopy(list(self.instances)),
            "correlative": self.correlative_or_self(),
        }


def default_app(service: str) -> str:
    # PAI-EAS reports the service's Kubernetes-style app label: underscores become dashes.
    return service.replace("_", "-")


def parse_service(name: str, spec: Any) -> Service:
    """Build a service from its config entry or admin PUT body.

    Object instances get ``app`` and ``weight`` filled in when missing, unless the spec says
    ``fill_defaults: false``; everything else passes through untouched.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError("service names must be non-empty strings")
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        raise ConfigError(f"service {name!r}: expected an object with 'instances'")
    unknown = set(spec) - _SERVICE_KEYS
    if unknown:
        raise ConfigError(f"service {name!r}: unknown keys {', '.join(sorted(map(str, unknown)))}")
    instances = spec.get("instances")
    instances = [] if instances is None else instances
    if not isinstance(instances, list):
        raise ConfigError(f"service {name!r}: 'instances' must be a list")
    correlative = spec.get("correlative")
    correlative = [] if correlative is None else correlative
    if not isinstance(correlative, list) or not all(isinstance(c, str) for c in correlative):
        raise ConfigError(f"service {name!r}: 'correlative' must be a list of strings")
    fill = spec.get("fill_defaults", True)
    if not isinstance(fill, bool):
        raise ConfigError(f"service {name!r}: 'fill_defaults' must be a boolean")
    try:
        # YAML can yield values JSON cannot carry (dates, sets); refuse them up front.
        json.dumps(instances)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"service {name!r}: instances are not JSON: {exc}") from None
    served = [_with_defaults(name, i) if fill else copy.deepcopy(i) for i in instances]
    return Service(name=name, instances=tuple(served), correlative=tuple(correlative))


def _with_defaults(service: str, instance: Any) -> Any:
    if not isinstance(instance, Mapping):
        return copy.deepcopy(instance)
    filled = {"app": default_app(service), **copy.deepcopy(dict(instance))}
    filled.setdefault("weight", DEFAULT_WEIGHT)
    return filled


def parse_config(data: Any) -> dict[str, Service]:
    """Services from a parsed config document: ``{"services": {name: {"instances": [...]}}}``."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError("the config must be an object with a 'services' key")
    unknown = set(data) - {"services"} - FLAVOUR_KEYS
    if unknown:
        raise ConfigError(f"unknown top-level keys: {', '.join(sorted(map(str, unknown)))}")
    services = data.get("services")
    services = {} if services is None else services
    if not isinstance(services, Mapping):
        raise ConfigError("'services' must map service names to their instances")
    return {str(name): parse_service(str(name), spec) for name, spec in services.items()}


def load_config(path: str | Path) -> dict[str, Service]:
    """Read a YAML or JSON config file (JSON is tried first; YAML covers the rest)."""
    return parse_config(load_document(path))


def load_document(path: str | Path) -> Any:
    """The parsed config file, flavour sections included."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except ValueError:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: neither JSON nor YAML: {exc}") from None
    return data


@dataclass(frozen=True)
class RequestRecord:
    """One discovery request as answered. ``status`` is None when the connection was dropped;
    ``time`` is when the response was handed to the transport (after any delay)."""

    flavour: str
    service: str
    method: str
    path: str
    query: Mapping[str, str]
    time: float
    status: int | None
    fault: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    credential: str | None = None  # who the flavour says called (e.g. "user:alice")

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["query"] = dict(self.query)
        out["headers"] = dict(self.headers)
        return out


class EmulatorState:
    """Services, faults (a FIFO queue: the oldest matching fault applies first, so tests can
    script sequences) and a bounded request log with unbounded per-service counters."""

    def __init__(
        self, services: Iterable[Service] = (), *, log_size: int = DEFAULT_LOG_SIZE
    ) -> None:
        self._lock = threading.Lock()
        self._services = {s.name: s for s in services}
        self._faults: list[Fault] = []
        self._next_fault_id = 1
        self._log: collections.deque[RequestRecord] = collections.deque(maxlen=log_size)
        self._per_service: collections.Counter[str] = collections.Counter()
        self._per_status: collections.Counter[str] = collections.Counter()
        self._per_credential: collections.Counter[str] = collections.Counter()
        self._total = 0
        # Flavour state: the emulated IAM, and each flavour's answer-shape knob.
        self.iam = IamState()
        self._shapes: dict[str, Any] = {}

    def configure(self, data: Any) -> None:
        """Load the flavour sections (``iam``, ``modelarts``) of a config document."""
        if not isinstance(data, Mapping):
            return
        self.iam.configure(data.get("iam"))
        modelarts = data.get("modelarts")
        if isinstance(modelarts, Mapping) and "shape" in modelarts:
            self.set_shape("modelarts", modelarts["shape"])

    def shape(self, flavour: str) -> Any:
        with self._lock:
            return copy.deepcopy(self._shapes.get(flavour))

    def set_shape(self, flavour: str, shape: Any) -> None:
        with self._lock:
            self._shapes[flavour] = copy.deepcopy(shape)

    # Services.

    def services(self) -> dict[str, Service]:
        with self._lock:
            return dict(self._services)

    def service(self, name: str) -> Service | None:
        with self._lock:
            return self._services.get(name)

    def put_service(self, service: Service) -> None:
        with self._lock:
            self._services[service.name] = service

    def delete_service(self, name: str) -> bool:
        with self._lock:
            return self._services.pop(name, None) is not None

    # Faults.

    def add_fault(self, fault: Fault) -> Fault:
        with self._lock:
            fault = dataclasses.replace(fault, id=self._next_fault_id)
            self._next_fault_id += 1
            self._faults.append(fault)
            return fault

    def faults(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def delete_fault(self, fault_id: int) -> bool:
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if f.id != fault_id]
            return len(self._faults) != before

    def clear_faults(self) -> int:
        with self._lock:
            cleared = len(self._faults)
            self._faults.clear()
            return cleared

    def take_fault(self, service: str) -> Fault | None:
        """The fault for a request to ``service`` arriving now, consuming one of its count."""
        with self._lock:
            for index, fault in enumerate(self._faults):
                if fault.matches(service):
                    remaining = fault.consumed()
                    if remaining is None:
                        del self._faults[index]
                    else:
                        self._faults[index] = remaining
                    return fault
            return None

    # Request log.

    def record(self, entry: RequestRecord) -> None:
        with self._lock:
            self._log.append(entry)
            self._per_service[entry.service] += 1
            self._per_status["closed" if entry.status is None else str(entry.status)] += 1
            if entry.credential is not None:
                self._per_credential[entry.credential] += 1
            self._total += 1

    def request_log(self, service: str | None = None) -> list[RequestRecord]:
        with self._lock:
            return [r for r in self._log if service is None or r.service == service]

    def counters(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": self._total,
                "per_service": dict(self._per_service),
                "per_status": dict(self._per_status),
                "per_credential": dict(self._per_credential),
                # How many records fell out of the bounded log.
                "dropped": self._total - len(self._log),
            }

    def reset_requests(self) -> None:
        with self._lock:
            self._log.clear()
            self._per_service.clear()
            self._per_status.clear()
            self._per_credential.clear()
            self._total = 0
