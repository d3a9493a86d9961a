"""Logging set-up: text or JSON lines, each naming the DirectService it is about."""

from __future__ import annotations

import json
import logging
from collections.abc import MutableMapping
from typing import Any


class ObjectLogger(logging.LoggerAdapter[logging.Logger]):
    """Adds namespace/name to every record of one DirectService."""

    def __init__(self, logger: logging.Logger, namespace: str, name: str) -> None:
        super().__init__(logger, {"object": f"{namespace}/{name}"})

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        kwargs["extra"] = {**(kwargs.get("extra") or {}), **(self.extra or {})}
        return f"[{(self.extra or {})['object']}] {msg}", kwargs


class QuietSuccesses(logging.Filter):
    """Drops kopf's INFO line "Handler 'x' succeeded." of the named handlers. Event
    handlers run on every watch event: a line each is noise, and CPU at a thousand objects."""

    def __init__(self, handlers: tuple[str, ...]) -> None:
        super().__init__()
        self._lines = frozenset(f"Handler {name!r} succeeded." for name in handlers)

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.INFO and record.msg in self._lines)


def _object_of(record: logging.LogRecord) -> str | None:
    if obj := getattr(record, "object", None):
        return str(obj)
    ref = getattr(record, "k8s_ref", None)  # kopf's per-object loggers
    if isinstance(ref, dict) and ref.get("name"):
        return f"{ref.get('namespace') or ''}/{ref['name']}".lstrip("/")
    return None


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if obj := _object_of(record):
            line["object"] = obj
        if record.exc_info and record.exc_info[0] is not None:
            line["error"] = record.exc_info[0].__name__
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Plain lines; kopf's per-object records get the same [namespace/name] as ours."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        obj = _object_of(record)
        if obj and not getattr(record, "object", None):  # ours already carry the prefix
            record.message = f"[{obj}] {record.message}"
        return super().formatMessage(record)


def configure(level: str, fmt: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper()))
    # aiohttp's access log would print every liveness probe.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def current() -> tuple[str, str]:
    """The root logger's level and format, for a child process to log alike."""
    root = logging.getLogger()
    json = any(isinstance(h.formatter, JsonFormatter) for h in root.handlers)
    return logging.getLevelName(root.getEffectiveLevel()), "json" if json else "text"
