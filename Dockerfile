# syntax=docker/dockerfile:1
# The kube-intent webhook image (charts/kube-intent: image.repository / image.tag).
#
#   docker build -t <registry>/kube-intent:0.1.0 .
#
# The base is pinned by version tag. Pin it by digest too where you build
# (python:3.11.14-slim-bookworm@sha256:...): no registry was reachable when this file was
# written, so no digest could be looked up and none is invented here.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY webhook ./webhook
COPY identity ./identity
# A virtualenv copied whole into the runtime stage; bytecode is compiled here because the
# runtime root filesystem is read-only.
RUN python -m venv /opt/kube-intent \
    && /opt/kube-intent/bin/pip install . \
    && /opt/kube-intent/bin/python -m compileall -q /opt/kube-intent/lib

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="kube-intent" \
      org.opencontainers.image.description="Admission webhook for AI agents' GPU inference pods" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/kube-intent/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    KUBE_INTENT_POLICIES=/opt/kube-intent/policies \
    KUBE_INTENT_STATE_DIR=/var/lib/kube-intent
COPY --from=build /opt/kube-intent /opt/kube-intent
# The Rego bundle, for `kube-intent review` / `policy test` in the image (the chart's OPA
# sidecar loads its own copy from a ConfigMap). OPA itself is not in this image.
COPY policies /opt/kube-intent/policies
# Nothing in the image is writable by the runtime user: state (certificates, audit.db) goes to
# /var/lib/kube-intent, which the chart mounts as an emptyDir or a volume claim, and /tmp.
RUN mkdir -p /var/lib/kube-intent && chown 65532:65532 /var/lib/kube-intent
USER 65532:65532
WORKDIR /var/lib/kube-intent
EXPOSE 8443
ENTRYPOINT ["kube-intent"]
CMD ["serve", "--help"]
