"""The fuzz corpus, replayed on every unit run through the fuzz targets themselves (no fuzzer).

tests/fuzz-corpus/<target>/ holds the seeds (answers of the shapes the emulator serves and
the vendors document) and every input that ever crashed a target (crash-*): `make fuzz`
writes new crashers there, and this test fails on them until the bug is fixed.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzz.mutate import json_mutator, mutate_document
from fuzz.targets import TARGETS
from properties import BOUNDED, json_values

pytestmark = pytest.mark.unit

CORPUS = Path(__file__).resolve().parents[1] / "fuzz-corpus"
# The findings, each kept as the crasher that shows it (named after the bug, not its hash).
FINDINGS = {
    "pai_eas/crash-json-nested-too-deep": "RecursionError escaped decode_json",
    "http_json/crash-json-integer-over-4300-digits": "ValueError escaped decode_json",
    "static/crash-weight-beyond-float-range": "OverflowError escaped parse_static",
    "http_answer/crash-content-length-with-a-superscript-digit": (
        "ValueError escaped AnswerParser: str.isdigit takes '³', int() does not"
    ),
}
CORPUS_FILES = sorted(path for path in CORPUS.glob("*/*") if path.is_file())


def test_every_target_has_a_seed_corpus_and_every_folder_a_target() -> None:
    folders = {path.name for path in CORPUS.iterdir() if path.is_dir()}
    assert folders == set(TARGETS)
    assert all(any((CORPUS / name).iterdir()) for name in TARGETS)


def test_the_findings_are_kept_in_the_corpus() -> None:
    assert all((CORPUS / name).is_file() for name in FINDINGS)


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_corpus_input_is_handled(path: Path) -> None:
    """Only documented errors: the target raises on anything else (see fuzz.targets)."""
    TARGETS[path.parent.name](path.read_bytes())


FALLBACK = b"<libFuzzer's own mutation>"


def _bytes_fallback(data: bytes, max_size: int) -> bytes:
    return FALLBACK


@BOUNDED
@given(doc=json_values, seed=st.integers(0, 2**32 - 1), max_size=st.sampled_from((8, 4096)))
def test_the_json_mutator_keeps_documents_json_and_within_the_size(
    doc: Any, seed: int, max_size: int
) -> None:
    mutate = json_mutator(_bytes_fallback)
    data = json.dumps(doc).encode()
    out = mutate(data, max_size, seed)
    assert out == mutate(data, max_size, seed)  # the seed alone decides: runs replay
    if out != FALLBACK:
        assert len(out) <= max_size
        json.loads(out)  # still a JSON document
    assert mutate(b"{not json", max_size, seed) == FALLBACK


def test_the_json_mutator_changes_documents() -> None:
    rng = random.Random(7)
    doc = {"endpoints": {"items": [{"ip": "10.0.0.1", "port": 80}]}}
    changed = {json.dumps(mutate_document(json.loads(json.dumps(doc)), rng)) for _ in range(50)}
    assert len(changed) > 20


@pytest.mark.parametrize("depth", [500, 900, 990, 5000])
def test_the_json_mutator_survives_documents_nested_near_the_limit(depth: int) -> None:
    data = b"[" * depth + b"]" * depth
    out = json_mutator(_bytes_fallback)(data, 65536, depth)
    assert out == FALLBACK or json.loads(out) is not None
