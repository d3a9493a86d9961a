"""The image recipe (Dockerfile, .dockerignore), read for the properties the chart relies on.

No container engine runs here, so the image is never built by the tests. That the image
exposes the ports the chart probes is checked against the rendered chart in
tests/integration/test_manifests.py.
"""

from __future__ import annotations

import json
import re

import pytest

from support import REPO, dockerfile_instructions

pytestmark = pytest.mark.unit


def _stages() -> tuple[dict[str, str], list[list[tuple[str, str]]]]:
    args: dict[str, str] = {}
    stages: list[list[tuple[str, str]]] = []
    for instruction, rest in dockerfile_instructions():
        if instruction == "ARG" and not stages:
            key, _, value = rest.partition("=")
            args[key] = value
        elif instruction == "FROM":
            stages.append([(instruction, rest)])
        elif stages:
            stages[-1].append((instruction, rest))
    return args, stages


def test_dockerfile_is_multi_stage_on_a_pinned_base() -> None:
    args, stages = _stages()
    assert len(stages) == 2
    bases = [stage[0][1].split()[0] for stage in stages]
    assert bases == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"], "both stages share one base"
    assert stages[0][0][1].split()[-1] == "builder"
    image = args["PYTHON_IMAGE"]
    # Pinned: a full patch version and a Debian release (plus, optionally, a digest); never
    # a floating tag such as 3.11-slim or latest.
    match = re.fullmatch(
        r"python:3\.11\.(\d+)-slim-(bookworm|trixie)(@sha256:[0-9a-f]{64})?", image
    )
    assert match, image


def test_dockerfile_final_stage_runs_non_root_without_build_tools() -> None:
    _, stages = _stages()
    builder, final = stages
    instructions = dict(final)
    assert instructions["USER"] == "65532:65532"  # numeric: runAsNonRoot can verify it
    assert json.loads(instructions["ENTRYPOINT"]) == ["directservice"]
    assert json.loads(instructions["CMD"]) == ["run"]
    final_text = " ".join(rest for _, rest in final)
    assert "apt-get" not in final_text and "gcc" not in final_text
    assert "COPY" not in instructions, "the final stage copies no source, only builder wheels"
    assert "--no-index" in final_text and "from=builder" in final_text
    assert "pip uninstall --yes pip" in final_text
    # The last USER wins and nothing after it switches back to root.
    users = [rest for instruction, rest in final if instruction == "USER"]
    assert users == ["65532:65532"]
    assert any("pip wheel" in rest for instruction, rest in builder if instruction == "RUN")


def test_dockerignore_keeps_the_context_to_the_package() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!operator/"} <= set(lines)
    # Everything the builder COPYs is let through.
    _, stages = _stages()
    copied = [rest.split()[:-1] for instruction, rest in stages[0] if instruction == "COPY"]
    for sources in copied:
        for source in sources:
            assert f"!{source}" in lines or f"!{source.rstrip('/')}/" in lines, source
