"""`make demo`: the whole path on this machine, no cluster needed.

Starts etcd + kube-apiserver, CoreDNS (kubernetes plugin), the discovery emulator with
three instances and the operator; applies examples/01-pai-eas.yaml; prints what the
cluster holds and what DNS answers; then shows a change and a discovery outage.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from devenv.controlplane import ControlPlane
from devenv.coredns import CoreDNS
from devenv.dnsquery import a_records, srv_records
from devenv.operatorproc import OperatorProcess
from devenv.paths import REPO_ROOT
from directservice.emulator.runner import EmulatorThread

REPO = REPO_ROOT
EXAMPLE = REPO / "examples" / "01-pai-eas.yaml"
INSTANCES = [
    {"ip": "10.0.0.11", "port": 50000, "weight": 100},
    {"ip": "10.0.0.12", "port": 50000, "weight": 100},
    {"ip": "10.0.0.13", "port": 50000, "weight": 100},
]


def say(text: str = "") -> None:
    print(text, flush=True)


def heading(text: str) -> None:
    say(f"\n\033[1m== {text}\033[0m")


def wait_for(what: str, probe: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: timed out waiting for {what}")
        time.sleep(0.25)


class Demo:
    def __init__(self, cp: ControlPlane, dns: CoreDNS, emu: EmulatorThread) -> None:
        self.cp, self.dns, self.emu = cp, dns, emu
        self.doc: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
        self.name = self.doc["metadata"]["name"]
        self.namespace = self.doc["metadata"].get("namespace", "default")
        self.service = self.doc["spec"]["provider"]["paiEas"]["serviceName"]
        self.fqdn = f"{self.name}.{self.namespace}.svc.cluster.local"

    def apply_example(self) -> None:
        self.doc["spec"]["provider"]["paiEas"]["endpoint"] = self.emu.url
        heading(f"kubectl apply -f {EXAMPLE.relative_to(REPO)}  (endpoint → the emulator)")
        say(self.cp.kubectl("apply", "-f", "-", input=json.dumps(self.doc)).stdout.strip())

    def show_cluster(self) -> None:
        heading("kubectl get dsvc,svc,endpointslices -o wide")
        out = self.cp.kubectl("get", "dsvc,svc,endpointslices", "-n", self.namespace, "-o", "wide")
        say(out.stdout.rstrip())

    def answers(self) -> set[str]:
        return a_records(("127.0.0.1", self.dns.port), self.fqdn)

    def show_dns(self) -> None:
        server = ("127.0.0.1", self.dns.port)
        heading(f"DNS answers from CoreDNS at 127.0.0.1:{self.dns.port}")
        say(f"A    {self.fqdn}")
        for ip in sorted(self.answers()):
            say(f"       {ip}")
        srv_name = f"_http._tcp.{self.fqdn}"
        say(f"SRV  {srv_name}")
        for target, port in sorted(srv_records(server, srv_name)):
            say(f"       {target}:{port}")

    def condition(self) -> str:
        obj = json.loads(
            self.cp.kubectl("get", "dsvc", self.name, "-n", self.namespace, "-o", "json").stdout
        )
        for cond in (obj.get("status") or {}).get("conditions") or []:
            if cond["type"] == "DiscoveryHealthy":
                return f"{cond['status']} ({cond['reason']}: {cond['message']})"
        return "unknown"

    def tour(self) -> None:
        heading("The platform scales: the emulator now reports 10.0.0.12, .13 and a new .14")
        self.emu.set_instances(self.service, [*INSTANCES[1:], {"ip": "10.0.0.14", "port": 50000}])
        wait_for("the new answer", lambda: "10.0.0.14" in self.answers())
        self.show_dns()
        heading("Discovery fails (HTTP 500): published endpoints stay, the condition says why")
        self.emu.add_fault("status", service=self.service, status=500)
        wait_for("the condition", lambda: self.condition().startswith("False"))
        say(f"DiscoveryHealthy: {self.condition()}")
        say(f"DNS still answers: {sorted(self.answers())}")
        self.emu.clear_faults()
        wait_for("recovery", lambda: self.condition().startswith("True"), 60)
        say(f"fault cleared → DiscoveryHealthy: {self.condition()}")

    def explain(self, op: OperatorProcess) -> None:
        heading("Try it yourself")
        say(f"export KUBECONFIG={self.cp.kubeconfig}")
        say(f"kubectl get dsvc -A        # ({self.cp.kubectl_path})")
        say(f"dig @127.0.0.1 -p {self.dns.port} {self.fqdn}")
        say(f"dig @127.0.0.1 -p {self.dns.port} SRV _http._tcp.{self.fqdn}")
        admin = f"{self.emu.url}/admin/services/{self.service}"
        body = json.dumps({"instances": [{"ip": "10.0.0.21", "port": 50000}]})
        say(f"curl -X PUT {admin} -d '{body}'")
        say(f'curl -X POST {self.emu.url}/admin/faults -d \'{{"mode": "garbage"}}\'')
        say(f"operator log: {op.log_path}")
        say("Ctrl-C stops everything and removes all temporary files.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__)
    parser.add_argument(
        "--exit-after-print", action="store_true", help="stop after printing the answers"
    )
    parser.add_argument("--no-tour", action="store_true", help="skip the change/outage tour")
    args = parser.parse_args(argv)

    say("Starting etcd + kube-apiserver, CoreDNS, the discovery emulator and the operator ...")
    with contextlib.ExitStack() as stack:
        logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dsvc-demo-")))
        cp = stack.enter_context(ControlPlane())
        dns = stack.enter_context(CoreDNS(cp))
        emu = stack.enter_context(EmulatorThread())
        op = stack.enter_context(OperatorProcess(cp.kubeconfig, logs / "operator.log"))
        demo = Demo(cp, dns, emu)
        emu.set_instances(demo.service, INSTANCES)
        demo.apply_example()
        want = {i["ip"] for i in INSTANCES}
        wait_for("DNS answers", lambda: demo.answers() == want)
        demo.show_cluster()
        demo.show_dns()
        if not args.no_tour:
            demo.tour()
        if args.exit_after_print:
            return 0
        demo.explain(op)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
