"""Assemble the emulator's aiohttp application and run it on a socket."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web

from .admin import admin_routes
from .eas import EasFlavour
from .serving import Flavour
from .state import EmulatorState

# Every discovery API the emulator speaks; a new provider adds its Flavour subclass here.
DEFAULT_FLAVOURS: tuple[type[Flavour], ...] = (EasFlavour,)
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

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_server(app: web.Application, host: str, port: int) -> RunningServer:
    # Our own request log replaces aiohttp's access log.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = int(runner.addresses[0][1])
    return RunningServer(runner=runner, host=host, port=bound_port)
