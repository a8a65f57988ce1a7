# syntax=docker/dockerfile:1
# Ferry's image: `ferry operator` by default; the same image runs `ferry serve`, `ferry drift` and
# `ferry features` (the `runtime` extra) in the pods the operator creates.
#   docker build -t ghcr.io/ferry-dev/ferry:0.1.0 .
# Pin the base by digest as well in your registry mirror:
#   docker build --build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:<digest> .
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Dependencies in their own layer: reused as long as pyproject.toml does not change. A stub
# package (and an empty README, which the metadata names) lets pip resolve the project's
# dependencies before the code is copied.
COPY pyproject.toml ./
RUN python -m venv /opt/ferry \
    && mkdir -p operator/ferry && touch operator/ferry/__init__.py README.md \
    && /opt/ferry/bin/pip install '.[runtime]' \
    && /opt/ferry/bin/pip uninstall --yes ferry-operator \
    && rm -rf operator README.md
COPY README.md ./
COPY operator ./operator
RUN /opt/ferry/bin/pip install --no-deps . \
    && /opt/ferry/bin/ferry --help > /dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="ferry" \
      org.opencontainers.image.description="Kubernetes operator for the ML lifecycle" \
      org.opencontainers.image.source="https://github.com/ferry-dev/ferry" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/ferry /opt/ferry
ENV PATH=/opt/ferry/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=1
# A fixed numeric non-root user (no passwd entry needed), so the kubelet can verify
# runAsNonRoot; the root filesystem can be read-only (HOME and scratch space are /tmp).
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080
ENTRYPOINT ["ferry"]
CMD ["operator"]
