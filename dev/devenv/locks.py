"""The image's dependency locks: every runtime dependency pinned with its hashes.

    python -m devenv.locks lock     # regenerate requirements.lock and requirements-build.lock
    python -m devenv.locks check    # exit 1 when one is not current (make lint)

uv compiles them (`uv pip compile --generate-hashes`); the image installs them with
`pip --require-hashes`.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from devenv.paths import REPO_ROOT

LOCK = REPO_ROOT / "requirements.lock"
BUILD_LOCK = REPO_ROOT / "requirements-build.lock"


class LockError(RuntimeError):
    """uv is missing or could not compile a lock file."""


def _dev_pin(name: str) -> str:
    """The exact `name==version` pin of the dev extras in pyproject.toml."""
    match = re.search(rf'"({re.escape(name)}==[^"]+)"', (REPO_ROOT / "pyproject.toml").read_text())
    if match is None:
        raise LockError(f"pyproject.toml pins no {name} in the dev extras")
    return match.group(1)


def _uv() -> str:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if found is None:
        raise LockError("uv is not installed (it is in the dev extras: make venv)")
    return found


def _compile(source: str, output: Path, stdin: str | None, offline: bool) -> None:
    argv = [
        _uv(), "pip", "compile", source, "--quiet", "--generate-hashes", "--universal",
        "--python-version", "3.11", "--custom-compile-command", "make lock",
        "--output-file", str(output),
    ]  # fmt: skip
    argv += ["--offline"] if offline else []
    result = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, cwd=REPO_ROOT, check=False
    )
    if result.returncode != 0:
        raise LockError(f"uv pip compile {source} failed: {result.stderr}")


def _locks() -> list[tuple[Path, str, str | None]]:
    """(lock file, uv source, stdin): the runtime deps of pyproject.toml, and the wheel's
    build backend (hatchling, as pinned for dev), used only in the builder stage."""
    return [(LOCK, "pyproject.toml", None), (BUILD_LOCK, "-", _dev_pin("hatchling") + "\n")]


def lock() -> list[Path]:
    """Regenerate the lock files; versions already locked stay unless pyproject.toml moved."""
    for path, source, stdin in _locks():
        _compile(source, path, stdin, offline=False)
    return [path for path, _, _ in _locks()]


def check_lock() -> list[str]:
    """Lock files that are not what `lock` would write now (empty: all current).

    Recompiles into a temp copy, with the committed pins as preferences: a new upstream
    release does not make the lock stale, a changed pyproject.toml does. Offline from uv's
    cache when it can, else with the index."""
    stale: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for path, source, stdin in _locks():
            fresh = Path(tmp) / path.name
            if path.exists():
                shutil.copyfile(path, fresh)
            try:
                _compile(source, fresh, stdin, offline=True)
            except LockError:
                _compile(source, fresh, stdin, offline=False)
            if not path.exists() or fresh.read_text() != path.read_text():
                stale.append(path.name)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devenv.locks", description=__doc__)
    parser.add_argument("command", choices=["lock", "check"])
    args = parser.parse_args(argv)
    try:
        if args.command == "lock":
            for path in lock():
                print(f"wrote {path.relative_to(REPO_ROOT)}")
            return 0
        stale = check_lock()
    except LockError as err:
        print(err, file=sys.stderr)
        return 1
    if stale:
        print(f"stale: {', '.join(stale)}; run `make lock`", file=sys.stderr)
        return 1
    print("lock files are current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
