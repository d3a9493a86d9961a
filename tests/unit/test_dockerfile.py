"""The image recipe (Dockerfile, .dockerignore, lock files), read for the properties the chart
relies on.

The image itself is built (make image, devenv.image) and run as the chart runs it in
tests/e2e/test_image.py. That the image exposes the ports the chart probes is checked
against the rendered chart in tests/integration/test_manifests.py.
"""

from __future__ import annotations

import json
import re
import tomllib

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
    assert bases == ["${BASE_IMAGE}", "${BASE_IMAGE}"], "both stages share one base"
    assert stages[0][0][1].split()[-1] == "builder"
    image = args["BASE_IMAGE"]
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
    # The final stage copies nothing but the builder's virtualenv: no source tree.
    copies = [rest for instruction, rest in final if instruction == "COPY"]
    assert copies == ["--from=builder /opt/directservice /opt/directservice"]
    assert "pip uninstall --yes pip" in final_text
    assert "sbom.txt" in final_text and "dpkg-query" in final_text
    # The last USER wins and nothing after it switches back to root.
    users = [rest for instruction, rest in final if instruction == "USER"]
    assert users == ["65532:65532"]
    runs = " ".join(" ".join(rest.split()) for instruction, rest in builder if instruction == "RUN")
    # A virtualenv (PEP 668), the locked dependencies with their hashes, binary wheels only.
    assert "python3 -m venv /opt/directservice" in runs
    assert "--require-hashes --no-deps --only-binary=:all: -r requirements.lock" in runs
    assert "--require-hashes --no-deps --only-binary=:all: -r requirements-build.lock" in runs
    assert "--no-deps --no-index /tmp/wheels/*.whl" in runs  # the project, without the index
    assert "/opt/directservice/bin/pip uninstall --yes pip setuptools" in runs


def _locked(path: str) -> dict[str, list[str]]:
    """name -> hashes of every `name==version` in a lock file."""
    text = (REPO / path).read_text().replace("\\\n", " ")
    pins: dict[str, list[str]] = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+==\S+)(.*)$", line)
        if match:
            pins[match.group(1)] = re.findall(r"--hash=sha256:([0-9a-f]{64})", match.group(2))
    return pins


def test_lock_files_pin_every_dependency_with_hashes() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    runtime = _locked("requirements.lock")
    assert runtime and all(runtime.values()), "every pin has at least one sha256"
    # The runtime lock holds the project's own exact pins (PEP 503 names).
    normalized = {re.sub(r"[-_.]+", "-", pin).lower() for pin in runtime}
    for requirement in project["project"]["dependencies"]:
        assert re.sub(r"[-_.]+", "-", requirement).lower() in normalized, requirement
    build = _locked("requirements-build.lock")
    hatchling = next(d for d in project["project"]["optional-dependencies"]["dev"]
                     if d.startswith("hatchling=="))  # fmt: skip
    assert hatchling in build and all(build.values())
    assert not any(pin.startswith(("pip==", "setuptools==")) for pin in runtime)


def test_dockerignore_keeps_the_context_to_the_package() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!operator/"} <= set(lines)
    assert {"!requirements.lock", "!requirements-build.lock"} <= set(lines)
    assert not [line for line in lines if "dev" in line or "tests" in line]
    # Everything the builder COPYs is let through.
    _, stages = _stages()
    copied = [rest.split()[:-1] for instruction, rest in stages[0] if instruction == "COPY"]
    for sources in copied:
        for source in sources:
            assert f"!{source}" in lines or f"!{source.rstrip('/')}/" in lines, source
