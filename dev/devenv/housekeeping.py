"""Cluster chores a real cluster's controllers would do: installing CRDs, emptying namespaces.

Plain REST through ControlPlane.request, so any manifest round-trips untouched.
"""

from __future__ import annotations

import urllib.error
from functools import partial
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from devenv.procs import wait_until

if TYPE_CHECKING:
    from devenv.controlplane import ControlPlane

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def apply_crds(cp: ControlPlane, crd_dir: Path, timeout: float = 30.0) -> list[str]:
    """Create or replace every CRD in `crd_dir` (*.yaml); wait until each is Established."""
    docs: list[dict[str, Any]] = []
    for path in sorted(crd_dir.glob("*.y*ml")) if crd_dir.is_dir() else []:
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    names: list[str] = []
    for doc in docs:
        if doc.get("kind") != "CustomResourceDefinition":
            raise ValueError(f"{crd_dir} holds a {doc.get('kind')}; only CRDs belong there")
        name = doc["metadata"]["name"]
        try:
            cp.request("POST", CRDS, doc)
        except urllib.error.HTTPError as err:
            if err.code != HTTPStatus.CONFLICT:
                raise
            current = cp.request("GET", f"{CRDS}/{name}")
            doc["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            cp.request("PUT", f"{CRDS}/{name}", doc)
        names.append(name)
    for name in names:
        wait_until(f"CRD {name} to be Established", partial(_established, cp, name), timeout)
    return names


def _established(cp: ControlPlane, name: str) -> bool:
    conditions = (cp.request("GET", f"{CRDS}/{name}").get("status") or {}).get("conditions")
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions or [])


def namespaced_collections(cp: ControlPlane) -> list[str]:
    """Paths (with a `{ns}` placeholder) of every namespaced resource that can be emptied
    with one DELETE, found through discovery as the namespace controller does it."""
    bases = ["/api/v1"] + [
        f"/apis/{group['preferredVersion']['groupVersion']}"
        for group in cp.request("GET", "/apis")["groups"]
    ]
    paths: list[str] = []
    for base in bases:
        for resource in cp.request("GET", base)["resources"]:
            top_level = "/" not in resource["name"]  # skip subresources such as pods/log
            if top_level and resource["namespaced"] and "deletecollection" in resource["verbs"]:
                paths.append(f"{base}/namespaces/{{ns}}/{resource['name']}")
    return paths


def purge_namespace(cp: ControlPlane, name: str, collections: list[str] | None = None) -> None:
    """Delete a namespace for real, standing in for the absent namespace controller.

    Deleting first makes the namespace Terminating, which stops new objects appearing in it;
    then its contents go (objects with finalizers linger until their owner releases them),
    and finally the `kubernetes` finalizer is dropped so the namespace itself disappears.
    """
    base = f"/api/v1/namespaces/{name}"
    try:
        cp.request("DELETE", base)
    except urllib.error.HTTPError as err:
        if err.code == HTTPStatus.NOT_FOUND:
            return
        raise
    for path in collections if collections is not None else namespaced_collections(cp):
        try:
            cp.request("DELETE", path.format(ns=name))
        except urllib.error.HTTPError as err:
            if err.code not in (HTTPStatus.NOT_FOUND, HTTPStatus.METHOD_NOT_ALLOWED):
                raise
    namespace = cp.request("GET", base)
    namespace["spec"]["finalizers"] = []
    cp.request("PUT", f"{base}/finalize", namespace)
