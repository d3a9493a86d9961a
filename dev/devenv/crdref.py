"""Render docs/crd-reference.md from the CRD's openAPIV3Schema.

    python -m devenv.crdref            # (re)write docs/crd-reference.md
    python -m devenv.crdref --check    # exit 1 if the committed file is stale

The CRD in manifests/crds is the single source of truth; this page is derived from it and
never edited by hand. Every field is listed with its path, type, whether it is required, its
default, every validation (length, range, pattern, enum, list and map rules, CEL rules with
their messages) and its description. Schema keywords this module does not know are still
shown, verbatim, so a new kind of constraint can never silently disappear from the page.
The output depends only on the CRD: no timestamps, properties in the order the CRD lists them.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devenv.paths import REPO_ROOT

DEFAULT_CRD = REPO_ROOT / "manifests" / "crds" / "directservice.io_directservices.yaml"
DEFAULT_OUTPUT = REPO_ROOT / "docs" / "crd-reference.md"
REGENERATE = "python -m devenv.crdref"

Schema = Mapping[str, Any]

# Keywords rendered explicitly; anything else in a schema is shown verbatim under "Other".
_HANDLED = frozenset(
    {
        "type",
        "format",
        "description",
        "properties",
        "required",
        "items",
        "additionalProperties",
        "default",
        "nullable",
        "enum",
        "pattern",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minItems",
        "maxItems",
        "uniqueItems",
        "minProperties",
        "maxProperties",
        "x-kubernetes-validations",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-map-type",
        "x-kubernetes-int-or-string",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-embedded-resource",
    }
)
_URL = re.compile(r"https?://\S+[^\s.,;:)]")
# An underscore between two letters or digits can never start or end emphasis: keep those.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*<>&\[\]]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")
_BLOCK_START = re.compile(r"^([#=+-]|\d+[.)])")


@dataclass(frozen=True)
class Field:
    """One node of the schema tree and where it sits."""

    path: str  # spec.port.name, status.conditions[], spec.labels.* ("" is the root)
    schema: Schema
    required: bool | None  # None: list items and map values, where it has no meaning


# -- small text helpers ---------------------------------------------------------------------


def code(text: str) -> str:
    """A Markdown code span that survives backticks and surrounding spaces in `text`."""
    text = str(text).strip().replace("\n", " ")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or longest else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def prose(text: str) -> str:
    """A description as Markdown: special characters escaped, except inside URLs."""
    out: list[str] = []
    for paragraph in str(text).strip().split("\n\n"):
        line = " ".join(paragraph.split())
        parts: list[str] = []
        last = 0
        for match in _URL.finditer(line):
            parts.append(_MARKDOWN_SPECIAL.sub(r"\\\1", line[last : match.start()]))
            parts.append(match.group(0))
            last = match.end()
        parts.append(_MARKDOWN_SPECIAL.sub(r"\\\1", line[last:]))
        text = "".join(parts)
        # A paragraph must not turn into a heading or a list.
        out.append(_BLOCK_START.sub(lambda m: "\\" + m.group(0), text, count=1))
    return "\n\n".join(out)


def cell(text: str) -> str:
    """Text for a Markdown table cell: no newlines, pipes escaped."""
    return text.replace("\n", " ").replace("|", "\\|")


def value(data: Any) -> str:
    """A schema value (default, enum member, extension) as a code span: strings bare, the
    rest as compact JSON."""
    if isinstance(data, str):
        return code(data)
    return code(json.dumps(data, separators=(", ", ": "), sort_keys=False))


def anchor(path: str) -> str:
    """A unique HTML id: `[]` and `*` are spelled out so `a` and `a[]` differ."""
    path = path.replace("[]", ".items").replace("*", "values")
    return "field-" + (re.sub(r"[^A-Za-z0-9]+", "-", path).strip("-").lower() or "root")


# -- reading the schema -----------------------------------------------------------------------


def walk(schema: Schema, path: str = "", required: bool | None = None) -> Iterator[Field]:
    """Every sub-schema in document order: properties, list items, map values."""
    yield Field(path, schema, required)
    needed = set(schema.get("required") or ())
    for name, sub in (schema.get("properties") or {}).items():
        yield from walk(sub, f"{path}.{name}" if path else name, name in needed)
    items = schema.get("items")
    if isinstance(items, Mapping):
        yield from walk(items, f"{path}[]")
    extra = schema.get("additionalProperties")
    if isinstance(extra, Mapping):
        yield from walk(extra, f"{path}.*" if path else "*")


def type_of(schema: Schema) -> str:
    """A short type such as `string (date-time)`, `array of object`, `map of string`."""
    if schema.get("x-kubernetes-int-or-string"):
        text = "integer or string"
    elif "type" not in schema:
        text = "any" if schema.get("x-kubernetes-preserve-unknown-fields") else "(untyped)"
    else:
        text = str(schema["type"])
        items = schema.get("items")
        extra = schema.get("additionalProperties")
        if text == "array" and isinstance(items, Mapping):
            text = f"array of {type_of(items)}"
        elif text == "object" and isinstance(extra, Mapping) and not schema.get("properties"):
            text = f"map of {type_of(extra)}"
        elif text == "object" and extra is True:
            text = "map of any"
    if schema.get("format"):
        text += f" ({schema['format']})"
    if schema.get("nullable"):
        text += ", nullable"
    return text


def _bounds(low: Any, high: Any, unit: str, excl_low: bool = False, excl_high: bool = False) -> str:
    if low is not None and low == high and not excl_low and not excl_high:
        return f"exactly {low}{unit}"
    lo = f"{'>' if excl_low else '≥'} {low}" if low is not None else ""
    hi = f"{'<' if excl_high else '≤'} {high}" if high is not None else ""
    if lo and hi and not excl_low and not excl_high:
        return f"{low} to {high}{unit}"
    return " and ".join(p for p in (lo, hi) if p) + unit


def constraints(schema: Schema) -> list[str]:
    """Every validation on this node, one Markdown bullet text each."""
    out: list[str] = []
    if "enum" in schema:
        out.append("One of: " + ", ".join(value(v) for v in schema["enum"]) + ".")
    if "minLength" in schema or "maxLength" in schema:
        length = _bounds(schema.get("minLength"), schema.get("maxLength"), " characters")
        out.append(f"Length: {length}.")
    if "pattern" in schema:
        out.append(f"Pattern: {code(schema['pattern'])}.")
    if "minimum" in schema or "maximum" in schema:
        span = _bounds(
            schema.get("minimum"),
            schema.get("maximum"),
            "",
            bool(schema.get("exclusiveMinimum")),
            bool(schema.get("exclusiveMaximum")),
        )
        out.append(f"Range: {span}.")
    if "multipleOf" in schema:
        out.append(f"Multiple of {schema['multipleOf']}.")
    if "minItems" in schema or "maxItems" in schema:
        out.append(f"Items: {_bounds(schema.get('minItems'), schema.get('maxItems'), '')}.")
    if schema.get("uniqueItems"):
        out.append("Items must be unique.")
    if "minProperties" in schema or "maxProperties" in schema:
        span = _bounds(schema.get("minProperties"), schema.get("maxProperties"), "")
        out.append(f"Number of fields set: {span}.")
    list_type = schema.get("x-kubernetes-list-type")
    if list_type:
        text = f"List type {code(list_type)}"
        keys = schema.get("x-kubernetes-list-map-keys")
        if keys:
            text += ", one item per " + ", ".join(code(k) for k in keys)
        out.append(text + ".")
    if schema.get("x-kubernetes-map-type"):
        out.append(f"Map type {code(schema['x-kubernetes-map-type'])}.")
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        out.append("Unknown fields are kept (not pruned).")
    if schema.get("x-kubernetes-embedded-resource"):
        out.append("Holds an embedded Kubernetes object (apiVersion, kind, metadata).")
    for rule in schema.get("x-kubernetes-validations") or ():
        out.append(_cel(rule))
    for key in sorted(k for k in schema if k not in _HANDLED):
        out.append(f"{code(key)}: {value(schema[key])}.")
    return out


def _cel(rule: Mapping[str, Any]) -> str:
    message = rule.get("message")
    text = "CEL rule: "
    if message:
        text += f"{prose(message)}."
    elif rule.get("messageExpression"):
        text += f"message from {code(rule['messageExpression'])}."
    else:
        text += "(no message)."
    text += f" Rule: {code(rule['rule'])}."
    details = []
    if rule.get("fieldPath"):
        details.append(f"reported on {code(rule['fieldPath'])}")
    if rule.get("reason"):
        details.append(f"reason {code(rule['reason'])}")
    if rule.get("optionalOldSelf"):
        details.append("also checked on create (optionalOldSelf)")
    if details:
        text = text[:-1] + " (" + ", ".join(details) + ")."
    return text


# -- rendering ------------------------------------------------------------------------------


def _entry(crd: Mapping[str, Any], version: Mapping[str, Any]) -> list[str]:
    schema: Schema = version["schema"]["openAPIV3Schema"]
    kind = crd["spec"]["names"]["kind"]
    name = version["name"]
    lines = [f"## {kind} {name}", ""]
    lines.append(
        f"`apiVersion: {crd['spec']['group']}/{name}`, served: "
        f"{'yes' if version.get('served') else 'no'}, storage version: "
        f"{'yes' if version.get('storage') else 'no'}"
        + (", deprecated" if version.get("deprecated") else "")
        + "."
    )
    subresources = sorted((version.get("subresources") or {}).keys())
    if subresources:
        lines.append("Subresources: " + ", ".join(f"`{s}`" for s in subresources) + ".")
    lines.append("")
    if schema.get("description"):
        lines += [prose(schema["description"]), ""]
    lines += _columns(version.get("additionalPrinterColumns") or [])
    fields = list(walk(schema))
    lines += _index(fields[1:])
    lines += [f"### Fields of {kind} {name}", ""]
    for field in fields:
        lines += _field(field, kind)
    return lines


def _columns(columns: Sequence[Mapping[str, Any]]) -> list[str]:
    if not columns:
        return []
    lines = [
        "### Printer columns",
        "",
        "What `kubectl get` shows; columns with priority > 0 only with `-o wide`.",
        "",
        "| Column | Type | JSONPath | Priority | Description |",
        "|---|---|---|---|---|",
    ]
    for col in columns:
        lines.append(
            "| "
            + " | ".join(
                (
                    cell(col["name"]),
                    cell(str(col["type"])),
                    cell(code(col["jsonPath"])),
                    str(col.get("priority", 0)),
                    cell(prose(col.get("description", ""))),
                )
            )
            + " |"
        )
    return [*lines, ""]


def _index(fields: Sequence[Field]) -> list[str]:
    lines = [
        "### Field index",
        "",
        "| Field | Type | Required | Default |",
        "|---|---|---|---|",
    ]
    for field in fields:
        default = value(field.schema["default"]) if "default" in field.schema else ""
        lines.append(
            f"| [{cell(code(field.path))}](#{anchor(field.path)}) | {cell(type_of(field.schema))}"
            f" | {'yes' if field.required else ''} | {cell(default)} |"
        )
    return [*lines, ""]


def _field(field: Field, kind: str) -> list[str]:
    schema = field.schema
    title = code(field.path) if field.path else f"{kind} (the object itself)"
    lines = [f'<a id="{anchor(field.path)}"></a>', "", f"#### {title}", ""]
    facts = [f"Type: {type_of(schema)}."]
    if field.required is not None:
        facts.append("Required." if field.required else "Optional.")
    if "default" in schema:
        facts.append(f"Default: {value(schema['default'])}.")
    needed = schema.get("required") or ()
    if needed:
        facts.append("Requires: " + ", ".join(code(n) for n in needed) + ".")
    lines += [" ".join(facts), ""]
    if field.path and schema.get("description"):
        lines += [prose(schema["description"]), ""]
    rules = constraints(schema)
    if rules:
        lines += [f"- {rule}" for rule in rules] + [""]
    return lines


def render(crds: Sequence[Mapping[str, Any]], source: str) -> str:
    """The whole reference page for the CRDs read from `source` (a repo-relative path)."""
    lines = [
        "# API reference",
        "",
        f"<!-- Generated from {source} by `{REGENERATE}`. Do not edit by hand:"
        f" change the CRD, then run `{REGENERATE}` (the unit tests fail while this page is"
        " stale). -->",
        "",
        "Every field of the custom resources, as the API server validates them: type, default,"
        " and each validation rule with the message `kubectl` shows when it fails. `kubectl"
        " explain` shows the same descriptions from a live cluster.",
        "",
    ]
    for crd in crds:
        spec = crd["spec"]
        names = spec["names"]
        short = ", ".join(f"`{s}`" for s in names.get("shortNames") or ()) or "none"
        lines += [
            f"Kind `{names['kind']}` (list `{names.get('listKind', names['kind'] + 'List')}`)"
            f" in group `{spec['group']}`, {spec['scope'].lower()}; plural `{names['plural']}`,"
            f" singular `{names.get('singular', names['kind'].lower())}`, short names {short}.",
            "",
        ]
        for version in spec["versions"]:
            lines += _entry(crd, version)
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"


def load_crds(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        docs = [d for d in yaml.safe_load_all(handle) if isinstance(d, dict)]
    crds = [d for d in docs if d.get("kind") == "CustomResourceDefinition"]
    if not crds:
        raise ValueError(f"{path} holds no CustomResourceDefinition")
    return crds


def render_file(crd_path: Path = DEFAULT_CRD) -> str:
    try:
        source = crd_path.resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        source = crd_path.name
    return render(load_crds(crd_path), source)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=REGENERATE, description=__doc__.splitlines()[0])
    parser.add_argument("--crd", type=Path, default=DEFAULT_CRD, help="CRD YAML file")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="Markdown file")
    parser.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if --output is stale"
    )
    args = parser.parse_args(argv)
    try:
        fresh = render_file(args.crd)
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as exc:
        print(f"crdref: cannot render {args.crd}: {exc}", file=sys.stderr)
        return 2
    output: Path = args.output
    if args.check:
        current = output.read_text(encoding="utf-8") if output.exists() else None
        if current != fresh:
            print(
                f"crdref: {output} is stale (the CRD changed); run `{REGENERATE}`"
                " or `make docs` and commit the result",
                file=sys.stderr,
            )
            return 1
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
