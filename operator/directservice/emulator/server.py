"""Assemble the emulator's aiohttp application and run it on a socket."""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web

from .admin import admin_routes
from .eas import EasFlavour
from .modelarts import ModelArtsFlavour
from .serving import Flavour
from .state import EmulatorState

# Every discovery API the emulator speaks; a new provider adds its Flavour subclass here.
DEFAULT_FLAVOURS: tuple[type[Flavour], ...] = (EasFlavour, ModelArtsFlavour)
STATE_KEY = web.AppKey("directservice_emulator_state", EmulatorState)
# Handlers still waiting out a delay fault are cancelled after this long on shutdown.
SHUTDOWN_TIMEOUT = 0.5


def create_app(
    state: EmulatorState,
    *,
    flavours: Sequence[type[Flavour]] = DEFAULT_FLAVOURS,
    log_requests: bool = False,
) -> web.Application:
    app = web.Application()
    app[STATE_KEY] = state
    app.add_routes(admin_routes(state))
    for flavour in flavours:
        app.add_routes(flavour(state, log_requests=log_requests).routes())
    return app


@dataclass(frozen=True)
class RunningServer:
    """A started emulator; ``url`` has the real port when 0 was asked for."""

    runner: web.AppRunner
    host: str
    port: int
    tls_port: int | None = None  # the same app over HTTPS, when asked for

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def https_url(self) -> str | None:
        return None if self.tls_port is None else f"https://{self._host}:{self.tls_port}"

    @property
    def _host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_server(
    app: web.Application,
    host: str,
    port: int,
    *,
    tls_port: int | None = None,
    ssl_context: ssl.SSLContext | None = None,
    also_on: Sequence[str] = (),
) -> RunningServer:
    """Serve `app` on host:port, and also over HTTPS on tls_port when an ssl_context is given.
    `also_on`: more addresses served on the same (HTTP) port, e.g. other loopback addresses,
    so that one emulator stands for several discovery hosts."""
    # Our own request log replaces aiohttp's access log.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        if ssl_context is not None:
            await web.TCPSite(runner, host, tls_port or 0, ssl_context=ssl_context).start()
        ports = [int(address[1]) for address in runner.addresses]
        for other in also_on:
            await web.TCPSite(runner, other, ports[0]).start()
    except BaseException:
        await runner.cleanup()
        raise
    return RunningServer(
        runner=runner,
        host=host,
        port=ports[0],
        tls_port=ports[1] if ssl_context is not None else None,
    )
