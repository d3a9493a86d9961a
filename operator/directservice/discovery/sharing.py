"""Discovery calls shared by DirectServices that ask the same thing.

Many DirectServices can watch one upstream with one credential (one per team namespace, say).
Their calls are identical: same method, URL and headers. One of them is sent at a time, and
its successful answer serves the *others* for one poll interval of theirs: a caller gets an
answer at most one interval old, the bound it has when polling alone, and never its own
previous answer back (its next poll would then send nothing, and it would poll at half
pace). Calls with different headers (another token, a signature with its own timestamp) are
never shared, so no DirectService ever sees an answer fetched with another's credential.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # httpclient holds the one CallSharing of a client family
    from directservice.discovery.httpclient import HttpResponse

Clock = Callable[[], float]
CallKey = tuple[str, str, str]  # method, URL, digest of the headers
PRUNE_EVERY_CALLS = 1000
MAX_WINDOW = 3600.0  # s: the longest poll interval worth sharing an answer for


def call_key(method: str, url: str, headers: Mapping[str, str]) -> CallKey:
    canonical = "\n".join(sorted(f"{k.lower()}:{v}" for k, v in headers.items()))
    return method, url, hashlib.sha256(canonical.encode()).hexdigest()


class _LeaderLeft(Exception):
    """The caller that sent the shared call was cancelled, which cut the call."""


@dataclass
class CallSharing:
    clock: Clock = time.monotonic
    # A call in flight: the future its sender resolves for the callers that wait on it.
    _in_flight: dict[CallKey, asyncio.Future[HttpResponse]] = field(default_factory=dict)
    # The last 2xx answer of each call: when, for whom, and the answer.
    _answers: dict[CallKey, tuple[float, str, HttpResponse]] = field(default_factory=dict)
    shared: int = 0  # calls answered without a request of their own (for tests and metrics)
    _calls: int = 0

    async def call(
        self,
        key: CallKey,
        window: float,
        send: Callable[[], Awaitable[HttpResponse]],
        caller: str,
    ) -> HttpResponse:
        """`send()`'s answer, or one from an identical call of another caller, in flight or
        at most `window` seconds old (only 2xx answers are kept).

        The first caller sends in its own task (no task per call: most calls share
        nothing); the others wait on its future. A waiter that is cancelled just leaves;
        when the sender is cancelled, its call is cut and each waiter sends its own."""
        self._calls += 1
        if self._calls % PRUNE_EVERY_CALLS == 0:
            self.forget_older_than(MAX_WINDOW)
        while True:
            kept = self._answers.get(key)
            if kept is not None and kept[1] != caller and self.clock() - kept[0] < window:
                self.shared += 1
                return kept[2]
            flight = self._in_flight.get(key)
            if flight is None:
                return await self._send(key, send, caller)
            try:
                answer = await asyncio.shield(flight)
            except _LeaderLeft:
                continue
            self.shared += 1
            return answer

    async def _send(
        self, key: CallKey, send: Callable[[], Awaitable[HttpResponse]], caller: str
    ) -> HttpResponse:
        flight: asyncio.Future[HttpResponse] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = flight
        try:
            answer = await send()
        except BaseException as exc:
            failure = exc if isinstance(exc, Exception) else _LeaderLeft()  # cancelled
            flight.set_exception(failure)
            flight.exception()  # read: no "never retrieved" warning when nobody waited
            raise
        finally:
            self._in_flight.pop(key, None)
        if 200 <= answer.status < 300:
            self._answers[key] = (self.clock(), caller, answer)
        else:
            self._answers.pop(key, None)
        flight.set_result(answer)
        return answer

    def forget_older_than(self, age: float) -> None:
        """Drop answers nobody can use any more (callers that went away)."""
        now = self.clock()
        for key in [k for k, (at, _, _) in self._answers.items() if now - at >= age]:
            del self._answers[key]
