"""Read the DirectService CRD and check objects against its schema without a cluster.

The CRD in manifests/crds is the single source of truth for the API. These helpers turn its
OpenAPI v3 schema into a JSON Schema (draft 4 is the closest dialect) and mimic the two steps
of the API server that a JSON Schema validator does not do: defaulting and strict field
validation. CEL rules (x-kubernetes-validations) are not evaluated here; the integration
tier checks them against a real kube-apiserver.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
CRD_PATH = REPO_ROOT / "manifests" / "crds" / "directservice.io_directservices.yaml"
EXAMPLES_DIR = REPO_ROOT / "examples"

GROUP = "directservice.io"
VERSION = "v1alpha1"
KIND = "DirectService"

Schema = dict[str, Any]


def load_crd(path: Path = CRD_PATH) -> dict[str, Any]:
    """The CustomResourceDefinition as a plain dict."""
    with path.open(encoding="utf-8") as handle:
        crd = yaml.safe_load(handle)
    if not isinstance(crd, dict):
        raise ValueError(f"{path} does not hold a single YAML mapping")
    return crd


def version_entry(crd: Mapping[str, Any], version: str = VERSION) -> dict[str, Any]:
    """The spec.versions[] entry called `version`."""
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            return dict(entry)
    raise KeyError(f"CRD has no version {version!r}")


def openapi_schema(crd: Mapping[str, Any], version: str = VERSION) -> Schema:
    """The openAPIV3Schema of `version`."""
    schema = version_entry(crd, version)["schema"]["openAPIV3Schema"]
    return dict(schema)


def to_json_schema(schema: Mapping[str, Any], *, strict: bool = False) -> Schema:
    """A JSON Schema (draft 4) equivalent of a CRD structural schema.

    x-kubernetes-* extensions are dropped. With `strict`, every object that lists its
    properties rejects other fields, as the API server does with strict field validation
    (the default of kubectl); root metadata is left open since ObjectMeta is validated
    elsewhere.
    """
    return _convert(schema, strict=strict, at_root=True)


def _convert(schema: Mapping[str, Any], *, strict: bool, at_root: bool) -> Schema:
    out: Schema = {}
    for key, value in schema.items():
        if key.startswith("x-kubernetes-"):
            continue
        if key == "properties":
            out[key] = {
                name: _convert(
                    sub, strict=strict and not (at_root and name == "metadata"), at_root=False
                )
                for name, sub in value.items()
            }
        elif key in ("items", "additionalProperties", "not") and isinstance(value, Mapping):
            out[key] = _convert(value, strict=strict, at_root=False)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [_convert(sub, strict=strict, at_root=False) for sub in value]
        else:
            out[key] = copy.deepcopy(value)
    if schema.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    out.pop("nullable", None)
    if strict and "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def apply_defaults(schema: Mapping[str, Any], value: Any) -> Any:
    """A copy of `value` with schema defaults filled in, as the API server applies them.

    A missing field with a default gets a copy of it, and defaulting continues inside it,
    so `default: {}` on an object brings in the defaults of its own fields.
    """
    result = copy.deepcopy(value)
    _default_in_place(schema, result)
    return result


def _default_in_place(schema: Mapping[str, Any], value: Any) -> None:
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                _default_in_place(sub, value[name])
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for item in value:
            _default_in_place(schema["items"], item)


def walk(schema: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every sub-schema with its path: `.spec.port.name`, `.status.conditions[]`."""
    yield path, schema
    for name, sub in (schema.get("properties") or {}).items():
        yield from walk(sub, f"{path}.{name}")
    items = schema.get("items")
    if isinstance(items, Mapping):
        yield from walk(items, f"{path}[]")


def cel_rules(schema: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The x-kubernetes-validations rules by schema path ("" is the root)."""
    return {
        path: list(sub["x-kubernetes-validations"])
        for path, sub in walk(schema)
        if "x-kubernetes-validations" in sub
    }


def load_documents(path: Path) -> list[dict[str, Any]]:
    """The non-empty YAML documents of a file."""
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def example_directservices() -> list[tuple[str, dict[str, Any]]]:
    """(file:index, object) for every DirectService in examples/."""
    found: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(EXAMPLES_DIR.glob("*.y*ml")):
        for index, doc in enumerate(load_documents(path)):
            if doc.get("kind") == KIND and str(doc.get("apiVersion", "")).startswith(GROUP):
                found.append((f"{path.name}:{index}", doc))
    return found


# The CRD in manifests/crds, read once, and a validator for what the API server checks
# with its schema (after defaulting, with strict field validation).
CRD = load_crd()
SCHEMA = openapi_schema(CRD)
VALIDATOR = jsonschema.Draft4Validator(
    to_json_schema(SCHEMA, strict=True), format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER
)


def directservice(name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """A DirectService in namespace default with a copy of `spec`."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "namespace": "default"},
        "spec": copy.deepcopy(dict(spec)),
    }


def errors(obj: Mapping[str, Any]) -> list[str]:
    """Schema violations of `obj` after defaulting, as 'path: message'."""
    defaulted = apply_defaults(SCHEMA, obj)
    return [
        "/".join(str(p) for p in err.absolute_path) + ": " + err.message
        for err in VALIDATOR.iter_errors(defaulted)
    ]
