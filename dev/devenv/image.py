"""Build, or reuse, the operator's container image with podman/buildah; keep its lock files.

The image is built from the project's Dockerfile on a Debian bookworm base made here with
mmdebstrap (python3 + python3-venv, no apt) and imported with `podman import`. Both are
cached, keyed by hashes of their inputs:

- the base: localhost/directservice-base:<hash of the mmdebstrap recipe>;
- the image: localhost/directservice-operator:<appVersion>, labelled with the hash of the
  Dockerfile, .dockerignore, the lock files, pyproject.toml, README.md and operator/, and
  the base; its OCI archive and SBOM go to $DIRECTSERVICE_IMAGE_CACHE/<hash>/.

Podman runs with runc and cgroupfs (crun refuses this machine's hybrid cgroups) and builds
with chroot isolation on the host network. Missing Debian packages (podman, buildah, runc,
mmdebstrap, ...) are installed with apt-get, as root.

CLI: python -m devenv.image build|ensure|push --registry R|lock|check-lock
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from devenv import debian
from devenv.locks import BUILD_LOCK, LOCK
from devenv.paths import OPERATOR_ROOT, REPO_ROOT

log = logging.getLogger(__name__)

NAME = "localhost/directservice-operator"
BASE_NAME = "localhost/directservice-base"
CHART_YAML = REPO_ROOT / "charts" / "directservice-operator" / "Chart.yaml"
INPUT_LABEL = "io.directservice.inputs"
# Bump when the recipe below changes in a way the hashed files do not show.
RECIPE = 3

# What this module runs, and the Debian packages that provide it.
PACKAGES = {
    "podman": "podman",
    "buildah": "buildah",
    "runc": "runc",
    "mmdebstrap": "mmdebstrap",
    "newuidmap": "uidmap",
    "fuse-overlayfs": "fuse-overlayfs",
    "slirp4netns": "slirp4netns",
}
# Plugins podman 4 looks for even on the host network.
EXTRA_PACKAGES = ("containernetworking-plugins",)

# The base: Debian bookworm (with its updates and security suites), python3 and its venv
# module; no apt, docs, man pages or locales.
SUITE = "bookworm"
APT_SOURCES = Path("/etc/apt")


def host_sources() -> list[Path]:
    """This machine's own apt sources files: mmdebstrap takes a sources file as a mirror, so
    the base comes from whatever Debian mirrors the host's apt uses (it must be bookworm)."""
    files = [APT_SOURCES / "sources.list"]
    for pattern in ("*.list", "*.sources"):
        files += sorted((APT_SOURCES / "sources.list.d").glob(pattern))
    found = [f for f in files if f.is_file() and f.read_text().strip()]
    if not found:
        raise ImageError(f"no apt sources under {APT_SOURCES}: the base needs a Debian mirror")
    return found


BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
DPKG_OPTIONS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
)

# podman as this machine allows it: runc (crun refuses the hybrid cgroups), cgroupfs (no
# systemd), events in a file (no journald).
PODMAN = ("podman", "--runtime", "runc", "--cgroup-manager=cgroupfs", "--events-backend=file")
# Raising rlimits beyond the host's hard limits is refused; these fit under them.
ULIMITS = ("--ulimit", "nofile=1024:4096", "--ulimit", "nproc=1024:4096")


class ImageError(RuntimeError):
    """The image could not be built, found or pushed."""


@dataclass(frozen=True)
class Image:
    ref: str  # localhost/directservice-operator:<appVersion>
    inputs: str  # hash of everything the image is built from
    archive: Path  # OCI archive (podman save --format oci-archive)
    sbom: Path  # the SBOM, as kept in the image
    size_bytes: int
    action: str  # "built" or "reused"
    seconds: float


def app_version() -> str:
    match = re.search(r'^appVersion:\s*"?([^"\s]+)"?', CHART_YAML.read_text(), re.MULTILINE)
    if match is None:
        raise ImageError(f"{CHART_YAML} has no appVersion")
    return match.group(1)


def cache_root() -> Path:
    default = "~/.cache/directservice-operator/image"
    return Path(os.environ.get("DIRECTSERVICE_IMAGE_CACHE") or default).expanduser()


def podman(
    *args: str, check: bool = True, capture: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run podman with this machine's settings."""
    argv = [*PODMAN, *args]
    result = subprocess.run(argv, capture_output=capture, text=True, check=False)
    if check and result.returncode != 0:
        raise ImageError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr}")
    return result


# -- Debian packages ----------------------------------------------------------------------


def ensure_packages() -> list[str]:
    """apt-get install whatever of PACKAGES is missing; returns what was installed."""
    try:
        return debian.ensure(PACKAGES, EXTRA_PACKAGES)
    except debian.MissingPackages as err:
        raise ImageError(str(err)) from None


# -- hashing ------------------------------------------------------------------------------


def _digest(parts: Sequence[tuple[str, bytes]]) -> str:
    digest = hashlib.sha256()
    for name, data in parts:
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()


def base_inputs() -> str:
    recipe = {
        "suite": SUITE,
        "sources": [f.read_text() for f in host_sources()],
        "packages": BASE_PACKAGES,
        "dpkg": DPKG_OPTIONS,
        "recipe": RECIPE,
    }
    return _digest([("recipe", json.dumps(recipe, sort_keys=True).encode())])


def image_inputs(base_ref: str) -> str:
    files = [
        REPO_ROOT / name for name in ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md")
    ]
    files += [LOCK, BUILD_LOCK]
    files += sorted(
        p
        for p in OPERATOR_ROOT.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )
    parts = [(str(p.relative_to(REPO_ROOT)), p.read_bytes()) for p in files]
    parts += [("base", base_ref.encode()), ("recipe", str(RECIPE).encode())]
    return _digest(parts)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:  # closing the file releases the lock
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


# -- the base -----------------------------------------------------------------------------


def ensure_base(cache: Path) -> str:
    """The mmdebstrap base as a local image, built once per recipe hash."""
    ref = f"{BASE_NAME}:{base_inputs()[:16]}"
    if podman("image", "exists", ref, check=False).returncode == 0:
        return ref
    with tempfile.TemporaryDirectory(dir=cache, prefix="base-") as tmp:
        tar = Path(tmp) / "base.tar"
        argv = [
            "mmdebstrap",
            "--variant=essential",
            f"--include={','.join(BASE_PACKAGES)}",
            "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
            *(f"--dpkgopt={opt}" for opt in DPKG_OPTIONS),
            SUITE,
            str(tar),
            *(str(f) for f in host_sources()),
        ]
        started = time.monotonic()
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ImageError(f"mmdebstrap failed: {result.stderr[-4000:]}")
        log.info("base built by mmdebstrap in %.0f s", time.monotonic() - started)
        podman("import", "--change", 'CMD ["/bin/sh"]', str(tar), ref)
    return ref


# -- the image ----------------------------------------------------------------------------


def _label(ref: str) -> str | None:
    result = podman("image", "inspect", ref, check=False)
    if result.returncode != 0:
        return None
    labels = json.loads(result.stdout)[0].get("Labels") or {}
    value = labels.get(INPUT_LABEL)
    return str(value) if value else None


def _size(ref: str) -> int:
    return int(json.loads(podman("image", "inspect", ref).stdout)[0]["Size"])


# pip in the builder trusts what the host trusts (a proxy's CA, say); mounted, never copied.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def _build(ref: str, base: str, inputs: str) -> None:
    trust: list[str] = []
    if HOST_CA_BUNDLE.is_file():
        mounted = "/run/host-ca-bundle.crt"
        trust = [f"--volume={HOST_CA_BUNDLE}:{mounted}:ro", f"--build-arg=PIP_CERT={mounted}"]
    if os.environ.get("PIP_INDEX_URL"):
        trust.append(f"--build-arg=PIP_INDEX_URL={os.environ['PIP_INDEX_URL']}")
    argv = [
        "build",
        "--isolation=chroot",  # RUN steps without a container runtime or cgroups
        "--network=host",  # the builder fetches the locked wheels from the index
        "--layers=false",
        # One layer: what the final stage removes from the base (unused tools, stdlib
        # parts) then really leaves the image instead of hiding under whiteouts.
        "--squash-all",
        "--pull=never",
        *trust,
        "--build-arg",
        f"BASE_IMAGE={base}",
        "--label",
        f"{INPUT_LABEL}={inputs}",
        "--tag",
        ref,
        "--file",
        str(REPO_ROOT / "Dockerfile"),
        str(REPO_ROOT),
    ]
    result = podman(*argv, check=False)
    if result.returncode != 0:
        raise ImageError(f"podman build failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}")


def _export(ref: str, out: Path) -> tuple[Path, Path]:
    """The OCI archive and the SBOM (read from the image) into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    archive = out / f"directservice-operator-{ref.rsplit(':', 1)[1]}.oci.tar"
    sbom = out / "sbom.txt"
    if not archive.exists():
        partial = archive.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        podman("save", "--format", "oci-archive", "--output", str(partial), ref)
        partial.rename(archive)
    if not sbom.exists():
        text = podman(
            "run", "--rm", "--network=none", *ULIMITS, "--entrypoint", "cat", ref,
            "/usr/share/doc/directservice-operator/sbom.txt",
        ).stdout  # fmt: skip
        sbom.write_text(text)
    return archive, sbom


def ensure(*, force: bool = False) -> Image:
    """The image, built if its inputs changed (or `force`), with its archive and SBOM."""
    started = time.monotonic()
    ensure_packages()
    cache = cache_root()
    cache.mkdir(parents=True, exist_ok=True)
    ref = f"{NAME}:{app_version()}"
    with _locked(cache / ".image.lock"):
        base = ensure_base(cache)
        inputs = image_inputs(base)
        action = "reused"
        if force or _label(ref) != inputs:
            _build(ref, base, inputs)
            action = "built"
        out = cache / inputs[:16]
        if action == "built":
            shutil.rmtree(out, ignore_errors=True)
        archive, sbom = _export(ref, out)
    return Image(ref, inputs, archive, sbom, _size(ref), action, time.monotonic() - started)


def push(registry: str) -> str:
    """Tag the image as <registry>/directservice-operator:<appVersion> and push it."""
    image = ensure()
    target = f"{registry.rstrip('/')}/directservice-operator:{app_version()}"
    podman("tag", image.ref, target)
    podman("push", target, capture=False)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devenv.image", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build the image even when a current one exists")
    sub.add_parser("ensure", help="build the image unless a current one exists")
    push_cmd = sub.add_parser("push", help="push the image to REGISTRY")
    push_cmd.add_argument("--registry", required=True, help="e.g. registry.example.com/team")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.command in ("build", "ensure"):
            image = ensure(force=args.command == "build")
            print(f"{image.ref} {image.action} in {image.seconds:.0f} s")
            print(f"  size:    {image.size_bytes / 1e6:.0f} MB")
            print(f"  inputs:  {image.inputs[:16]}")
            print(f"  archive: {image.archive}")
            print(f"  sbom:    {image.sbom}")
        else:
            print(f"pushed {push(args.registry)}")
    except ImageError as err:
        print(err, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
