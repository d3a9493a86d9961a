# syntax=docker/dockerfile:1
# The operator image. `make image` builds it with podman/buildah on a Debian base it makes
# itself (mmdebstrap, see dev/devenv/image.py); elsewhere a plain
#   docker build -t localhost/directservice-operator:0.1.0 .
# builds the same recipe on the default base below.
#
# Two stages on one base (BASE_IMAGE, a Debian bookworm with python3 and its venv module).
# The builder makes a virtualenv in /opt/directservice (PEP 668: never pip into the system
# Python) and installs the locked dependencies with --require-hashes, then the project's own
# wheel, built with a hash-locked hatchling. The final stage copies only that virtualenv:
# no compiler, no pip, no source tree, no dev tooling, no root.
# For reproducible releases, add the base image's digest: python:3.11.14-slim-bookworm@sha256:...
ARG BASE_IMAGE=python:3.11.14-slim-bookworm

FROM ${BASE_IMAGE} AS builder
# Where pip finds the index and whom it trusts, for a mirror or a TLS-intercepting proxy
# (make image passes the host's CA bundle); unset, pip uses PyPI and its own CAs. Only the
# builder sees them.
ARG PIP_INDEX_URL
ARG PIP_CERT
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY requirements.lock requirements-build.lock pyproject.toml README.md ./
COPY operator/ ./operator/
# Dependencies: exactly the locked versions, each file checked against its sha256.
# kubernetes/aio is the client's asyncio copy (about 70 MB), which nothing here imports. The
# rest of the generated client (some 800 model files) ships as bytecode without docstrings
# (-o 2): about half its size, at the cost of source lines in its own traceback frames.
RUN python3 -m venv /opt/directservice \
 && /opt/directservice/bin/pip install --require-hashes --no-deps --only-binary=:all: \
      -r requirements.lock \
 && rm -rf /opt/directservice/lib/python3*/site-packages/kubernetes/aio \
 && site="$(/opt/directservice/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
 && /opt/directservice/bin/python -m compileall -q -b -o 2 "$site/kubernetes" \
 && find "$site/kubernetes" -name '*.py' -delete \
 && find "$site/kubernetes" -name __pycache__ -prune -exec rm -rf {} +
# The project itself: a wheel built by the locked hatchling in a throwaway venv, installed
# without the index; then pip and setuptools leave the runtime venv.
RUN python3 -m venv /tmp/build \
 && /tmp/build/bin/pip install --require-hashes --no-deps --only-binary=:all: \
      -r requirements-build.lock \
 && /tmp/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir=/tmp/wheels . \
 && /opt/directservice/bin/pip install --no-deps --no-index /tmp/wheels/*.whl \
 && /opt/directservice/bin/pip uninstall --yes pip setuptools \
 && rm -rf /tmp/build /tmp/wheels

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="directservice-operator" \
      org.opencontainers.image.description="Publishes managed inference instances as headless Services and EndpointSlices" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/directservice/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY --from=builder /opt/directservice /opt/directservice
# No pip at all: drop the base's (python:*-slim) and the Debian packages that carry pip for
# `python3 -m venv` (python3-venv, the pip/setuptools wheels); nor parts of the standard
# library no service imports (tests, 2to3, pydoc, IDLE, tkinter), nor glibc's iconv modules,
# nor the command-line tools of the base that only an interactive user needs (the openssl
# CLI, util-linux, perl: essential to Debian's tooling, not to a Python service). A numeric non-root user gets
# passwd/group entries. Then the SBOM: every Debian package and Python distribution in the
# image, with its version, kept at /usr/share/doc/directservice-operator/sbom.txt.
RUN set -eu; \
    if python3 -m pip --version >/dev/null 2>&1; then \
      python3 -m pip uninstall --yes pip setuptools wheel; \
    fi; \
    venvpkgs="$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' 'python3*-venv' \
      python3-pip-whl python3-setuptools-whl 2>/dev/null | awk '/^ii/ {print $2}')"; \
    if [ -n "$venvpkgs" ]; then dpkg --purge $venvpkgs; fi; \
    for tool in openssl util-linux perl-base; do \
      if dpkg-query -W "$tool" >/dev/null 2>&1; then \
        dpkg --purge --force-remove-essential --force-depends "$tool"; \
      fi; \
    done; \
    rm -rf /usr/share/python-wheels /var/cache/debconf/*-old /var/lib/dpkg/*-old; \
    stdlib="$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')"; \
    for unused in test lib2to3 pydoc_data idlelib turtledemo tkinter ensurepip; do \
      rm -rf "$stdlib/$unused"; \
    done; \
    rm -rf /usr/lib/*/gconv; \
    echo 'nonroot:x:65532:65532:nonroot:/nonexistent:/usr/sbin/nologin' >> /etc/passwd; \
    echo 'nonroot:x:65532:' >> /etc/group; \
    doc=/usr/share/doc/directservice-operator; mkdir -p "$doc"; \
    { \
      echo "# directservice-operator 0.1.0: installed software (kind name version)"; \
      dpkg-query -W -f='deb ${Package} ${Version}\n' | sort; \
      for py in /opt/directservice/bin/python3 python3; do \
        "$py" -c 'import importlib.metadata as m; [print("python", d.metadata["Name"], d.version) for d in m.distributions()]'; \
      done | sort -u; \
    } > "$doc/sbom.txt"; \
    directservice --help >/dev/null
# Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
WORKDIR /
EXPOSE 8080 9090
ENTRYPOINT ["directservice"]
CMD ["run"]
