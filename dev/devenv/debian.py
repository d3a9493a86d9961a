"""Debian packages a dev tier needs, installed with apt-get (as root) when missing.

    ensure({"podman": "podman"}, extra=("containernetworking-plugins",))

A binary found on PATH, or a package dpkg knows, counts as present: nothing is installed
twice, and a machine that has them needs no network.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping

log = logging.getLogger(__name__)


class MissingPackages(RuntimeError):
    """Packages are missing and cannot be installed here (not root)."""


def _installed(package: str) -> bool:
    done = subprocess.run(["dpkg", "-s", package], capture_output=True, check=False)
    return done.returncode == 0


def ensure(binaries: Mapping[str, str], extra: Iterable[str] = ()) -> list[str]:
    """Install the package of each missing binary, and each missing `extra` package;
    returns what was installed."""
    missing = [pkg for binary, pkg in binaries.items() if shutil.which(binary) is None]
    missing += [pkg for pkg in extra if not _installed(pkg)]
    if not missing:
        return []
    if os.geteuid() != 0:
        raise MissingPackages(f"missing Debian packages {missing}; install them as root (apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log.info("installing %s with apt-get", " ".join(missing))
    subprocess.run(["apt-get", "update", "-q"], env=env, check=True, capture_output=True)
    argv = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    subprocess.run(argv, env=env, check=True, capture_output=True)
    return missing
