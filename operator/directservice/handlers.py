"""kopf wiring: the only module with @kopf decorators.

- Two indexes keep our Services and EndpointSlices in memory (server-side label
  selectors keep the watches small), so polls never GET or LIST.
- One async daemon per DirectService runs its poll loop; kopf stops it on deletion
  and when a higher-priority peer takes over.
- Nothing returns a value from a handler: kopf would write it to status every time.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf
from kubernetes import client, config

from directservice.budget import DEFAULT_CALLS_PER_MINUTE, RateBudgets
from directservice.config import OperatorConfig
from directservice.credentials import TokenCache
from directservice.httpclient import HttpClient
from directservice.kube import KubeWriter, SecretReader
from directservice.model import PublishedSlice
from directservice.reconciler import Reconciler, Shared
from directservice.render import (
    GROUP,
    LABEL_APP_MANAGED_BY,
    LABEL_MANAGED_BY,
    LABEL_SERVICE_NAME,
    MANAGED_BY,
    PLURAL,
    VERSION,
    Owner,
    ServiceShape,
    read_endpoint_slice,
    read_service_shape,
)

log = logging.getLogger(__name__)

SLICE_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
SERVICE_SELECTOR = f"{LABEL_APP_MANAGED_BY}={MANAGED_BY}"


class IndexView:
    """ClusterView over the two kopf indexes."""

    def __init__(self, slices: kopf.Index[Any, Any], services: kopf.Index[Any, Any]) -> None:
        self._slices = slices
        self._services = services

    def slices(self, namespace: str, name: str) -> list[PublishedSlice]:
        return list(self._slices.get((namespace, name), ()))

    def service(self, namespace: str, name: str) -> ServiceShape | None:
        found = list(self._services.get((namespace, name), ()))
        return found[0] if found else None


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = f"{GROUP}/cleanup"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.enabled = False  # we post our own Events, on transitions only
    settings.watching.label_selectors["discovery.k8s.io", "endpointslices"] = SLICE_SELECTOR
    settings.watching.label_selectors["", "services"] = SERVICE_SELECTOR
    if memo.get("namespaces"):
        # Namespaced mode runs on Roles only: no cluster-wide namespace or CRD scanning.
        settings.scanning.disabled = True
    settings.peering.standalone = memo.get("standalone", True)
    settings.peering.name = memo.get("peering_name", "directservice-operator")
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    operator_config = memo.get("config") or OperatorConfig()
    api = client.ApiClient()
    memo.http = HttpClient()
    memo.writer = KubeWriter(api)
    memo.budgets = RateBudgets(
        defaults={**DEFAULT_CALLS_PER_MINUTE, **operator_config.rate_budgets}
    )
    memo.tokens = TokenCache()  # one IAM login per credential, whatever uses it
    memo.secrets = SecretReader(api)


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    await memo.http.close()


@kopf.index("discovery.k8s.io", "v1", "endpointslices", labels={LABEL_MANAGED_BY: MANAGED_BY})
def dsvc_slices(
    *, namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str], PublishedSlice]:
    return {(namespace, labels.get(LABEL_SERVICE_NAME, "")): read_endpoint_slice(body)}


@kopf.index("", "v1", "services", labels={LABEL_APP_MANAGED_BY: MANAGED_BY})
def dsvc_services(
    *, namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str], ServiceShape | None]:
    return {(namespace, name): read_service_shape(body)}


@kopf.daemon(GROUP, VERSION, PLURAL, id="poll", cancellation_timeout=10.0)
async def poll(
    *,
    body: kopf.Body,
    memo: kopf.Memo,
    stopped: kopf.DaemonStopped,
    **kwargs: Any,
) -> None:
    meta = body.metadata
    shared = Shared(
        writer=memo.writer,
        http=memo.http,
        view=IndexView(kwargs["dsvc_slices"], kwargs["dsvc_services"]),
        config=memo.get("config") or OperatorConfig(),
        budgets=memo.budgets,
        tokens=memo.tokens,
        secrets=memo.secrets,
    )
    owner = Owner(namespace=str(meta.namespace), name=str(meta.name), uid=str(meta.uid))
    reconciler = Reconciler(owner=owner, shared=shared)
    memo.reconciler = reconciler
    await reconciler.run(lambda: body, stopped)


@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def spec_changed(memo: kopf.Memo, **_: Any) -> None:
    """Poll at once after an edit instead of waiting out the interval."""
    reconciler = memo.get("reconciler")
    if reconciler is not None:
        reconciler.wake.set()


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def cleanup_owned(
    *,
    namespace: str | None,
    name: str,
    uid: str,
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    """Remove what we created: clusters without a garbage collector keep it otherwise."""
    reconciler = memo.get("reconciler")
    if reconciler is not None:
        await reconciler.close()  # no poll may write after the cleanup below
    found = list(kwargs["dsvc_services"].get((namespace, name), ()))
    ours = bool(found) and found[0] is not None and found[0].owner_uid == uid
    await memo.writer.delete_owned(Owner(str(namespace), name, uid), service_is_ours=ours)
