"""A real, throwaway Kubernetes control plane on loopback: etcd plus kube-apiserver.

There is no controller-manager, scheduler or kubelet: objects are stored and served, nothing
reconciles them (no pods run, namespaces never finish terminating, no token controller).
Everything lives in one temp dir that teardown removes, together with the processes.

    with ControlPlane() as cp:
        core = kubernetes.client.CoreV1Api(cp.api_client())
        cp.kubectl("get", "namespaces")
"""

from __future__ import annotations

import atexit
import json
import secrets
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Self

import yaml
from kubernetes.client import ApiClient, Configuration

from devenv.housekeeping import apply_crds
from devenv.paths import REPO_ROOT
from devenv.procs import Lifecycle, ManagedProcess, free_port, wait_until
from devenv.tools import Tools, resolve
from directservice.publish.apiclient import ApiEndpoint

CONTEXT = "directservice-local"
DEFAULT_CRD_DIR = REPO_ROOT / "manifests" / "crds"
SERVICE_CIDR = "10.96.0.0/16"
ADMIN_USER = "directservice-admin"


class ControlPlane(Lifecycle):
    """etcd + kube-apiserver on free 127.0.0.1 ports, with an admin token and a kubeconfig."""

    def __init__(
        self,
        tools: Tools | None = None,
        *,
        crd_dir: Path | None = DEFAULT_CRD_DIR,
        timeout: float = 60.0,
    ) -> None:
        self._tools = tools
        self._crd_dir = crd_dir
        self._timeout = timeout
        self._procs: list[ManagedProcess] = []
        self.workdir: Path | None = None
        self.server = ""
        self.admin_token = secrets.token_urlsafe(32)
        self.startup_seconds = 0.0
        self._ssl: ssl.SSLContext | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Self:
        if self.workdir is not None:
            raise RuntimeError("control plane already started")
        started = time.monotonic()
        tools = self._tools or resolve()
        self._tools = tools
        self.workdir = Path(tempfile.mkdtemp(prefix="directservice-cp-"))
        atexit.register(self.stop)  # covers callers that exit without reaching stop()
        with self._stopped_on_failure():
            self._start_processes(tools, self.workdir)
            self._wait_ready()
            self._write_kubeconfig()
            if self._crd_dir is not None:
                self.apply_crds(self._crd_dir)
        self.startup_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        """Stop the API server, then etcd; reap both and delete the temp dir. Idempotent."""
        for proc in reversed(self._procs):
            proc.stop()
        self._procs.clear()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        atexit.unregister(self.stop)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def _path(self, name: str) -> Path:
        if self.workdir is None:
            raise RuntimeError("control plane is not running")
        return self.workdir / name

    @property
    def kubeconfig(self) -> Path:
        return self._path("kubeconfig")

    @property
    def kubectl_path(self) -> Path:
        if self._tools is None:
            raise RuntimeError("control plane is not running")
        return self._tools.kubectl

    @property
    def ca_file(self) -> Path:
        """The CA that signed the API server's self-generated serving certificate."""
        return self._path("ca.crt")

    # -- startup -------------------------------------------------------------------------

    def _start_processes(self, tools: Tools, work: Path) -> None:
        client, peer, secure = free_port(), free_port(), free_port()
        etcd_url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        etcd_argv = [
            str(tools.etcd),
            f"--data-dir={work / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=default={peer_url}",
            "--unsafe-no-fsync",  # throwaway data: durability only costs time
        ]
        self._procs.append(ManagedProcess("etcd", etcd_argv, work / "etcd.log", cwd=work))

        # The static token file is the simplest authenticator; system:masters bypasses RBAC.
        (work / "tokens.csv").write_text(
            f'{self.admin_token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n'
        )
        # Service-account tokens (TokenRequest, `kubectl create token`) need a signing key.
        subprocess.run(
            ["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "sa.key"],
            cwd=work,
            check=True,
            capture_output=True,
        )
        self.server = f"https://127.0.0.1:{secure}"
        apiserver_argv = [
            str(tools.kube_apiserver),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={secure}",
            f"--cert-dir={work / 'certs'}",  # it generates a CA and a serving cert there
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=RBAC",
            f"--token-auth-file={work / 'tokens.csv'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={work / 'sa.key'}",
            f"--service-account-signing-key-file={work / 'sa.key'}",
        ]
        self._procs.append(
            ManagedProcess("kube-apiserver", apiserver_argv, work / "kube-apiserver.log", cwd=work)
        )

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver alone (etcd keeps running), as an outage would."""
        self._stop_one("kube-apiserver")

    def start_apiserver(self) -> None:
        """Start kube-apiserver again with the same flags, port and certificates; wait for
        /readyz."""
        self._start_again("kube-apiserver")

    def stop_etcd(self) -> None:
        """Stop etcd alone: kube-apiserver keeps running and answers with errors (or not at
        all, until its own timeouts), as a storage outage would."""
        self._stop_one("etcd")

    def start_etcd(self) -> None:
        """Start etcd again on the same data, ports and flags; wait for the API server's
        /readyz (which checks etcd)."""
        self._start_again("etcd")

    def _stop_one(self, name: str) -> None:
        proc = next((p for p in self._procs if p.name == name), None)
        if proc is None or not proc.alive():
            raise RuntimeError(f"{name} is not running")
        proc.stop()

    def _start_again(self, name: str) -> None:
        index = next(i for i, p in enumerate(self._procs) if p.name == name)
        old = self._procs[index]
        self._procs[index] = ManagedProcess(name, old.argv, old.log_path, cwd=self._path("."))
        try:
            wait_until("/readyz", lambda: self._alive() and self._readyz(), self._timeout)
        except (TimeoutError, RuntimeError) as err:
            raise self._failure(str(err)) from err

    def _failure(self, what: str) -> RuntimeError:
        tails = "\n".join(p.tail() for p in self._procs)
        return RuntimeError(f"control plane failed: {what}\n{tails}")

    def _wait_ready(self) -> None:
        certs = self._path("certs")
        try:
            wait_until(
                "the API server's serving certificate",
                lambda: self._alive() and (certs / "apiserver.key").exists(),
                self._timeout,
            )
            self._write_ca(certs / "apiserver.crt")
            self._ssl = ssl.create_default_context(cafile=str(self.ca_file))
            wait_until("/readyz", lambda: self._alive() and self._readyz(), self._timeout)
        except (TimeoutError, RuntimeError) as err:
            raise self._failure(str(err)) from err

    def _alive(self) -> bool:
        for proc in self._procs:
            proc.check_alive()
        return True

    def _write_ca(self, bundle: Path) -> None:
        # The bundle is "serving cert, then its CA"; trusting only the CA keeps verification
        # real (hostname and chain are both checked) instead of skipping it.
        marker = "-----BEGIN CERTIFICATE-----"
        blocks = [marker + b for b in bundle.read_text().split(marker)[1:]]
        self.ca_file.write_text("".join(blocks[1:] or blocks))

    def _readyz(self) -> bool:
        try:
            self.request("GET", "/readyz", timeout=2)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False
        return True

    def _write_kubeconfig(self) -> None:
        # TLS is verified against the API server's own CA: no insecure-skip-tls-verify.
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": CONTEXT,
                    "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)},
                }
            ],
            "users": [{"name": ADMIN_USER, "user": {"token": self.admin_token}}],
            "contexts": [
                {
                    "name": CONTEXT,
                    "context": {"cluster": CONTEXT, "user": ADMIN_USER, "namespace": "default"},
                }
            ],
            "current-context": CONTEXT,
        }
        self.kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False))

    # -- helpers for tests and the demo --------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> Any:
        """A raw API call as admin, e.g. request("GET", "/api/v1/namespaces"); JSON in and out.

        Raises urllib.error.HTTPError (with .code) for error statuses.
        """
        headers = {"Authorization": f"Bearer {self.admin_token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.server + path, data, headers, method=method)
        with urllib.request.urlopen(req, context=self._ssl, timeout=timeout) as response:
            raw = response.read()
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return raw.decode(errors="replace")  # /readyz, /healthz answer plain text

    def configuration(self) -> Configuration:
        config = Configuration(host=self.server)
        config.api_key = {"authorization": self.admin_token}
        config.api_key_prefix = {"authorization": "Bearer"}
        config.ssl_ca_cert = str(self.ca_file)
        return config

    def api_endpoint(self) -> ApiEndpoint:
        """Where and as whom the operator's writer calls this cluster: cluster admin."""
        return ApiEndpoint(
            server=self.server,
            headers={"Authorization": f"Bearer {self.admin_token}"},
            ssl_context=self._ssl,
        )

    def api_client(self) -> ApiClient:
        """A kubernetes.client.ApiClient acting as cluster admin (close it when done)."""
        return ApiClient(self.configuration())

    def env(self) -> dict[str, str]:
        """Environment variables that point kubectl, kopf and friends at this cluster."""
        return {"KUBECONFIG": str(self.kubeconfig)}

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl against this cluster; output is captured as text."""
        argv = [str(self.kubectl_path), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def apply_crds(self, crd_dir: Path) -> list[str]:
        """Create or replace the CRDs in `crd_dir` and wait until they are Established."""
        return apply_crds(self, crd_dir)
