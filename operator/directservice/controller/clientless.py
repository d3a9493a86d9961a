"""kopf without the Kubernetes client libraries in memory, unless a login needs one.

kopf imports the kubernetes client, if installed, at its own import and when its registry
is made: to recognise the client's models and to offer the client's login. That is 17 MiB
of the 63 MiB an operator process holds after its imports, and the operator's own API calls
do not use it (publish/apiclient.py). `directservice run` loads kopf with the libraries
hidden. A login that does need the client (an exec plugin, controller/login.py) imports it
when it runs, which the hiding no longer stops.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

CLIENT_LIBRARIES = ("kubernetes", "kubernetes_asyncio", "pykube")


@contextmanager
def without_client_libraries() -> Iterator[None]:
    """Imports of the client libraries fail inside (as if not installed), and work after."""
    hidden = [name for name in CLIENT_LIBRARIES if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # the import system's "absent"
    try:
        yield
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
