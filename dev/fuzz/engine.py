"""One fuzz target under libFuzzer, in a process of its own (fuzz.run starts it):

    python -m fuzz.engine TARGET [--bytes] [libFuzzer flags and corpus folders...]

The product's modules are imported inside atheris' instrumentation, so libFuzzer sees
their branches as coverage; the target functions themselves live in fuzz.targets. Inputs
are mutated as JSON documents (fuzz.mutate) unless --bytes asks for libFuzzer's byte-level
mutations alone.
"""

from __future__ import annotations

import sys

import atheris  # type: ignore[import-untyped]  # no type information shipped

from fuzz.mutate import json_mutator


def _libfuzzer_mutate(data: bytes, max_size: int) -> bytes:
    # Looked up at each call: Setup swaps atheris.Mutate for the libFuzzer-backed one.
    mutated: bytes = atheris.Mutate(data, max_size)
    return mutated


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit("usage: python -m fuzz.engine TARGET [--bytes] [libFuzzer arguments...]")
    name, libfuzzer_args = argv[1], argv[2:]
    bytes_only = "--bytes" in libfuzzer_args
    libfuzzer_args = [arg for arg in libfuzzer_args if arg != "--bytes"]
    # Imported here, not at the top: only modules first imported inside this block are
    # instrumented for coverage.
    with atheris.instrument_imports(include=["directservice"]):
        from fuzz.targets import TARGETS  # noqa: PLC0415
    if name not in TARGETS:
        raise SystemExit(f"unknown target {name}; known: {', '.join(TARGETS)}")
    mutator = None if bytes_only else json_mutator(_libfuzzer_mutate)
    atheris.Setup([argv[0], *libfuzzer_args], TARGETS[name], custom_mutator=mutator)
    atheris.Fuzz()  # exits the process when libFuzzer stops


if __name__ == "__main__":
    main(sys.argv)
