"""Log lines name the DirectService they are about, in text and JSON."""

from __future__ import annotations

import json
import logging

import pytest

from directservice.obs.logs import JsonFormatter, ObjectLogger, QuietSuccesses, TextFormatter

pytestmark = pytest.mark.unit


def _record(msg: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, msg, (), None)
    record.__dict__.update(extra)
    return record


def test_our_records_carry_namespace_and_name() -> None:
    seen: list[logging.LogRecord] = []
    logger = logging.getLogger("test-logs")
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    ObjectLogger(logger, "ns", "svc").warning("discovery failed")
    record = seen[0]
    assert TextFormatter().format(record).endswith("[ns/svc] discovery failed")
    assert json.loads(JsonFormatter().format(record))["object"] == "ns/svc"


def test_kopf_records_get_the_object_from_k8s_ref() -> None:
    ref = {"namespace": "ns", "name": "svc", "kind": "DirectService"}
    assert (
        TextFormatter()
        .format(_record("Handler succeeded", k8s_ref=ref))
        .endswith("[ns/svc] Handler succeeded")
    )
    line = json.loads(JsonFormatter().format(_record("Handler succeeded", k8s_ref=ref)))
    assert line["object"] == "ns/svc" and line["level"] == "info"


def test_records_about_nothing_have_no_object() -> None:
    assert "object" not in json.loads(JsonFormatter().format(_record("starting")))
    assert TextFormatter().format(_record("starting")).endswith(": starting")


def test_success_lines_of_event_handlers_are_dropped_and_nothing_else() -> None:
    quiet = QuietSuccesses(("slice_event",))
    assert not quiet.filter(_record("Handler 'slice_event' succeeded."))
    assert quiet.filter(_record("Handler 'poll' succeeded."))  # not an event handler
    failed = _record("Handler 'slice_event' succeeded.")
    failed.levelno = logging.WARNING  # whatever kopf says above INFO stays
    assert quiet.filter(failed)
    assert quiet.filter(_record("Handler 'slice_event' failed temporarily: boom"))
