# syntax=docker/dockerfile:1
# The operator image: `docker build -t directservice-operator:0.1.0 .` (BuildKit).
#
# Two stages on the same pinned base. The builder turns the project and its pinned
# dependencies (pyproject.toml) into wheels; the final stage installs only those wheels,
# offline, then drops pip: no compiler, no package manager, no source tree, no root.
# For reproducible releases, add the base image's digest: python:3.11.14-slim-bookworm@sha256:...
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ ./operator/
# Wheels for the project and every dependency; binary wheels only, so no compiler is needed.
RUN pip wheel --wheel-dir=/wheels --only-binary=:all: . \
 && ls /wheels

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="directservice-operator" \
      org.opencontainers.image.description="Publishes managed inference instances as headless Services and EndpointSlices" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# Install from the builder's wheels only (no index), then remove pip and friends.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels directservice-operator \
 && python -m pip uninstall --yes pip setuptools wheel \
 && groupadd --gid 65532 nonroot \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin nonroot
# Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
WORKDIR /
EXPOSE 8080 9090
ENTRYPOINT ["directservice"]
CMD ["run"]
