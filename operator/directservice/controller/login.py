"""Where the operator's API calls go, and as whom: kopf's connection info, read without the
kubernetes client when the credentials need none of it (controller/clientless.py).

In order:
- in a cluster: the service account's token and CA, and the API server named by
  KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT, as the client reads them;
- a kubeconfig that holds its credentials (a token, a client certificate, a user and
  password), read by kopf;
- any other kubeconfig (an exec plugin, an auth provider, a token file): kopf's login
  through the kubernetes client, which imports it then.
"""

from __future__ import annotations

import os
from pathlib import Path

import kopf

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
IN_CLUSTER_PRIORITY = 20  # kopf's own, for a service account


def in_cluster(
    settings: kopf.OperatorSettings, account: Path = SERVICE_ACCOUNT_DIR
) -> kopf.ConnectionInfo | None:
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    token_path = account / "token"
    if not host or not token_path.exists():
        return None
    namespace_path, ca_path = account / "namespace", account / "ca.crt"
    host = f"[{host}]" if ":" in host else host  # an IPv6 service address
    return kopf.ConnectionInfo(
        server=f"https://{host}:{port}",
        ca_path=str(ca_path) if ca_path.exists() else None,
        token=token_path.read_text(encoding="utf-8").strip() or None,
        default_namespace=(
            namespace_path.read_text(encoding="utf-8").strip() if namespace_path.exists() else None
        ),
        trust_env=settings.networking.trust_env,
        priority=IN_CLUSTER_PRIORITY,
    )


def holds_credentials(info: kopf.ConnectionInfo) -> bool:
    return bool(
        info.token
        or info.certificate_path
        or info.certificate_data
        or (info.username and info.password)
    )


def log_in(*, logger: kopf.Logger, settings: kopf.OperatorSettings) -> kopf.ConnectionInfo | None:
    """Blocking file reads (and, for an exec plugin, a process): run it in a thread."""
    info = in_cluster(settings)
    if info is not None:
        return info
    info = kopf.login_with_kubeconfig(logger=logger, settings=settings)
    if info is not None and holds_credentials(info):
        return info
    return kopf.login_via_client(logger=logger, settings=settings)
