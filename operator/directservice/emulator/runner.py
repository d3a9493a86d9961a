"""Run the emulator in a background thread, for synchronous tests and the demo."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import requests

from .eas import UPSTREAMS_PATHS
from .modelarts import ENDPOINTS_PATH, TOKENS_PATH
from .server import DEFAULT_FLAVOURS, RunningServer, create_app, start_server
from .serving import Flavour
from .state import DEFAULT_LOG_SIZE, EmulatorState, load_document, parse_config
from .tls import SelfSigned, self_signed

ADMIN_TIMEOUT = 10.0


class AdminError(RuntimeError):
    """The admin API refused a request (its JSON error is in the message)."""


class EmulatorThread:
    """The emulator on its own event loop in a daemon thread, bound to a free loopback port.

    ``services`` has the shape of the config file's ``services`` mapping (a bare list stands
    for ``{"instances": [...]}``); ``config`` names a config file instead, and ``iam`` /
    ``modelarts`` give the config file's sections of those names. ``tls`` also serves
    everything over HTTPS with a fresh self-signed certificate (``https_url``, ``tls``). The
    helper methods go through the HTTP admin API, so tests exercise it too; ``state`` is the
    in-process state for the rare check the admin API cannot express.
    """

    def __init__(
        self,
        services: Mapping[str, Any] | None = None,
        *,
        config: str | Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        log_requests: bool = False,
        log_size: int = DEFAULT_LOG_SIZE,
        flavours: Sequence[type[Flavour]] = DEFAULT_FLAVOURS,
        start_timeout: float = 10.0,
        iam: Mapping[str, Any] | None = None,
        modelarts: Mapping[str, Any] | None = None,
        tls: bool = False,
    ) -> None:
        document = load_document(config) if config is not None else None
        loaded = parse_config(document)
        spec = {
            name: {"instances": value} if isinstance(value, list) else value
            for name, value in (services or {}).items()
        }
        loaded.update(parse_config({"services": spec}))
        self.state = EmulatorState(loaded.values(), log_size=log_size)
        self.state.configure(document)
        self.state.configure({"iam": iam, "modelarts": modelarts})
        self._tls_dir = Path(tempfile.mkdtemp(prefix="emulator-tls-")) if tls else None
        self.tls: SelfSigned | None = None
        self._host, self._port = host, port
        self._log_requests = log_requests
        self._flavours = tuple(flavours)
        self._start_timeout = start_timeout
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._server: RunningServer | None = None
        self._error: BaseException | None = None
        self._session = requests.Session()
        self._session.trust_env = False  # never route loopback calls through a proxy

    # Lifecycle.

    def start(self) -> EmulatorThread:
        if self._thread is not None:
            raise RuntimeError("emulator already started")
        self._thread = threading.Thread(target=self._run, name="discovery-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(self._start_timeout):
            raise RuntimeError("emulator did not start in time")
        if self._error is not None:
            self._thread.join()
            raise RuntimeError(f"emulator failed to start: {self._error}") from self._error
        return self

    def stop(self) -> None:
        """Stop serving and join the thread; safe to call more than once."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is not None and loop is not None and stop is not None and thread.is_alive():
            loop.call_soon_threadsafe(stop.set)
            thread.join(self._start_timeout)
            if thread.is_alive():
                raise RuntimeError("emulator thread did not stop")
        self._session.close()
        if self._tls_dir is not None:
            shutil.rmtree(self._tls_dir, ignore_errors=True)

    def __enter__(self) -> EmulatorThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to start(); the thread just ends
            self._error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        app = create_app(self.state, flavours=self._flavours, log_requests=self._log_requests)
        context = None
        if self._tls_dir is not None:
            self.tls = await asyncio.to_thread(self_signed, self._tls_dir)
            context = self.tls.server_context()
        self._server = await start_server(app, self._host, self._port, ssl_context=context)
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self._server.stop()

    # Addresses.

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234`` (no trailing slash)."""
        if self._server is None:
            raise RuntimeError("emulator not started")
        return self._server.url

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("emulator not started")
        return self._server.port

    @property
    def https_url(self) -> str:
        """Base URL of the HTTPS listener (needs ``tls=True``)."""
        if self._server is None or self._server.https_url is None:
            raise RuntimeError("emulator not started with tls=True")
        return self._server.https_url

    def modelarts_url(self, project: str, service: str) -> str:
        """The ModelArts host_endpoints URL (with its ?type=host_endpoints query)."""
        path = ENDPOINTS_PATH.replace("{project}", quote(project, safe=""))
        path = path.replace("{service}", quote(service, safe=""))
        return f"{self.url}{path}?type=host_endpoints"

    @property
    def iam_url(self) -> str:
        """What spec.provider.modelArts.iamEndpoint should be; logins go to {this}/v3/..."""
        return self.url

    def login(self, user: str, password: str, domain: str, project: str) -> str:
        """A token from the emulated IAM, as a client would get it."""
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {"name": user, "password": password, "domain": {"name": domain}}
                    },
                },
                "scope": {"project": {"id": project}},
            }
        }
        response = self._session.post(self.url + TOKENS_PATH, json=body, timeout=ADMIN_TIMEOUT)
        if response.status_code != 201:
            raise AdminError(f"login refused: {response.status_code} {response.text}")
        return str(response.headers["X-Subject-Token"])

    def upstreams_url(self, service: str, *, new_api: bool = False) -> str:
        """The PAI-EAS discovery URL of ``service`` (``new_api``: the servicediscovery path)."""
        path = UPSTREAMS_PATHS[1 if new_api else 0]
        return self.url + path.replace("{service}", quote(service, safe=""))

    # Admin API helpers.

    def services(self) -> dict[str, Any]:
        result: dict[str, Any] = self._admin("GET", "/admin/services")["services"]
        return result

    def set_instances(
        self,
        service: str,
        instances: Sequence[Any],
        *,
        correlative: Sequence[str] | None = None,
        fill_defaults: bool = True,
    ) -> dict[str, Any]:
        """Create or replace ``service``; returns it as it will be served."""
        body: dict[str, Any] = {"instances": list(instances), "fill_defaults": fill_defaults}
        if correlative is not None:
            body["correlative"] = list(correlative)
        return self._admin("PUT", f"/admin/services/{quote(service, safe='')}", body)

    def delete_service(self, service: str) -> bool:
        return bool(self._admin("DELETE", f"/admin/services/{quote(service, safe='')}")["deleted"])

    def add_fault(
        self, mode: str, *, service: str | None = None, count: int | None = None, **params: Any
    ) -> dict[str, Any]:
        """Queue a fault (params as in ``POST /admin/faults``, e.g. ``status=503`` or
        ``bytes=1_000_000``); returns it with its ``id``."""
        body = {"mode": mode, "service": service, "count": count, **params}
        return self._admin("POST", "/admin/faults", body)

    def clear_faults(self) -> int:
        return int(self._admin("DELETE", "/admin/faults")["cleared"])

    def faults(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._admin("GET", "/admin/faults")["faults"]
        return result

    def requests(self, service: str | None = None) -> dict[str, Any]:
        """Counters (``total``, ``per_service``, ``per_status``, ``per_credential``,
        ``dropped``) and ``log``; with ``service``, ``total`` and ``log`` are its own only."""
        params = {"service": service} if service is not None else None
        return self._admin("GET", "/admin/requests", params=params)

    def reset_requests(self) -> None:
        self._admin("POST", "/admin/requests/reset")

    def put_iam_user(
        self,
        name: str,
        password: str,
        domain: str,
        projects: Sequence[Mapping[str, str]] = (),
        *,
        keep_tokens: bool = False,
    ) -> dict[str, Any]:
        """Create or replace an IAM user; a new password revokes its tokens unless kept."""
        body = {
            "password": password,
            "domain": domain,
            "projects": list(projects),
            "keep_tokens": keep_tokens,
        }
        return self._admin("PUT", f"/admin/iam/users/{quote(name, safe='')}", body)

    def revoke_tokens(self, user: str | None = None) -> int:
        """Invalidate issued tokens (of one user, or all): the API then answers 401."""
        return int(self._admin("POST", "/admin/iam/revoke", {"user": user})["revoked"])

    def iam(self) -> dict[str, Any]:
        """Users (without passwords), token counts, and logins per user."""
        return self._admin("GET", "/admin/iam")

    def set_modelarts_shape(self, **shape: Any) -> dict[str, Any]:
        """Change the ModelArts answer shape (list, rename, drop, defaults)."""
        return self._admin("PUT", "/admin/modelarts/shape", shape)

    def _admin(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        response = self._session.request(
            method, self.url + path, json=body, params=params, timeout=ADMIN_TIMEOUT
        )
        if response.status_code >= 400:
            raise AdminError(f"{method} {path}: {response.status_code} {response.text}")
        result: dict[str, Any] = response.json()
        return result
