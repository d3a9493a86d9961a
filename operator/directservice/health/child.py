"""The health checker's child process (see process.py): `python -m directservice.health.child
MAX_IN_FLIGHT LOG_LEVEL LOG_FORMAT`, spoken to over stdin and stdout."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from multiprocessing.connection import Connection

from directservice.health.checker import HealthChecker
from directservice.health.counts import Batched
from directservice.obs import logs

FLUSH_EVERY = 0.2  # s between batches of counts


async def serve(requests: Connection, answers: Connection, max_in_flight: int) -> None:
    loop = asyncio.get_running_loop()
    counts = Batched()
    checker = HealthChecker(max_in_flight=max_in_flight, counts=counts)
    stopped = asyncio.Event()

    def send(message: tuple[object, ...]) -> None:
        with contextlib.suppress(OSError):  # the parent is gone: stdin's EOF stops us
            answers.send(message)

    def on_watch(key: str, seq: int) -> None:
        send(("failing", key, seq, checker.failing(key)))

    def handle(message: tuple[object, ...]) -> None:
        if message[0] == "watch":
            _, key, seq, spec, targets = message
            checker.watch(key, spec, targets, lambda: on_watch(key, seq))  # type: ignore[arg-type]
            on_watch(key, seq)  # type: ignore[arg-type]
        elif message[0] == "unwatch":
            checker.unwatch(str(message[1]))
        else:
            stopped.set()

    def receive() -> None:
        with contextlib.suppress(EOFError, OSError):
            while True:
                message = requests.recv()
                loop.call_soon_threadsafe(handle, message)
        loop.call_soon_threadsafe(stopped.set)

    def flush() -> None:
        if events := counts.take():
            send(("counts", events))
        loop.call_later(FLUSH_EVERY, flush)

    threading.Thread(target=receive, name="health-recv", daemon=True).start()
    flush()
    await stopped.wait()
    await checker.close()
    if events := counts.take():
        send(("counts", events))


def main(argv: list[str]) -> int:
    max_in_flight, level, fmt = int(argv[0]), argv[1], argv[2]
    # The parent stops us (a "stop", or its end of stdin closing): a signal to the process
    # group, Ctrl-C say, must not end the checks while the parent goes on.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logs.configure(level, fmt)
    requests = Connection(os.dup(0), writable=False)
    answers = Connection(os.dup(1), readable=False)
    os.dup2(2, 1)  # a stray print must not corrupt the answers
    asyncio.run(serve(requests, answers, max_in_flight))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
