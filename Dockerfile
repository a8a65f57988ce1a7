# The operator image: `ferry operator` by default; the same image runs `ferry serve`,
# `ferry drift` and `ferry features` (the `runtime` extra) in the pods the operator creates.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip install --no-cache-dir --prefix=/install '.[runtime]'

FROM python:3.11-slim
LABEL org.opencontainers.image.title="ferry" \
      org.opencontainers.image.description="Kubernetes operator for the ML lifecycle" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /install /usr/local
# A fixed numeric non-root user, so `runAsNonRoot: true` can be verified by the kubelet.
RUN useradd --uid 65532 --no-create-home --shell /usr/sbin/nologin ferry
USER 65532:65532
ENV PYTHONUNBUFFERED=1 MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1
EXPOSE 8080
ENTRYPOINT ["ferry"]
CMD ["operator"]
