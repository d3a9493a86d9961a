"""kopf wiring: the only module that imports kopf.

- Two indexes keep Services and EndpointSlices in memory (server-side label selectors keep
  the watches small), so polls never GET or LIST. Their DELETED events tell the
  DirectService's publisher that something it wrote is gone.
- Tenancy: the Service watch sees only Services labelled as ours; one of our name that is
  not ours is found by a refused create. The slice watch sees every slice that names a
  Service, except the built-in EndpointSlice controller's (the bulk of a cluster's slices and
  of their churn; it serves only Services with a selector, and ours have none), so slices
  that serve under a DirectService's name without being its own are seen and reported.
- One async daemon per DirectService runs its poll loop on every replica; with leader
  election only the replica that holds the DirectService's shard Lease polls and writes
  (controller/election.py). Standbys keep the same watches and indexes, warm.
- Nothing returns a value from a handler: kopf would write it to status every time.
- kopf's memo carries one object, the Runtime.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Mapping
from typing import Any

import kopf

from directservice.api.names import (
    FINALIZER,
    GROUP,
    LABEL_APP_MANAGED_BY,
    LABEL_MANAGED_BY,
    LABEL_SERVICE_NAME,
    MANAGED_BY,
    PLURAL,
    SERVICE_SELECTOR,
    VERSION,
    Owner,
)
from directservice.controller.apisession import bounded_session, connection_limit
from directservice.controller.heap import keep_heap_frozen
from directservice.controller.kopfpatch import drop_managed_fields, notify_on_change_only
from directservice.controller.login import log_in
from directservice.controller.looplag import GcPauses, sample_loop_lag
from directservice.controller.reconciler import Reconciler, Shared
from directservice.controller.runtime import Options, Runtime
from directservice.core.model import PublishedSlice, ServiceShape
from directservice.obs import metrics
from directservice.obs.logs import QuietSuccesses
from directservice.publish.apiclient import ApiEndpoint, service_account_token_file
from directservice.publish.render import Foreign, observe_service, observe_slice

log = logging.getLogger(__name__)
WORKER_IDLE_TIMEOUT = 0.5  # s; longer than kopf's batch window (0.1 s): a burst is one worker's

SliceIndex = kopf.Index[tuple[str | None, str], PublishedSlice | Foreign]
ServiceIndex = kopf.Index[tuple[str | None, str], ServiceShape | Foreign]
# Every slice that names a Service but the built-in controller's (`!=` matches a slice
# without the label too): ours, and those that would serve under our names.
BUILTIN_SLICE_CONTROLLER = "endpointslice-controller.k8s.io"
# Event handlers run on every watch event; kopf's "succeeded" line for each is dropped.
QUIET_EVENT_HANDLERS = QuietSuccesses(("slice_event", "service_event", "dsvc_event"))
WATCHED_SLICES = f"{LABEL_SERVICE_NAME},{LABEL_MANAGED_BY}!={BUILTIN_SLICE_CONTROLLER}"


def runtime_of(memo: kopf.Memo) -> Runtime:
    runtime = memo.get("runtime")
    if not isinstance(runtime, Runtime):
        raise RuntimeError("the operator's memo carries no Runtime: start it with run()")
    return runtime


class IndexView:
    """TenancyView over the two kopf indexes: ours, and what is not ours, told apart."""

    def __init__(self, slices: SliceIndex, services: ServiceIndex) -> None:
        self._slices = slices
        self._services = services

    def slices(self, namespace: str, name: str) -> list[PublishedSlice]:
        found = self._slices.get((namespace, name), ())
        return [s for s in found if isinstance(s, PublishedSlice)]

    def service(self, namespace: str, name: str) -> ServiceShape | None:
        found = self._services.get((namespace, name), ())
        return next((s for s in found if isinstance(s, ServiceShape)), None)

    def foreign(self, namespace: str, name: str) -> list[Foreign]:
        key = (namespace, name)
        found = [*self._services.get(key, ()), *self._slices.get(key, ())]
        return [f for f in found if isinstance(f, Foreign)]


async def run(options: Options) -> None:
    """Run the operator until it is stopped (SIGINT/SIGTERM)."""
    notify_on_change_only()  # kopf's start-up barrier, without N x N wake-ups
    drop_managed_fields()  # kopf keeps daemons' bodies: 10 of a DirectService's 17 KiB
    runtime = Runtime.connect(options)
    runtime.health.start()  # checks in a child process: its own GIL, off the poll loop
    lag = asyncio.get_running_loop().create_task(sample_loop_lag(), name="loop-lag")
    pauses = GcPauses()
    pauses.install()
    heap = asyncio.get_running_loop().create_task(keep_heap_frozen(), name="heap")
    try:
        await kopf.operator(
            clusterwide=not options.namespaces,
            namespaces=options.namespaces,
            standalone=True,  # no kopf peering: Leases elect (controller/election.py)
            liveness_endpoint=options.liveness,
            memo=kopf.Memo(runtime=runtime),
            stop_flag=runtime.stop,
        )
    finally:
        lag.cancel()
        heap.cancel()
        pauses.uninstall()
        if runtime.elector is not None:
            await runtime.elector.stop()  # a no-op after a graceful stop
        await runtime.health.close()
        await runtime.http.close()
        await runtime.close_transports()


async def _elect(runtime: Runtime) -> None:
    """The elector, and the signals: SIGTERM frees the Leases first, then stops kopf, so a
    standby takes over within a retry period instead of a lease duration."""
    elector = runtime.elector
    assert elector is not None
    task = asyncio.create_task(elector.run(), name="lease election")
    await asyncio.sleep(0.5)  # kopf installs its own signal handlers as it starts
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[None]] = []

    def graceful(sig: signal.Signals) -> None:
        log.info("%s: releasing the Leases, then stopping", sig.name)
        stopping.append(loop.create_task(_stop_gracefully(runtime)))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, graceful, sig)
    await task


async def _stop_gracefully(runtime: Runtime) -> None:
    try:
        if runtime.elector is not None:
            await runtime.elector.stop()
    finally:
        runtime.stop.set()


class InMemoryDiffBase(kopf.DiffBaseStorage):
    """What kopf last handled of each DirectService, kept in this process, not in an
    annotation: on.update only wakes a poll loop, which a new process starts anyway, so the
    state need not outlive the process. It saves a PATCH per object at creation and per
    spec edit, on every replica."""

    def __init__(self) -> None:
        super().__init__()
        self._essences: dict[str, kopf.BodyEssence] = {}

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return self._essences.get(str(body.metadata.uid))

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        self._essences[str(body.metadata.uid)] = essence

    def forget(self, uid: str) -> None:
        self._essences.pop(uid, None)


DIFFBASE = InMemoryDiffBase()


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = DIFFBASE
    # kopf keeps a worker per object for this long after its last event, with its queue and
    # the last body. Every object has events during a sync, so at kopf's 5 s nearly all of
    # them are alive at once: 20 MiB at 1,000 DirectServices, kept by the heap afterwards.
    settings.queueing.idle_timeout = WORKER_IDLE_TIMEOUT
    settings.posting.enabled = False  # we post our own Events, on transitions only
    logging.getLogger("kopf.objects").addFilter(QUIET_EVENT_HANDLERS)  # the same filter once
    settings.watching.label_selectors["discovery.k8s.io", "endpointslices"] = WATCHED_SLICES
    settings.watching.label_selectors["", "services"] = SERVICE_SELECTOR
    # No namespace or CRD scanning, in either mode: namespaced mode runs on Roles only, and
    # cluster-wide kopf stops serving a CRD as soon as it is terminating, so the deletion of
    # its DirectServices would never be handled and the CRD's own deletion would hang on our
    # finalizers. Unscanned, the watch goes on and every DirectService is cleaned up.
    settings.scanning.disabled = True
    runtime = runtime_of(memo)
    if runtime.elector is not None:
        runtime.election_task = asyncio.create_task(_elect(runtime), name="election")


@kopf.on.login()
async def login(
    *, logger: kopf.Logger, settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any
) -> kopf.AiohttpSession | None:
    """In-cluster, else the kubeconfig (controller/login.py), on a session whose connection
    pool is bounded (controller/apisession.py)."""
    info = await asyncio.to_thread(log_in, logger=logger, settings=settings)
    if info is None:
        return None
    # The operator's own calls go as kopf's watches do, with the same credentials.
    token_file = await asyncio.to_thread(service_account_token_file, info.token)
    runtime_of(memo).log_in(
        ApiEndpoint(
            server=info.server,
            headers=info.as_http_headers(),
            ssl_context=info.as_ssl_context(),
            proxy=info.proxy_url,
            token_file=token_file,
        )
    )
    session = bounded_session(
        limit=connection_limit(len(runtime_of(memo).options.namespaces)),
        ssl_context=info.as_ssl_context(),
        headers=info.as_http_headers(),
        proxy=info.proxy_url,
        trust_env=info.trust_env,
    )
    return kopf.AiohttpSession(
        aiohttp_session=session,
        server=info.server,
        default_namespace=info.default_namespace,
        priority=info.priority,
        expiration=info.expiration,
    )


@kopf.index("discovery.k8s.io", "v1", "endpointslices")
def dsvc_slices(
    *, namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str], PublishedSlice | Foreign]:
    seen = observe_slice(body)
    return {} if seen is None else {(namespace, labels.get(LABEL_SERVICE_NAME, "")): seen}


@kopf.index("", "v1", "services", labels={LABEL_APP_MANAGED_BY: MANAGED_BY})
def dsvc_services(
    *, namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str], ServiceShape | Foreign]:
    return {(namespace, name): observe_service(body)}


# async: kopf runs sync handlers in threads, and these touch the publishers' state.
@kopf.on.event("discovery.k8s.io", "v1", "endpointslices", labels={LABEL_MANAGED_BY: MANAGED_BY})
async def slice_event(
    *, type: str | None, namespace: str | None, name: str, labels: Mapping[str, str],
    memo: kopf.Memo, **_: Any,
) -> None:  # fmt: skip
    if type == "DELETED":
        service = labels.get(LABEL_SERVICE_NAME, "")
        reconciler = runtime_of(memo).reconcilers.get((str(namespace), service))
        if reconciler is not None:
            reconciler.publisher.forget_slice(name)


@kopf.on.event("", "v1", "services", labels={LABEL_APP_MANAGED_BY: MANAGED_BY})
async def service_event(
    *, type: str | None, namespace: str | None, name: str, memo: kopf.Memo, **_: Any
) -> None:
    if type == "DELETED":
        reconciler = runtime_of(memo).reconcilers.get((str(namespace), name))
        if reconciler is not None:
            reconciler.publisher.forget_service()


@kopf.daemon(GROUP, VERSION, PLURAL, id="poll", cancellation_timeout=10.0)
async def poll(
    *,
    body: kopf.Body,
    memo: kopf.Memo,
    stopped: kopf.DaemonStopped,
    **kwargs: Any,
) -> None:
    runtime = runtime_of(memo)
    meta = body.metadata
    owner = Owner(namespace=str(meta.namespace), name=str(meta.name), uid=str(meta.uid))
    shared = Shared(
        writer=runtime.writer,
        http=runtime.http,
        view=IndexView(kwargs["dsvc_slices"], kwargs["dsvc_services"]),
        config=runtime.options.config,
        budgets=runtime.budgets,
        tokens=runtime.tokens,
        secrets=runtime.secrets,
        health=runtime.health,
        ownership=runtime.ownership,
        load=runtime.load,
    )
    reconciler = Reconciler(owner=owner, shared=shared)
    # Kept after the daemon stops (deletion stops it first): the delete handler needs it.
    runtime.reconcilers[(owner.namespace, owner.name)] = reconciler
    await reconciler.run(lambda: body, stopped)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def dsvc_event(
    *, type: str | None, namespace: str | None, name: str, uid: str, body: kopf.Body,
    memo: kopf.Memo, **kwargs: Any,
) -> None:  # fmt: skip
    """Every DirectService event, in one handler (kopf's cost is per handler and event)."""
    if type == "MODIFIED":
        spec_edited(runtime_of(memo), str(namespace), name, body)
    elif type == "DELETED":
        await really_deleted(runtime_of(memo), str(namespace), name, uid, kwargs)


def spec_edited(runtime: Runtime, namespace: str, name: str, body: kopf.Body) -> None:
    """Poll at once after an edit instead of waiting out the interval. An event handler, not
    on.update: kopf keeps no progress for these, so an edit costs no PATCH of ours."""
    reconciler = runtime.reconcilers.get((namespace, name))
    if reconciler is not None and reconciler.spec_edited(body.get("spec")):
        reconciler.wake.set()


@kopf.on.delete(GROUP, VERSION, PLURAL, backoff=5.0)
async def cleanup_owned(
    *,
    namespace: str | None,
    name: str,
    uid: str,
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    """Remove what we created: clusters without a garbage collector keep it otherwise."""
    runtime = runtime_of(memo)
    if not await _serving(runtime, str(namespace), name):
        # The replica that serves it cleans up; keep the finalizer in case it is gone.
        timing = runtime.ownership.timing
        raise kopf.TemporaryError(
            "served by another replica", delay=timing.duration if timing else 5
        )
    await _clean_up(runtime, str(namespace), name, uid, kwargs)


async def _serving(runtime: Runtime, namespace: str, name: str) -> bool:
    """Does this replica serve the DirectService, or come to within a lease duration?"""
    ownership = runtime.ownership
    if ownership.timing is None:
        return True
    reconciler = runtime.reconcilers.get((namespace, name))
    shard = reconciler.shard if reconciler else ownership.shard_of(f"{namespace}/{name}")
    deadline = ownership.clock() + ownership.timing.duration
    while not ownership.serving(shard) and ownership.clock() < deadline:
        await ownership.changed(within=max(0.0, deadline - ownership.clock()))
    return ownership.serving(shard)


async def really_deleted(
    runtime: Runtime, namespace: str, name: str, uid: str, kwargs: dict[str, Any]
) -> None:
    """Gone without our deletion handler: deleted in the moment kopf added the finalizer,
    kopf saw no deletion timestamp and runs no handler, and its poll loop would go on."""
    DIFFBASE.forget(uid)
    reconciler = runtime.reconcilers.get((namespace, name))
    if reconciler is None or reconciler.owner.uid != uid:  # cleaned up, or a newer object
        return
    if not runtime.ownership.serving(reconciler.shard):  # the serving replica cleans up
        return
    await _clean_up(runtime, namespace, name, uid, kwargs)


async def _clean_up(
    runtime: Runtime, namespace: str, name: str, uid: str, kwargs: dict[str, Any]
) -> None:
    key = (namespace, name)
    reconciler = runtime.reconcilers.get(key)
    pending = False
    if reconciler is not None:
        await reconciler.close()  # no poll may write after the cleanup below
        pending = reconciler.publisher.service_pending()
    services: ServiceIndex = kwargs["dsvc_services"]
    ours = pending or any(isinstance(s, ServiceShape) for s in services.get(key, ()))
    # A slice that is not ours but carries our labels must survive a delete by label.
    slices: SliceIndex = kwargs["dsvc_slices"]
    seen = list(slices.get(key, ()))
    only: list[PublishedSlice] | None = None
    if any(isinstance(s, Foreign) and s.labelled for s in seen):
        only = (
            reconciler.publisher.published_slices()
            if reconciler is not None
            else [s for s in seen if isinstance(s, PublishedSlice)]
        )
    await runtime.writer.delete_owned(Owner(namespace, name, uid), ours, only)
    # Only now: a failed cleanup is retried, and the retry needs the publisher's knowledge.
    runtime.reconcilers.pop(key, None)
    metrics.forget(namespace, name)
