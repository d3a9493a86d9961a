"""The operator image, run as the chart runs it: a container with the rendered Deployment's
settings, an in-cluster ServiceAccount token, against a control plane of this module's own.

`devenv.image.ensure()` builds the image (or reuses it, keyed by the hash of the Dockerfile,
the lock files and operator/), apt-installing podman and friends when missing. The chart is
rendered with the built helm; its RBAC and ServiceAccount are applied; a token is minted for
that ServiceAccount (TokenRequest). Then podman starts the image on the host network with
what the Deployment says, translated flag by flag (see `_run_argv`): command and args, env,
uid/gid, read-only root, dropped capabilities, no privilege escalation, seccomp
RuntimeDefault (podman's default profile), the chart's volumes as tmpfs, resource limits and
the grace period. The ServiceAccount token, CA and namespace are mounted where a kubelet
mounts them, and KUBERNETES_SERVICE_HOST/PORT point at the API server, so the operator's
load_incluster_config() (and kopf's login) runs for real, with nothing but the chart's RBAC.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from devenv import image as devimage
from devenv.controlplane import ControlPlane
from devenv.coredns import CoreDNS
from devenv.dnsquery import a_records
from devenv.procs import free_port
from devenv.tools import Tools
from directservice.emulator.runner import EmulatorThread
from support import (
    apply,
    eventually,
    example_dsvc,
    get_json,
    publish_example,
    render_chart,
    slices_of,
    wait_requests,
)

pytestmark = pytest.mark.e2e

NAMESPACE = "directservice-system"  # own_cluster creates it: the release namespace
WORKLOADS = "default"
POD_NAME = "directservice-operator-5d8f7c9b4-img01"  # what the kubelet would call the pod
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
RUNTIME_DEFAULT_SECCOMP = Path("/usr/share/containers/seccomp.json")  # podman's default
_names = itertools.count()


# -- the chart, rendered ------------------------------------------------------------------


def _quantity_bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 10**3, "M": 10**6, "G": 10**9}
    match = re.fullmatch(r"(\d+)([A-Za-z]*)", quantity)
    assert match, quantity
    return int(match.group(1)) * units.get(match.group(2), 1)


def _cpus(quantity: str) -> str:
    return str(int(quantity[:-1]) / 1000) if quantity.endswith("m") else quantity


def _env(container: dict[str, Any]) -> dict[str, str]:
    """The container's env as the kubelet resolves it for pod POD_NAME."""
    fields = {"metadata.name": POD_NAME, "metadata.namespace": NAMESPACE}
    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            path = var["valueFrom"]["fieldRef"]["fieldPath"]
            assert path in fields, f"env {var['name']}: no stand-in for {path}"
            env[var["name"]] = fields[path]
    return env


@dataclass
class Container:
    name: str
    pod: dict[str, Any]  # the Deployment's pod spec
    spec: dict[str, Any]  # its operator container
    argv: list[str]
    api_port: int
    log_path: Path
    stop_seconds: float = field(default=0.0)

    def port(self, name_or_number: str | int) -> int:
        if isinstance(name_or_number, int):
            return name_or_number
        ports = {p["name"]: p["containerPort"] for p in self.spec["ports"]}
        return int(ports[name_or_number])

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return devimage.podman(*args, check=check)

    def inspect(self) -> dict[str, Any]:
        return dict(json.loads(self.podman("container", "inspect", self.name).stdout)[0])

    def logs(self) -> str:
        result = self.podman("logs", self.name, check=False)
        return result.stdout + result.stderr

    def exec(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return self.podman("exec", self.name, *argv, check=False)

    def probe(self, probe: dict[str, Any]) -> bool:
        """One try of an httpGet probe, as the kubelet makes it (any 2xx/3xx passes)."""
        get = probe["httpGet"]
        url = f"http://127.0.0.1:{self.port(get['port'])}{get['path']}"
        try:
            with urllib.request.urlopen(url, timeout=probe.get("timeoutSeconds", 1)) as resp:
                return 200 <= resp.status < 400
        except OSError:
            return False


def _run_argv(
    name: str, ref: str, pod: dict[str, Any], container: dict[str, Any], sa_dir: Path, api: int
) -> list[str]:
    """`podman run` for the chart's pod spec; anything it cannot translate fails the test."""
    sc = {**pod.get("securityContext", {}), **container["securityContext"]}
    uid, gid = sc["runAsUser"], sc["runAsGroup"]
    assert sc["runAsNonRoot"] and uid != 0
    argv = ["run", "--detach", "--name", name, "--pull=never", "--network=host"]
    argv += list(devimage.ULIMITS)
    argv += [f"--user={uid}:{gid}", f"--stop-timeout={pod['terminationGracePeriodSeconds']}"]
    if sc["readOnlyRootFilesystem"]:
        # Podman's --read-only would add writable tmpfs on /run, /tmp and /var/tmp: not here.
        argv += ["--read-only", "--read-only-tmpfs=false"]
    argv += [f"--cap-drop={cap}" for cap in sc["capabilities"].get("drop", [])]
    argv += [f"--cap-add={cap}" for cap in sc["capabilities"].get("add", [])]
    if sc.get("allowPrivilegeEscalation") is False:
        argv.append("--security-opt=no-new-privileges")
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    argv.append(f"--security-opt=seccomp={RUNTIME_DEFAULT_SECCOMP}")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        assert set(volume) == {"name", "emptyDir"}, f"no stand-in for volume {volume}"
        size = _quantity_bytes(volume["emptyDir"].get("sizeLimit", "64Mi"))
        argv.append(
            f"--mount=type=tmpfs,destination={mount['mountPath']},tmpfs-size={size},tmpfs-mode=1777"
        )
    limits = container.get("resources", {}).get("limits", {})
    if "memory" in limits:
        argv.append(f"--memory={_quantity_bytes(limits['memory'])}")
    if "cpu" in limits:
        argv.append(f"--cpus={_cpus(limits['cpu'])}")
    if pod.get("automountServiceAccountToken", True):
        argv.append(f"--volume={sa_dir}:{SA_DIR}:ro")
        env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(api)}
    env.update(_env(container))
    argv += [f"--env={key}={value}" for key, value in env.items()]
    argv += [f"--entrypoint={json.dumps(container['command'])}", ref, *container["args"]]
    return argv


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image() -> devimage.Image:
    return devimage.ensure()


@pytest.fixture(scope="module")
def rendered(tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    values = {
        # Host network: free ports instead of 8080/9090, rendered into args and probes.
        "healthPort": free_port(),
        "metrics": {"port": free_port()},
        "allowedDiscoveryHosts": ["127.0.0.1"],  # the emulator
        "allowedDiscoveryCIDRs": ["127.0.0.0/8"],  # ... which listens on loopback
    }
    return render_chart(tools.helm, tmp_path_factory.mktemp("image-chart"), values, NAMESPACE)


def _deployment(rendered: list[dict[str, Any]]) -> dict[str, Any]:
    return next(d for d in rendered if d["kind"] == "Deployment")


def _serving_cert_names(cp: ControlPlane) -> str:
    assert cp.workdir is not None
    cert = cp.workdir / "certs" / "apiserver.crt"
    argv = ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(cert)]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def container(
    image: devimage.Image,
    own_cluster: ControlPlane,
    rendered: list[dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Container]:
    cp = own_cluster
    body = "\n---\n".join(yaml.safe_dump(doc) for doc in rendered)
    cp.kubectl("apply", "--server-side", "-f", "-", input=body)
    deployment = _deployment(rendered)
    pod = deployment["spec"]["template"]["spec"]
    spec = next(c for c in pod["containers"] if c["name"] == "operator")
    # The client checks the serving certificate against KUBERNETES_SERVICE_HOST.
    assert "IP Address:127.0.0.1" in _serving_cert_names(cp)

    # What the kubelet projects into the pod: a bound token, the cluster CA, the namespace.
    sa_dir = tmp_path_factory.mktemp("serviceaccount")
    sa_dir.chmod(0o755)
    token = cp.kubectl(
        "create", "token", pod["serviceAccountName"], "-n", NAMESPACE, "--duration=1h"
    ).stdout.strip()
    (sa_dir / "token").write_text(token)
    (sa_dir / "ca.crt").write_bytes(cp.ca_file.read_bytes())
    (sa_dir / "namespace").write_text(NAMESPACE)
    for path in sa_dir.iterdir():
        path.chmod(0o644)

    api_port = int(cp.server.rsplit(":", 1)[1])
    name = f"directservice-e2e-{secrets.token_hex(4)}"
    argv = _run_argv(name, image.ref, pod, spec, sa_dir, api_port)
    log_path = sa_dir.parent / f"{name}.log"
    ctr = Container(name, pod, spec, argv, api_port, log_path)
    ctr.podman(*argv)
    try:
        yield ctr
    finally:
        log_path.write_text(ctr.logs())
        print(ctr.logs()[-8000:])
        ctr.podman("rm", "--force", "--time=0", name, check=False)


@pytest.fixture(scope="module")
def dns(own_cluster: ControlPlane, tools: Tools) -> Iterator[CoreDNS]:
    with CoreDNS(own_cluster, binary=tools.coredns) as server:
        yield server


@pytest.fixture(scope="module")
def started(container: Container) -> Container:
    """The container once the chart's startupProbe passed, as the kubelet would wait for it
    (failureThreshold tries, periodSeconds apart)."""
    startup = container.spec["startupProbe"]
    deadline = startup["periodSeconds"] * startup["failureThreshold"]
    eventually("the startupProbe", lambda: container.probe(startup), deadline, step=0.2)
    return container


# -- what the container is ----------------------------------------------------------------


def _status(ctr: Container) -> dict[str, str]:
    text = ctr.exec("cat", "/proc/1/status").stdout
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def test_the_container_runs_with_the_charts_security_context(started: Container) -> None:
    status = _status(started)
    assert status["Uid"].split()[:2] == ["65532", "65532"]
    assert status["Gid"].split()[:2] == ["65532", "65532"]
    for caps in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[caps].strip(), 16) == 0, caps  # every capability dropped
    assert status["NoNewPrivs"].strip() == "1"  # allowPrivilegeEscalation: false
    assert status["Seccomp"].strip() == "2"  # a filter: RuntimeDefault
    config = started.inspect()
    assert config["HostConfig"]["ReadonlyRootfs"] is True
    # The root is read-only; only the chart's volumes (/tmp) are writable.
    refused = started.exec("touch", "/probe-write")
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr
    for path in ("/opt/directservice/probe-write", "/run/probe-write", "/var/tmp/probe-write"):
        assert started.exec("touch", path).returncode != 0, path
    assert started.exec("touch", "/tmp/probe-write").returncode == 0
    assert started.exec("rm", "/tmp/probe-write").returncode == 0


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def test_the_image_holds_only_the_operator(image: devimage.Image, started: Container) -> None:
    for python in ("python3", "/opt/directservice/bin/python"):
        for module in ("pip", "setuptools", "devenv", "bench", "hatchling"):
            found = started.exec(python, "-c", f"import {module}")
            assert found.returncode != 0, f"{python} imports {module}"
    shell = "command -v gcc cc c++ make pip pip3 apt-get || true"
    assert started.exec("sh", "-c", shell).stdout == ""
    for path in ("/src", "/usr/share/python-wheels", "/tmp/wheels", "/root/.cache"):
        assert started.exec("test", "-e", path).returncode != 0, path
    version = started.exec("directservice", "--version")
    assert version.returncode == 0 or "usage" in (version.stdout + version.stderr)
    # The SBOM: in the image, and beside the archive; every Debian package and Python
    # distribution with its version.
    sbom = started.exec("cat", "/usr/share/doc/directservice-operator/sbom.txt").stdout
    assert sbom == image.sbom.read_text()
    rows = [line.split() for line in sbom.splitlines() if not line.startswith("#")]
    python = {_normalized(row[1]): row[2] for row in rows if row[0] == "python"}
    debian = {row[1]: row[2] for row in rows if row[0] == "deb"}
    locked = dict(re.findall(r"^([a-z0-9-]+)==(\S+)", devimage.LOCK.read_text(), re.MULTILINE))
    assert {k: python.get(k) for k in locked} == locked
    assert python["directservice-operator"] == "0.1.0"
    assert "pip" not in python and "setuptools" not in python
    assert "python3.11" in debian and "python3-venv" not in debian
    assert image.archive.stat().st_size > 0


def test_the_charts_probes_pass(started: Container) -> None:
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert started.probe(started.spec[kind]), kind
    metrics = started.port("metrics")
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as resp:
        assert b"directservice_" in resp.read()


# -- the skeleton scenario, from the container --------------------------------------------


def test_the_skeleton_scenario_passes_from_the_container(
    started: Container, own_cluster: ControlPlane, dns: CoreDNS, emulator: EmulatorThread
) -> None:
    cp = own_cluster
    name = f"mnist-image-{next(_names)}"
    ips = {"10.60.0.1", "10.60.0.2", "10.60.0.3"}
    eas, fqdn = publish_example(cp, dns, emulator, WORKLOADS, ips, name=name, timeout=30)
    service = get_json(cp, "service", name, "-n", WORKLOADS)
    assert service["spec"]["clusterIP"] == "None" and "selector" not in service["spec"]

    changed = {"10.60.0.1", "10.60.0.9"}
    emulator.set_instances(eas, [{"ip": ip, "port": 50000, "weight": 100} for ip in changed])
    eventually("changed A records", lambda: a_records(dns.address, fqdn) == changed, 20)

    cp.kubectl("delete", "dsvc", name, "-n", WORKLOADS, "--wait=true", "--timeout=30s")
    assert slices_of(cp, WORKLOADS, name) == []
    gone = cp.kubectl("get", "service", name, "-n", WORKLOADS, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr

    # Every call went out with the ServiceAccount's token (the container has no other
    # credentials) and was allowed by the chart's RBAC.
    logs = started.logs()
    assert not re.search(r"\b403\b|[Ff]orbidden|Not enough permissions", logs), logs[-4000:]
    assert started.exec("sh", "-c", 'test -z "$KUBECONFIG" && ! test -e ~/.kube').returncode == 0


def test_nothing_was_written_outside_the_writable_mounts(
    started: Container, emulator: EmulatorThread, own_cluster: ControlPlane
) -> None:
    # A DirectService at work for a few polls, then the container's own layer is compared.
    dsvc, eas = example_dsvc(emulator.url, WORKLOADS, name=f"mnist-image-{next(_names)}")
    emulator.set_instances(eas, [{"ip": "10.61.0.1", "port": 7000, "weight": 100}])
    apply(own_cluster, dsvc)
    wait_requests(emulator, eas, 3)
    changes = started.podman("diff", "--format=json", started.name).stdout.strip()
    changed = json.loads(changes or "{}")
    # Only what podman itself set up before the process started: the mount points of the
    # chart's volumes and the token, and /etc (the bind-mounted /etc/hosts, /etc/hostname
    # and /etc/resolv.conf, as a kubelet mounts them too).
    mounts = [m["mountPath"] for m in started.spec["volumeMounts"]]
    mounts += [SA_DIR, SA_DIR.replace("/var/run/", "/run/", 1)]  # /var/run -> /run

    def made_for_a_mount(path: str) -> bool:
        return any(m == path or m.startswith(path + "/") for m in mounts)

    added = [p for p in changed.get("added") or [] if not made_for_a_mount(p)]
    assert added == []
    assert set(changed.get("changed") or []) <= {"/etc", "/run", "/var", "/var/run"}
    assert (changed.get("deleted") or []) == []


def test_sigterm_stops_the_container_within_the_grace_period(started: Container) -> None:
    grace = started.pod["terminationGracePeriodSeconds"]
    began = time.monotonic()
    started.podman("stop", f"--time={grace}", started.name)
    elapsed = time.monotonic() - began
    state = started.inspect()["State"]
    assert state["Status"] == "exited"
    assert elapsed < grace, f"took {elapsed:.1f}s of {grace}s: killed, not stopped"
    assert state["ExitCode"] != 137, "SIGKILLed after the grace period"
    assert state["ExitCode"] == 0, started.logs()[-4000:]
