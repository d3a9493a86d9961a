"""Where the checkout's parts are, found from this file rather than counted parent levels."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def _find_repo_root(start: Path) -> Path:
    for folder in start.parents:
        if (folder / "pyproject.toml").is_file() and (folder / "operator").is_dir():
            return folder
    raise RuntimeError(f"no checkout (pyproject.toml beside operator/) above {start}")


REPO_ROOT = _find_repo_root(Path(__file__).resolve())
OPERATOR_ROOT = REPO_ROOT / "operator"  # the product: the wheel's only source root
DEV_ROOT = REPO_ROOT / "dev"  # dev tooling: never in the wheel or the image


def child_env(base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """An environment for a child Python process that imports both source roots as they are."""
    env = dict(os.environ if base is None else base, **extra)
    roots = [str(OPERATOR_ROOT), str(DEV_ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, roots))
    return env
