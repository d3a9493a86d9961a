"""kopf's API session: the pool's bound leaves a place for every watch stream the handlers
open, on top of API_CONNECTIONS."""

from __future__ import annotations

import kopf
import pytest

from directservice.controller import handlers  # noqa: F401  (registers the handlers)
from directservice.controller.apisession import API_CONNECTIONS, WATCHED_KINDS, connection_limit

pytestmark = pytest.mark.unit


def test_the_pool_has_a_place_per_stream_besides_the_requests() -> None:
    assert connection_limit(0) == API_CONNECTIONS + WATCHED_KINDS  # cluster-wide
    assert connection_limit(1) == API_CONNECTIONS + WATCHED_KINDS
    assert connection_limit(5) == API_CONNECTIONS + 5 * WATCHED_KINDS


def test_watched_kinds_are_the_kinds_the_handlers_watch() -> None:
    """A handler on a new kind opens a stream per namespace: WATCHED_KINDS must follow."""
    registry = kopf.get_default_registry()
    kinds = {
        (handler.selector.group, handler.selector.plural)
        for sub in (registry._indexing, registry._watching, registry._spawning, registry._changing)
        for handler in sub.get_all_handlers()
        if handler.selector is not None
    }
    assert len(kinds) == WATCHED_KINDS, kinds
