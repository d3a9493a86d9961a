"""docs/crd-reference.md is generated from the CRD and must never drift from it.

If the first test fails, the CRD changed without regenerating the page: run
`python -m devenv.crdref` (or `make docs`) and commit the result.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from crd_schema import CRD_PATH, REPO_ROOT, cel_rules, load_crd, openapi_schema, walk
from devenv import crdref

pytestmark = pytest.mark.unit

REFERENCE = REPO_ROOT / "docs" / "crd-reference.md"
CRD = load_crd()
SCHEMA = openapi_schema(CRD)


@pytest.fixture(scope="module")
def page() -> str:
    return crdref.render_file(CRD_PATH)


def test_committed_reference_is_up_to_date(page: str) -> None:
    assert REFERENCE.exists(), "docs/crd-reference.md is missing: run make docs"
    assert REFERENCE.read_text(encoding="utf-8") == page, (
        "docs/crd-reference.md is stale: run `python -m devenv.crdref` (make docs)"
    )


def test_render_is_deterministic(page: str) -> None:
    assert crdref.render_file(CRD_PATH) == page
    assert page.endswith("\n") and not page.endswith("\n\n")
    assert not any(line != line.rstrip() for line in page.splitlines()), "trailing whitespace"


def test_every_field_is_documented_with_its_description(page: str) -> None:
    for path, sub in walk(SCHEMA):
        if not path:
            continue
        shown = path.lstrip(".")
        assert f"#### `{shown}`" in page, f"{shown} has no section"
        if "description" in sub:
            # Descriptions are escaped Markdown: compare the words, not the punctuation.
            first_words = re.sub(r"[^A-Za-z0-9 ]", "", sub["description"]).split()[:6]
            section = page.split(f"#### `{shown}`", 1)[1].split("\n#### ", 1)[0]
            assert " ".join(first_words) in re.sub(r"[^A-Za-z0-9 ]", "", section), shown


def test_every_validation_and_default_is_shown(page: str) -> None:
    for _path, sub in walk(SCHEMA):
        if "pattern" in sub:
            assert sub["pattern"] in page
        if isinstance(sub.get("default"), str):
            assert f"`{sub['default']}`" in page
        for member in sub.get("enum") or ():
            assert f"`{member}`" in page
        for bound in ("maxLength", "maximum", "minimum"):
            if bound in sub:
                assert str(sub[bound]) in page
    rules = [rule for found in cel_rules(SCHEMA).values() for rule in found]
    assert rules, "the CRD has CEL rules; the page must show them"
    for rule in rules:
        assert " ".join(rule["rule"].split()) in page
        message = rule.get("message") or rule.get("messageExpression") or ""
        assert re.sub(r"[^A-Za-z0-9]", "", message) in re.sub(r"[^A-Za-z0-9]", "", page)


def test_printer_columns_and_names(page: str) -> None:
    version = CRD["spec"]["versions"][0]
    for column in version.get("additionalPrinterColumns") or ():
        assert f"`{column['jsonPath']}`" in page
    for short in CRD["spec"]["names"].get("shortNames") or ():
        assert f"`{short}`" in page


def test_anchors_are_unique_and_every_index_link_resolves(page: str) -> None:
    ids = re.findall(r'<a id="([^"]+)"></a>', page)
    assert len(ids) == len(set(ids))
    links = set(re.findall(r"\]\(#([^)]+)\)", page))
    assert links and links <= set(ids)


def test_schema_features_beyond_the_current_crd_are_rendered() -> None:
    """Maps, int-or-string, exclusive bounds and unknown keywords are never dropped."""
    crd: dict[str, Any] = copy.deepcopy(CRD)
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["labels"] = {
        "type": "object",
        "additionalProperties": {"type": "string", "maxLength": 63},
        "maxProperties": 8,
    }
    spec["properties"]["weight"] = {"x-kubernetes-int-or-string": True, "nullable": True}
    spec["properties"]["ratio"] = {
        "type": "number",
        "minimum": 0,
        "exclusiveMinimum": True,
        "maximum": 1,
    }
    spec["properties"]["hosts"] = {
        "type": "array",
        "items": {"type": "string"},
        "x-kubernetes-list-type": "set",
        "minItems": 1,
    }
    spec["oneOf"] = [{"required": ["labels"]}, {"required": ["hosts"]}]
    spec["properties"]["secret"] = {
        "type": "object",
        "x-kubernetes-validations": [
            {"rule": "self == oldSelf", "messageExpression": "'immutable: ' + self.name"}
        ],
    }
    text = crdref.render([crd], "test.yaml")
    assert "`spec.labels.*`" in text and "map of string" in text
    assert "Number of fields set: ≤ 8." in text
    assert "integer or string, nullable" in text
    assert "Range: > 0 and ≤ 1." in text
    assert "array of string" in text and "List type `set`" in text and "Items: ≥ 1." in text
    assert '`oneOf`: `[{"required": ["labels"]}, {"required": ["hosts"]}]`' in text
    assert "message from `'immutable: ' + self.name`" in text


def test_check_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ref.md"
    assert crdref.main(["--output", str(out), "--check"]) == 1
    assert crdref.main(["--output", str(out)]) == 0
    assert crdref.main(["--output", str(out), "--check"]) == 0
    out.write_text(out.read_text(encoding="utf-8") + "edited\n", encoding="utf-8")
    capsys.readouterr()
    assert crdref.main(["--output", str(out), "--check"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "stale" in err


def test_markdown_escaping() -> None:
    assert crdref.prose("_NAME._tcp and a*b") == "\\_NAME.\\_tcp and a\\*b"
    assert crdref.prose("keep mnist_saved_model and https://x.io/a_b#c") == (
        "keep mnist_saved_model and https://x.io/a_b#c"
    )
    assert crdref.prose("- not a list") == "\\- not a list"
    assert crdref.code("a`b") == "`` a`b ``"
    assert crdref.cell("a|b") == "a\\|b"
