"""Discovery emulator: serves the PAI-EAS and ModelArts discovery APIs (and a ModelArts IAM
login) for tests, demos and rehearsal.

Run it with ``directservice emulate --config FILE [--host 127.0.0.1] [--port 8080]
[--tls-port PORT] [--log-requests]``, or in-process with :class:`EmulatorThread`.
``--tls-port`` (``EmulatorThread(tls=True)``) also serves everything over HTTPS with a
self-signed certificate that openssl makes at start, so clients fail with a TLS error.

Config file (YAML or JSON)::

    services:
      mnist_saved_model_example:
        instances:
          - {ip: 10.1.0.1, port: 50000, weight: 100}
          - {ip: 10.1.0.2, port: 50000}      # weight defaults to 100
        correlative: [...]                   # optional; default [service name]
        fill_defaults: true                  # false: serve instances exactly as written
    iam: {...}                               # ModelArts logins, see :mod:`.iam`
    modelarts: {shape: {...}}                # ModelArts answer shape, see :mod:`.modelarts`

Instances are served as given: any JSON value passes through (string or float weights, extra
keys, even non-objects); objects get ``app`` (service name, ``_`` -> ``-``) and ``weight``
(100) only when missing.

Discovery API (PAI-EAS, see :mod:`.eas`), both paths answer the same::

    GET /exported/apis/eas.alibaba-inc.k8s.io/v1/upstreams/{service}[?internal=true|false]
    GET /api/v1/servicediscovery/upstreams/{service}[?internal=true|false]
    -> 200 {"correlative": [...], "endpoints": {"items": [...]}}; 404 JSON error if unknown

Discovery API (ModelArts, see :mod:`.modelarts`; the same services, by service id)::

    GET /v1/{project}/services/{service}/predict/endpoints?type=host_endpoints
        X-Auth-Token: a token from POST /v3/auth/tokens (or an AK/SK signature)

Admin API, JSON, on the same port:

- ``GET /healthz``
- ``GET /admin/services``; ``GET|PUT|DELETE /admin/services/{name}``. PUT takes the same
  body as a config entry (``{"instances": [...]}``) and creates or replaces the service.
- ``POST /admin/faults`` ``{"mode": ..., "service": name or null (all), "count": N or null
  (until cleared), ...params}`` -> 201 with the fault and its ``id``. Modes and params:
  ``status`` (``status``, optional ``body``, ``content_type``, ``headers``); ``delay``
  (``seconds``; then answers normally); ``garbage`` (200, non-JSON; optional ``body``,
  ``content_type``); ``empty`` (``"items": []``); ``null`` (``"endpoints": null``);
  ``wrong_shape`` (200 with ``json``, default the bare instance list); ``oversize`` (200
  with a valid JSON body of ``bytes`` bytes, default 16 MiB; with ``chunked: true`` it
  announces no Content-Length); ``trickle`` (the normal answer, its body sent at
  ``bytes_per_second``, default 1); ``redirect`` (``location``,
  ``status`` default 302, ``headers``); ``close`` (drop the connection unanswered).
  Faults form a FIFO queue: a request gets the oldest fault matching its service, and a
  fault with a count leaves the queue after that many requests.
- ``GET /admin/faults``; ``DELETE /admin/faults`` (all); ``DELETE /admin/faults/{id}``.
- ModelArts/IAM: ``GET /admin/iam``; ``PUT /admin/iam/users/{name}``; ``POST
  /admin/iam/revoke`` (tokens then answer 401 APIGW.0301); ``GET|PUT /admin/modelarts/shape``.
- ``GET /admin/requests[?service=name]`` -> ``{"total", "per_service", "per_status",
  "per_credential", "dropped", "log": [{"flavour", "service", "method", "path", "query",
  "time", "status", "fault", "headers", "credential"}]}``; with ``?service=``, ``total`` and
  ``log`` are that service's only. ``per_credential`` counts the calls of each caller a
  flavour recognises (ModelArts: ``user:NAME`` for a token or access key of that IAM user),
  which lets tests prove a rate budget is never exceeded. Only discovery requests are
  logged (IAM logins are counted in ``GET /admin/iam``); ``time`` is when the answer was
  sent (after any delay); ``status`` is null for a dropped connection; the log keeps the
  last 10000 (``--request-log-size``).
  ``POST /admin/requests/reset`` clears it all.

Another vendor's API plugs in as a :class:`~.serving.Flavour` subclass listed in
:data:`~.server.DEFAULT_FLAVOURS`; faults, counters and the log then apply to it as well.
"""

from .cli import main
from .errors import ConfigError
from .faults import Fault, FaultError, FaultMode, parse_fault
from .runner import AdminError, EmulatorThread
from .server import DEFAULT_FLAVOURS, create_app, start_server
from .serving import Answer, Flavour
from .state import EmulatorState, RequestRecord, Service, load_config

__all__ = [
    "DEFAULT_FLAVOURS",
    "AdminError",
    "Answer",
    "ConfigError",
    "EmulatorState",
    "EmulatorThread",
    "Fault",
    "FaultError",
    "FaultMode",
    "Flavour",
    "RequestRecord",
    "Service",
    "create_app",
    "load_config",
    "main",
    "parse_fault",
    "start_server",
]
