"""Helpers for the tests that drive a real API server: the operator's objects, reads, edits
and waits.

Reads go straight to the API server (ControlPlane.request), much faster than a kubectl
process per probe; `apply`, `get_json`, `slices_of` and `events_for` go through the built
kubectl, and edits use kubectl's merge patches. Every DirectService made by `directservice()`
polls every second with 1 s timeouts, so a test sees several polls in a few seconds.

Waits are on counts, never on the clock: `eventually` polls a probe until it holds,
`wait_for_count` until a counted value (emulator requests, a metric) reaches a target, and
`wait_requests` until the emulator has answered a number of further discovery requests for a
service. "Nothing is written during N polls" is then: note the resourceVersions, wait for N
more requests, compare.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import subprocess
import time
import urllib.error
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from devenv.controlplane import ControlPlane
from devenv.coredns import CoreDNS
from devenv.dnsquery import a_records, srv_records
from devenv.operatorproc import OperatorProcess
from directservice.core.model import PublishedSlice, ServiceShape
from directservice.emulator.runner import EmulatorThread
from directservice.publish.render import read_endpoint_slice, read_service_shape

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "directservice-operator"
RELEASE = "directservice-operator"
DSVC_API = "/apis/directservice.io/v1alpha1"
HEALTHY = "DiscoveryHealthy"
FAST = {"pollInterval": "1s", "timeouts": {"connect": "1s", "read": "1s"}}
PROJECT = "0123456789abcdef0123456789abcdef"  # the ModelArts project id the e2e tests use


# -- waiting ------------------------------------------------------------------------------


def eventually(what: str, probe: Callable[[], T | None], timeout: float, step: float = 0.2) -> T:
    """Poll until `probe()` returns something truthy; fail naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def wait_for_count(
    what: str, probe: Callable[[], float], at_least: float, timeout: float, step: float = 0.1
) -> float:
    """Wait until the counted value `probe()` (emulator requests, a metric) reaches
    `at_least`; returns the value reached. Fails naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value >= at_least:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}: "
                f"{value:g} of the {at_least:g} counted"
            )
        time.sleep(step)


def emulator_requests(emulator: EmulatorThread, service: str) -> int:
    """How many discovery requests the emulator has answered for `service` so far.

    The emulator's per-service counter: unbounded (unlike its request log) and never reset
    by the e2e tests, so it only grows."""
    return int(emulator.requests(service)["total"])


def wait_requests(emulator: EmulatorThread, service: str, more: int, timeout: float = 30.0) -> int:
    """Wait until the emulator has answered `more` requests for `service` beyond those it
    had answered when called; returns the count reached.

    A poll loop writes the result of one poll before it sends the next, so once request
    k + 1 arrived, whatever poll k was going to write has been written."""
    start = emulator_requests(emulator, service)
    reached = wait_for_count(
        f"{more} more discovery requests for {service}",
        lambda: emulator_requests(emulator, service),
        start + more,
        timeout,
    )
    return int(reached)


def clear_faults_of(emulator: EmulatorThread, service: str) -> None:
    """Drop the queued faults aimed at `service` only (other tests' faults stay)."""
    for fault in emulator.faults():
        if fault.get("service") == service:
            emulator.state.delete_fault(int(fault["id"]))


# -- objects ------------------------------------------------------------------------------


def example(name: str) -> dict[str, Any]:
    """A file of examples/, parsed."""
    loaded: dict[str, Any] = yaml.safe_load((REPO / "examples" / name).read_text())
    return loaded


def example_dsvc(
    emulator_url: str,
    namespace: str,
    *,
    name: str | None = None,
    poll: str = "1s",
    read_timeout: str = "1s",
) -> tuple[dict[str, Any], str]:
    """examples/01-pai-eas.yaml pointed at the emulator, with an EAS service of its own:
    (the DirectService, the EAS service name). `name` renames the DirectService."""
    obj = example("01-pai-eas.yaml")
    eas = f"example_model_{secrets.token_hex(4)}"
    obj["metadata"]["namespace"] = namespace
    if name is not None:
        obj["metadata"]["name"] = name
    obj["spec"]["provider"]["paiEas"]["endpoint"] = emulator_url
    obj["spec"]["provider"]["paiEas"]["serviceName"] = eas
    obj["spec"]["pollInterval"] = poll
    obj["spec"]["timeouts"] = {"connect": "1s", "read": read_timeout}
    return obj, eas


def publish_example(
    cp: ControlPlane,
    dns: CoreDNS,
    emulator: EmulatorThread,
    namespace: str,
    ips: set[str],
    *,
    name: str,
    timeout: float = 20.0,
) -> tuple[str, str]:
    """The example DirectService, serving `ips` on port 50000, applied and answered by
    CoreDNS (A and SRV) with status 3/3 ready: returns (its EAS service, its FQDN)."""
    dsvc, eas = example_dsvc(emulator.url, namespace, name=name)
    emulator.set_instances(eas, [{"ip": ip, "port": 50000, "weight": 100} for ip in sorted(ips)])
    apply(cp, dsvc)
    fqdn = f"{name}.{namespace}.svc.cluster.local"
    eventually("A records", lambda: a_records(dns.address, fqdn) == ips, timeout)
    assert srv_records(dns.address, f"_http._tcp.{fqdn}") == {(ip, 50000) for ip in ips}
    status = wait_health(cp, namespace, name, "True", timeout=timeout)["status"]
    assert (status["readyEndpoints"], status["totalEndpoints"]) == (len(ips), len(ips))
    return eas, fqdn


def render_chart(
    helm: Path, home: Path, values: dict[str, Any], namespace: str
) -> list[dict[str, Any]]:
    """`helm template` of the chart with `values`, helm's own state kept under `home`."""
    values_path = home / "values.yaml"
    values_path.write_text(yaml.safe_dump(values))
    env = {f"HELM_{kind}_HOME": str(home / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")}
    argv = [str(helm), "template", RELEASE, str(CHART), "--namespace", namespace]
    argv += ["--values", str(values_path)]
    out = subprocess.run(argv, capture_output=True, text=True, env=env, check=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def directservice(
    namespace: str, name: str, provider: Mapping[str, Any], **spec: Any
) -> dict[str, Any]:
    """A DirectService polling every second; `spec` adds or overrides spec fields."""
    return {
        "apiVersion": "directservice.io/v1alpha1",
        "kind": "DirectService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"provider": dict(provider), "port": {"name": "http"}, **FAST, **spec},
    }


def pai_eas(endpoint: str, service: str) -> dict[str, Any]:
    return {"paiEas": {"endpoint": endpoint, "serviceName": service}}


def model_arts(
    emulator: EmulatorThread, service_id: str, secret_name: str, *, token_key: str | None = None
) -> dict[str, Any]:
    """A modelArts provider on the emulator, credentials from Secret `secret_name`: an IAM
    password login (username, password, domainName), or with `token_key` a ready token."""
    ref: dict[str, str] = {"name": secret_name}
    provider: dict[str, Any] = {
        "endpoint": emulator.url,
        "projectId": PROJECT,
        "serviceId": service_id,
        "credentialsSecretRef": ref,
    }
    if token_key is not None:
        ref["tokenKey"] = token_key
    else:
        provider["iamEndpoint"] = emulator.iam_url
    return {"modelArts": provider}


def iam_user(
    emulator: EmulatorThread, prefix: str, projects: Sequence[Mapping[str, str]] = ()
) -> tuple[str, str]:
    """A new user of the emulator's IAM, in domain "acme": (name, password)."""
    user, password = f"{prefix}-{secrets.token_hex(4)}", "pw-" + secrets.token_hex(12)
    emulator.put_iam_user(user, password, "acme", projects)
    return user, password


def secret(namespace: str, name: str, data: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "stringData": dict(data),
    }


# -- writes -------------------------------------------------------------------------------


def create(cp: ControlPlane, obj: Mapping[str, Any]) -> None:
    """POST a DirectService or a Secret (the kinds these tests make)."""
    ns = obj["metadata"]["namespace"]
    if obj["kind"] == "Secret":
        cp.request("POST", f"/api/v1/namespaces/{ns}/secrets", obj)
    else:
        cp.request("POST", f"{DSVC_API}/namespaces/{ns}/directservices", obj)


def apply(cp: ControlPlane, obj: dict[str, Any]) -> None:
    """`kubectl apply` of one object."""
    cp.kubectl("apply", "-f", "-", input=json.dumps(obj))


def patch(cp: ControlPlane, kind: str, namespace: str, name: str, body: Any) -> None:
    cp.kubectl("patch", kind, name, "-n", namespace, "--type", "merge", "-p", json.dumps(body))


# -- reads --------------------------------------------------------------------------------


def get_json(cp: ControlPlane, *args: str) -> Any:
    """`kubectl get ARGS -o json`, parsed."""
    return json.loads(cp.kubectl("get", *args, "-o", "json").stdout)


def get_dsvc(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = cp.request(
        "GET", f"{DSVC_API}/namespaces/{namespace}/directservices/{name}"
    )
    return result


def all_dsvcs(cp: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cp.request(
        "GET", f"{DSVC_API}/namespaces/{namespace}/directservices"
    )["items"]
    return items


def service(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        result: dict[str, Any] = cp.request(
            "GET", f"/api/v1/namespaces/{namespace}/services/{name}"
        )
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return None
        raise
    return result


def slices(cp: ControlPlane, namespace: str, name: str) -> list[dict[str, Any]]:
    """The EndpointSlices of Service `name`, full objects, sorted by name."""
    selector = urllib.parse.quote(f"kubernetes.io/service-name={name}")
    items: list[dict[str, Any]] = cp.request(
        "GET",
        f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices?labelSelector={selector}",
    )["items"]
    return sorted(items, key=lambda s: s["metadata"]["name"])


def slices_of(cp: ControlPlane, namespace: str, service: str) -> list[dict[str, Any]]:
    """The same as `slices`, read through kubectl."""
    items = get_json(
        cp, "endpointslices", "-n", namespace, "-l", f"kubernetes.io/service-name={service}"
    )["items"]
    return sorted(items, key=lambda s: s["metadata"]["name"])


def resource_versions(cp: ControlPlane, namespace: str) -> dict[str, str]:
    """resourceVersion of every DirectService, Service, EndpointSlice and Event in
    `namespace`, by kind/name: any write there changes this."""
    objs = get_json(cp, "dsvc,service,endpointslices,events", "-n", namespace)
    return {
        f"{o['kind']}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
        for o in objs["items"]
    }


def events(cp: ControlPlane, namespace: str, name: str | None = None) -> list[dict[str, Any]]:
    """Events in `namespace` (about DirectService `name` only, when given)."""
    query = ""
    if name is not None:
        query = "?fieldSelector=" + urllib.parse.quote(f"involvedObject.name={name}")
    items: list[dict[str, Any]] = cp.request(
        "GET", f"/api/v1/namespaces/{namespace}/events{query}"
    )["items"]
    return items


def events_for(cp: ControlPlane, namespace: str, name: str) -> list[dict[str, Any]]:
    """The same as `events(cp, namespace, name)`, read through kubectl."""
    items: list[dict[str, Any]] = get_json(
        cp, "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}"
    )["items"]
    return items


def events_with(
    cp: ControlPlane, namespace: str, name: str, reason: str, kind: str | None = None
) -> list[dict[str, Any]]:
    return [
        e
        for e in events(cp, namespace, name)
        if e["reason"] == reason and (kind is None or e["type"] == kind)
    ]


# -- status -------------------------------------------------------------------------------


def condition(dsvc: dict[str, Any], kind: str) -> dict[str, Any]:
    """The condition of type `kind` in a DirectService's status ({} if absent)."""
    for cond in (dsvc.get("status") or {}).get("conditions") or []:
        if cond["type"] == kind:
            return dict(cond)
    return {}


def health(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    return condition(get_dsvc(cp, namespace, name), HEALTHY)


def wait_health(
    cp: ControlPlane,
    namespace: str,
    name: str,
    status: str,
    reason: str | None = None,
    timeout: float = 20.0,
) -> dict[str, Any]:
    """The DirectService once DiscoveryHealthy has `status` (and `reason`, if given)."""

    def probe() -> dict[str, Any] | None:
        dsvc = get_dsvc(cp, namespace, name)
        cond = condition(dsvc, HEALTHY)
        ok = cond.get("status") == status and (reason is None or cond.get("reason") == reason)
        return dsvc if ok else None

    what = f"{namespace}/{name} {HEALTHY}={status}" + (f" ({reason})" if reason else "")
    return eventually(what, probe, timeout)


# -- what is published --------------------------------------------------------------------


def wait_published(
    cp: ControlPlane, namespace: str, name: str, want: set[tuple[str, int]], timeout: float = 20.0
) -> list[dict[str, Any]]:
    """The slices once they hold exactly the (ip, port) endpoints in `want`."""

    def probe() -> list[dict[str, Any]] | None:
        current = slices(cp, namespace, name)
        return current if addresses(current) == want else None

    return eventually(f"{namespace}/{name} publishing {sorted(want)}", probe, timeout)


def addresses(slice_list: list[dict[str, Any]]) -> set[tuple[str, int]]:
    """(ip, port) of every endpoint in the slices that discovery still lists: draining
    (terminating) endpoints, on their way out for spec.drainSeconds, are left out."""
    return {
        (address, s["ports"][0]["port"])
        for s in slice_list
        for endpoint in s.get("endpoints") or []
        if not (endpoint.get("conditions") or {}).get("terminating")
        for address in endpoint["addresses"]
    }


def endpoint_details(slice_list: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per address: port, appProtocol, ready and hostname, as published."""
    out: dict[str, dict[str, Any]] = {}
    for s in slice_list:
        port = s["ports"][0]
        for endpoint in s.get("endpoints") or []:
            for address in endpoint["addresses"]:
                out[address] = {
                    "port": port["port"],
                    "appProtocol": port.get("appProtocol"),
                    "ready": endpoint["conditions"]["ready"],
                    "hostname": endpoint.get("hostname"),
                }
    return out


# -- repository files ---------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), line continuations joined and comments
    dropped."""
    text = (REPO / "Dockerfile").read_text()
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in logical]


# -- the operator -------------------------------------------------------------------------


@contextlib.contextmanager
def running(proc: OperatorProcess, tail: int = 80) -> Iterator[OperatorProcess]:
    """`proc` started; on the way out the tail of its log is printed (pytest shows it for
    a failing test) and it is stopped."""
    proc.start()
    try:
        yield proc
    finally:
        print(proc.tail(tail))
        proc.stop()


class WatchView:
    """A publisher's ClusterView holding exactly what the test says the watches delivered;
    `deliver` catches up with the API server, as the label-selected watches eventually do."""

    def __init__(self) -> None:
        self.slice_list: list[PublishedSlice] = []
        self.service_shape: ServiceShape | None = None

    def slices(self, namespace: str, name: str) -> list[PublishedSlice]:
        return list(self.slice_list)

    def service(self, namespace: str, name: str) -> ServiceShape | None:
        return self.service_shape

    def deliver(self, cp: ControlPlane, namespace: str, name: str) -> None:
        self.slice_list = [read_endpoint_slice(s) for s in slices(cp, namespace, name)]
        found = service(cp, namespace, name)
        self.service_shape = read_service_shape(found) if found else None


# -- metrics ------------------------------------------------------------------------------


def discovery_count(operator: OperatorProcess, provider: str, result: str) -> float:
    """directservice_discovery_requests_total{provider, result} as the operator exports it."""
    pattern = (
        rf'^directservice_discovery_requests_total\{{provider="{re.escape(provider)}",'
        rf'result="{re.escape(result)}"\}} (\S+)$'
    )
    match = re.search(pattern, operator.metrics_text(), re.MULTILINE)
    return float(match.group(1)) if match else 0.0
