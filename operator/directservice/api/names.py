"""Names of the DirectService API and of the objects the operator owns (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GROUP = "directservice.io"
VERSION = "v1alpha1"
KIND = "DirectService"
PLURAL = "directservices"
API_VERSION = f"{GROUP}/{VERSION}"
FINALIZER = f"{GROUP}/cleanup"
MANAGED_BY = "directservice.io"
LABEL_SERVICE_NAME = "kubernetes.io/service-name"
LABEL_MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
LABEL_APP_MANAGED_BY = "app.kubernetes.io/managed-by"
ANNOTATION_WEIGHTS = "directservice.io/weights"
# Server-side label selectors for the watches: only objects we manage reach the operator.
SLICE_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
SERVICE_SELECTOR = f"{LABEL_APP_MANAGED_BY}={MANAGED_BY}"
EVENT_COMPONENT = "directservice-operator"


@dataclass(frozen=True)
class Owner:
    """The DirectService that owns what we render."""

    namespace: str
    name: str
    uid: str

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
