# The kube-intent images: the webhook (target "webhook", the default) and the OPA sidecar it runs
# next to (target "opa"). Build them with scripts/image.sh, which first makes the inputs this
# file reads from dist/ and then runs (docs/image.md):
#
#   podman build --network=none --layers=false --timestamp "$SOURCE_DATE_EPOCH" \
#     --build-arg SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" --target webhook -t kube-intent .
#
# (--layers=false: podman's layer cache ignores --timestamp and would reuse layers stamped with
# another epoch.)
#
# No registry is pulled from: the base root filesystems are Debian packages assembled by
# mmdebstrap (dist/base/*.tar), the Python packages are the wheels pinned with hashes by
# requirements/image*.txt (dist/wheels/), and OPA is the binary scripts/tools.sh builds from its
# pinned Go module (dist/opa/opa). Every RUN works offline.

# python3.11 and the libraries it links, no shell and no package manager; uid 65532 is "nonroot".
FROM scratch AS base
ADD dist/base/runtime.tar /

# The same plus busybox: a shell for the build stage.
FROM scratch AS build-base
ADD dist/base/build.tar /

# The OPA sidecar: the static, pinned binary and nothing else. Generic on purpose: the chart
# gives it its arguments (run --server ...); the webhook pushes the policies.
FROM scratch AS opa
COPY --from=base /etc/passwd /etc/group /etc/
COPY dist/opa/opa /opa
LABEL org.opencontainers.image.title="kube-intent-opa" \
      org.opencontainers.image.description="Open Policy Agent (pinned by scripts/tools.sh) for the kube-intent chart's sidecar" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 65532:65532
ENTRYPOINT ["/opa"]
CMD ["run"]

FROM build-base AS build
ARG SOURCE_DATE_EPOCH=0
# SOURCE_DATE_EPOCH: the project wheel's zip timestamps. No index: only the copied wheels.
ENV SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH} \
    PYTHONHASHSEED=0 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_INDEX=1 \
    PIP_FIND_LINKS=/wheels \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
COPY dist/wheels/ /wheels/
COPY requirements/image.txt requirements/image-build.txt /src/requirements/
# pip runs from its own wheel to install itself and setuptools into a throwaway build
# environment; neither reaches the image. The runtime venv is filled by that pip (--python).
# --no-compile: pip would write timestamp-based .pyc; compileall writes checked-hash ones below.
RUN set -eu; \
    set -- /wheels/pip-*.whl; \
    python3.11 -m venv --without-pip /build-env; \
    /build-env/bin/python "$1/pip" install --quiet --no-compile --require-hashes \
        -r /src/requirements/image-build.txt; \
    python3.11 -m venv --without-pip /opt/kube-intent; \
    /build-env/bin/pip --python /opt/kube-intent/bin/python install --quiet --no-compile \
        --no-deps --require-hashes -r /src/requirements/image.txt
# What the webhook never imports (scripts/image.sh computes the list from the wheels).
COPY dist/trim.txt /src/trim.txt
RUN set -eu; \
    cd /opt/kube-intent/lib/python3.11/site-packages; \
    xargs rm -rf < /src/trim.txt; \
    find . -name '*.py[co]' -exec rm -f {} +
COPY pyproject.toml README.md /src/project/
COPY webhook /src/project/webhook
COPY identity /src/project/identity
RUN set -eu; \
    /build-env/bin/pip wheel --quiet --no-deps --no-build-isolation --wheel-dir /src/dist \
        /src/project; \
    /build-env/bin/pip --python /opt/kube-intent/bin/python install --quiet --no-compile \
        --no-deps /src/dist/kube_intent-*.whl; \
    /build-env/bin/pip --python /opt/kube-intent/bin/python check; \
    cd /opt/kube-intent/bin; \
    for f in *; do case "$f" in kube-intent|python|python3|python3.11) ;; *) rm -f "$f" ;; esac; done; \
    find /opt/kube-intent -name '*.py[co]' -exec rm -f {} +; \
    /opt/kube-intent/bin/python -m compileall -q -f -j 0 --invalidation-mode checked-hash \
        /opt/kube-intent/lib/python3.11/site-packages; \
    mkdir -p /state

# The webhook. The chart runs it read-only as 65532 with every capability dropped; all it writes
# goes to the mounted /var/lib/kube-intent (state, audit.db) and /tmp. It asks the OPA sidecar
# (--opa-url): no OPA binary here, and no Rego outside what the wheel ships as package data.
FROM base AS webhook
COPY --from=build /opt/kube-intent /opt/kube-intent
COPY --from=build --chown=65532:65532 /state/ /var/lib/kube-intent/
LABEL org.opencontainers.image.title="kube-intent" \
      org.opencontainers.image.description="Admission webhook for AI agents' GPU inference pods" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/kube-intent/bin:/usr/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    KUBE_INTENT_STATE_DIR=/var/lib/kube-intent
USER 65532:65532
WORKDIR /var/lib/kube-intent
EXPOSE 8443
ENTRYPOINT ["/opt/kube-intent/bin/kube-intent"]
CMD ["serve", "--help"]
