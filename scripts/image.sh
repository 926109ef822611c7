#!/usr/bin/env bash
# scripts/image.sh — build the webhook image and the OPA sidecar image with podman, with no
# registry pull and reproducibly, and save them as OCI archives under dist/.
#
# Usage:
#   scripts/image.sh [build] [--refresh-base] [--no-cache]
#                              build both images (skipped when no input changed) and print how
#                              to push them; --refresh-base rebuilds the Debian root filesystems,
#                              --no-cache rebuilds everything even when no input changed
#   scripts/image.sh lock      re-pin requirements/image.txt and requirements/image-build.txt
#                              (hashes) to the versions installed in .venv, i.e. the ones the
#                              test suite runs
#   scripts/image.sh env       print the podman environment the build uses: eval "$(scripts/image.sh env)"
#
# The steps (docs/image.md has the why):
#   1. Two root filesystems from Debian bookworm's packages (Python 3.11) with mmdebstrap:
#      "runtime" is python3.11 and the libraries it links, extracted without a shell, a package
#      manager or maintainer scripts (distroless), with the standard library compiled to
#      checked-hash .pyc; "build" is the same plus busybox (a shell for the build stage). They
#      are cached in ${KUBE_INTENT_IMAGE_CACHE:-~/.cache/kube-intent/image}, keyed by their
#      recipe, and rebuilt after KUBE_INTENT_BASE_MAX_AGE_DAYS (default 7: Debian's security
#      updates) or with --refresh-base. /var/lib/dpkg/status.d lists their packages for scanners.
#   2. The wheels pinned with hashes by requirements/image*.txt, downloaded by pip into
#      dist/wheels (pip's cache makes this instant the second time), and the list of files the
#      webhook never imports (dist/trim.txt: kubernetes' asyncio client, the API groups and
#      models it does not use, test suites), computed from those wheels.
#   3. `podman build` of the Dockerfile with --network none (every input is local),
#      SOURCE_DATE_EPOCH (default: the HEAD commit's time) as --timestamp, targets "opa" (the
#      pinned .tools/bin/opa from scripts/tools.sh) and "webhook".
#   4. `podman save` as OCI archives: dist/kube-intent-<version>.oci.tar and
#      dist/kube-intent-opa-<version>.oci.tar; dist/images.env names them for tests/image.
#
# This machine's quirks are handled in a private containers.conf (dist/podman/containers.conf,
# used unless CONTAINERS_CONF is set): the runc runtime, and default_ulimits no higher than the
# hard limits podman may set here (nofile <= `ulimit -Hn`, nproc <= 32768).
#
# Environment:
#   SOURCE_DATE_EPOCH               timestamp of every file and of the images (default: HEAD's)
#   KUBE_INTENT_IMAGE               webhook image name   (default: localhost/kube-intent)
#   KUBE_INTENT_OPA_IMAGE           OPA image name       (default: localhost/kube-intent-opa)
#   KUBE_INTENT_IMAGE_CACHE         base rootfs cache    (default: ~/.cache/kube-intent/image)
#   KUBE_INTENT_BASE_MAX_AGE_DAYS   rebuild the bases when older (default: 7)
#   DEBIAN_MIRROR                   (default: http://deb.debian.org/debian)
#   DEBIAN_SECURITY_MIRROR          (default: http://deb.debian.org/debian-security)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELF="${REPO_ROOT}/scripts/image.sh"
DIST="${REPO_ROOT}/dist"
CACHE="${KUBE_INTENT_IMAGE_CACHE:-${HOME}/.cache/kube-intent/image}"
WEBHOOK_IMAGE="${KUBE_INTENT_IMAGE:-localhost/kube-intent}"
OPA_IMAGE="${KUBE_INTENT_OPA_IMAGE:-localhost/kube-intent-opa}"
MAX_AGE_DAYS="${KUBE_INTENT_BASE_MAX_AGE_DAYS:-7}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
SUITE=bookworm
# The base tarballs' own timestamp. It does not reach the images: `podman build --timestamp`
# stamps every file of every layer with SOURCE_DATE_EPOCH.
BASE_EPOCH=1735689600 # 2025-01-01T00:00:00Z
# What the runtime needs: the interpreter, its standard library, and (through their
# dependencies) the shared libraries they link. "dpkg-" keeps apt from adding the package
# manager (and tar, zstd, selinux... with it) to a root filesystem that never installs anything.
RUNTIME_PACKAGES="python3.11-minimal,libpython3.11-stdlib,dpkg-"
BUILD_PACKAGES="${RUNTIME_PACKAGES},busybox"
# The pip resolution the lock files are made for: the images' platform (bookworm's glibc 2.36,
# x86_64, CPython 3.11), whatever the host is. pip does not widen a --platform to the older
# manylinux tags that platform accepts, so they are listed, newest (preferred) first.
PIP_PLATFORM=(--only-binary=:all: --implementation cp --python-version 3.11 --abi cp311 --abi abi3
  --abi none)
for glibc_minor in $(seq 36 -1 5); do PIP_PLATFORM+=(--platform "manylinux_2_${glibc_minor}_x86_64"); done
PIP_PLATFORM+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64
  --platform manylinux1_x86_64 --platform any)
unset glibc_minor

log() { printf '[image] %s\n' "$*" >&2; }
die() { printf '[image] ERROR: %s\n' "$*" >&2; exit 1; }
sha256() { sha256sum | cut -c1-64; }

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

host_python() {
  if [[ -x "${REPO_ROOT}/.venv/bin/python" ]]; then echo "${REPO_ROOT}/.venv/bin/python"
  else command -v python3 || die "python3 not found"; fi
}

# ---------------------------------------------------------------------------
# podman configuration
# ---------------------------------------------------------------------------
podman_env() {
  if [[ -n "${CONTAINERS_CONF:-}" ]]; then return; fi
  local conf="${DIST}/podman/containers.conf" nofile nproc runtime=""
  nofile="$(ulimit -Hn)"
  nproc="$(ulimit -Hu)"
  [[ "${nofile}" == unlimited || "${nofile}" -gt 1048576 ]] && nofile=1048576
  # runc fails to set RLIMIT_NPROC above the pid limit on this kind of VM (EPERM).
  [[ "${nproc}" == unlimited || "${nproc}" -gt 32768 ]] && nproc=32768
  if command -v runc >/dev/null 2>&1; then runtime='runtime = "runc"'; fi
  mkdir -p "${conf%/*}"
  cat >"${conf}.tmp.$$" <<EOF
# Written by scripts/image.sh: podman's defaults do not run on this machine.
[containers]
default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=${nproc}:${nproc}"]

[engine]
${runtime}
EOF
  mv -f "${conf}.tmp.$$" "${conf}"
  export CONTAINERS_CONF="${conf}"
}

require() {
  local missing=() tool
  for tool in "$@"; do command -v "${tool}" >/dev/null 2>&1 || missing+=("${tool}"); done
  ((${#missing[@]} == 0)) && return
  die "missing ${missing[*]}: apt-get install -y podman runc mmdebstrap skopeo (Debian packages)"
}

# ---------------------------------------------------------------------------
# 1. base root filesystems
# ---------------------------------------------------------------------------
base_recipe() {
  local kind="$1" packages
  if [[ "${kind}" == runtime ]]; then packages="${RUNTIME_PACKAGES}"; else packages="${BUILD_PACKAGES}"; fi
  printf '%s\n' "kind=${kind}" "suite=${SUITE}" "packages=${packages}" "epoch=${BASE_EPOCH}" \
    "mirror=${MIRROR}" "security=${SECURITY_MIRROR}" "arch=$(dpkg --print-architecture)"
  mmdebstrap --version
  declare -f base_hook
}

build_base() {
  local kind="$1" out="$2" packages
  if [[ "${kind}" == runtime ]]; then packages="${RUNTIME_PACKAGES}"; else packages="${BUILD_PACKAGES}"; fi
  mkdir -p "${out%/*}"
  # --variant=extract: the packages' files only, no maintainer scripts, no dpkg database.
  # merged-usr/setup00.sh: the /bin -> usr/bin symlinks that bookworm expects, without
  # installing usrmerge (which pulls in perl).
  SOURCE_DATE_EPOCH="${BASE_EPOCH}" mmdebstrap --quiet --variant=extract \
    --include="${packages}" --format=tar --skip=output/dev \
    --setup-hook=/usr/share/mmdebstrap/hooks/merged-usr/setup00.sh \
    --extract-hook="\"${SELF}\" _base_hook ${kind} \"\$1\"" \
    "${SUITE}" "${out}.tmp" \
    "deb ${MIRROR} ${SUITE} main" \
    "deb ${MIRROR} ${SUITE}-updates main" \
    "deb ${SECURITY_MIRROR} ${SUITE}-security main"
  mv -f "${out}.tmp" "${out}"
}

# Runs inside mmdebstrap (as root of the target) on the extracted tree "$2".
base_hook() {
  local kind="$1" root="$2" deb pkg
  # Package records for vulnerability scanners (the distroless layout: one file a package).
  mkdir -p "${root}/var/lib/dpkg/status.d"
  for deb in "${root}"/var/cache/apt/archives/*.deb; do
    pkg="$(dpkg-deb --field "${deb}" Package)"
    { dpkg-deb --field "${deb}" Package Version Architecture Source Multi-Arch Depends Pre-Depends
      echo "Status: install ok installed"; } >"${root}/var/lib/dpkg/status.d/${pkg}"
  done
  # The dpkg database of the merged-usr hook's usr-is-merged: nothing here is managed by dpkg.
  find "${root}/var/lib/dpkg" -mindepth 1 -maxdepth 1 ! -name status.d -exec rm -rf {} +
  rm -rf "${root}"/usr/share/{doc,man,info,locale,lintian,bug} \
    "${root}"/usr/lib/x86_64-linux-gnu/gconv "${root}"/var/log/* "${root}"/var/cache/debconf
  # No login accounts: root, and the unprivileged user the chart runs as.
  printf '%s\n' 'root:x:0:0:root:/root:/usr/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/home/nonroot:/usr/sbin/nologin' >"${root}/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nonroot:x:65532:' >"${root}/etc/group"
  mkdir -p "${root}/home/nonroot" "${root}/tmp"
  chown 65532:65532 "${root}/home/nonroot"
  chmod 1777 "${root}/tmp"
  if [[ "${kind}" == build ]]; then
    chroot "${root}" /bin/busybox --install -s
  else
    # The standard library's bytecode, checked against the sources' hashes (not their mtimes):
    # the root filesystem is read-only, so nothing could be compiled at run time.
    chroot "${root}" /usr/bin/python3.11 -m compileall -q --invalidation-mode checked-hash \
      -x '/(test|lib2to3|idlelib|tkinter|turtledemo)/' /usr/lib/python3.11 >/dev/null
  fi
}

# Links dist/base/<kind>.tar to the cached tarball, building it first when needed.
ensure_base() {
  local kind="$1" refresh="$2" key cached age rebuild=0
  key="$(base_recipe "${kind}" | sha256 | cut -c1-16)"
  cached="${CACHE}/base/${kind}-${SUITE}-${key}.tar"
  if [[ ! -f "${cached}" ]]; then
    rebuild=1
  elif [[ "${refresh}" == 1 ]]; then
    rebuild=1
    log "${kind} base: rebuilding (asked to)"
  else
    age=$(( ($(date +%s) - $(stat -c %Y "${cached}")) / 86400 ))
    if ((age >= MAX_AGE_DAYS)); then
      rebuild=1
      log "${kind} base: ${age} days old, rebuilding (Debian's updates)"
    else
      log "${kind} base: cached (${cached##*/}, ${age} days old)"
    fi
  fi
  if ((rebuild)); then
    require mmdebstrap
    log "${kind} base: mmdebstrap ${SUITE} (${MIRROR})"
    local start=${SECONDS}
    as_root env "PATH=${PATH}" bash "${SELF}" _build_base "${kind}" "${cached}"
    log "${kind} base: built in $((SECONDS - start))s"
  fi
  mkdir -p "${DIST}/base"
  ln -f "${cached}" "${DIST}/base/${kind}.tar" 2>/dev/null || cp -f "${cached}" "${DIST}/base/${kind}.tar"
}

# ---------------------------------------------------------------------------
# 2. wheels and the trim list
# ---------------------------------------------------------------------------
fetch_wheels() {
  local py
  py="$(host_python)"
  mkdir -p "${DIST}/wheels"
  # --require-hashes: a wheel whose hash is not in the lock files fails the build.
  "${py}" -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
    "${PIP_PLATFORM[@]}" -d "${DIST}/wheels" \
    -r "${REPO_ROOT}/requirements/image.txt" -r "${REPO_ROOT}/requirements/image-build.txt"
  # Only the locked wheels reach the build context.
  "${py}" - "${DIST}/wheels" "${REPO_ROOT}/requirements/image.txt" \
    "${REPO_ROOT}/requirements/image-build.txt" <<'EOF'
import re, sys
from pathlib import Path
wanted = set()
for lock in sys.argv[2:]:
    for line in Path(lock).read_text().splitlines():
        m = re.match(r"([A-Za-z0-9_.-]+)==([^ ;\\]+)", line)
        if m:
            wanted.add((re.sub(r"[-_.]+", "_", m[1]).lower(), m[2]))
for wheel in Path(sys.argv[1]).glob("*.whl"):
    name, version = wheel.name.split("-")[:2]
    if (name.lower(), version) not in wanted:
        wheel.unlink()
EOF
}

# dist/trim.txt: paths (relative to site-packages) that the image deletes after installing.
make_trim_list() {
  "$(host_python)" - "${DIST}/wheels" "${REPO_ROOT}" "${DIST}/trim.txt" <<'EOF'
"""What the webhook never imports, read from the wheels themselves.

kubernetes: the client imports its API groups and models lazily (PEP 562), and the package's
__init__ never imports kubernetes.aio (its asyncio client, half the wheel). Kept: every API
class named in webhook/ or identity/, and every model reachable from the text of those API
modules and of the project's sources (response types, watch return types, nested fields).
Anything else the client would only load if the code named it.
"""
import re
import sys
import zipfile
from pathlib import Path

wheels, repo, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
drop: list[str] = []
sources = "\n".join(
    p.read_text(encoding="utf-8")
    for d in ("webhook", "identity")
    for p in sorted((repo / d).rglob("*.py"))
)

(kube_wheel,) = wheels.glob("kubernetes-*.whl")
with zipfile.ZipFile(kube_wheel) as z:
    names = z.namelist()
    text = {n: z.read(n).decode("utf-8") for n in names if n.endswith(".py")}

top = text["kubernetes/__init__.py"]
if re.search(r"\baio\b", top):
    sys.exit("kubernetes/__init__.py imports kubernetes.aio: update the trim list")
drop.append("kubernetes/aio")

init = text["kubernetes/client/__init__.py"]
exports = dict(re.findall(r'"(\w+)": "\.(?:api|models)\.(\w+)"', init))
api_modules = {m for m in (n.split("/")[-1][:-3] for n in names
               if n.startswith("kubernetes/client/api/") and n.endswith("_api.py"))}
used_apis = {exports[c] for c in re.findall(r"\b(\w+Api)\b", sources) if exports.get(c) in api_modules}
if not used_apis:
    sys.exit("no kubernetes API class found in webhook/ or identity/: refusing to trim")
for module in sorted(api_modules - used_apis):
    drop.append(f"kubernetes/client/api/{module}.py")

model_modules = {exports[c]: c for c in exports
                 if f"kubernetes/client/models/{exports[c]}.py" in text}
by_class = {c: m for m, c in model_modules.items()}
word = re.compile(r"\b([A-Z][A-Za-z0-9]*)\b")
keep: set[str] = set()
todo = [sources] + [text[f"kubernetes/client/api/{m}.py"] for m in used_apis]
while todo:
    for cls in set(word.findall(todo.pop())):
        module = by_class.get(cls)
        if module and module not in keep:
            keep.add(module)
            todo.append(text[f"kubernetes/client/models/{module}.py"])
for module in sorted(set(model_modules) - keep):
    drop.append(f"kubernetes/client/models/{module}.py")

# Test suites shipped inside packages (not importable from the package itself).
for wheel in sorted(wheels.glob("*.whl")):
    with zipfile.ZipFile(wheel) as z:
        for d in sorted({"/".join(n.split("/")[:2]) for n in z.namelist() if n.count("/") >= 2}):
            if d.split("/")[1] in ("test", "tests"):
                drop.append(d)

out.write_text("".join(f"{p}\n" for p in drop))
kept_models = len(keep)
print(f"[image] trim: kubernetes/aio, {len(api_modules) - len(used_apis)} of {len(api_modules)} "
      f"API modules, {len(model_modules) - kept_models} of {len(model_modules)} models; "
      f"kept APIs: {', '.join(sorted(used_apis))}", file=sys.stderr)
EOF
}

# ---------------------------------------------------------------------------
# 3-4. podman build, save
# ---------------------------------------------------------------------------
project_version() {
  "$(host_python)" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
    "${REPO_ROOT}/pyproject.toml"
}

opa_version() {
  "${DIST}/opa/opa" version | sed -n 's/^Version: //p'
}

# Everything the images are made of (the build context the .dockerignore lets through).
input_hash() {
  {
    echo "epoch=${SOURCE_DATE_EPOCH} webhook=${WEBHOOK_IMAGE} opa=${OPA_IMAGE}"
    podman --version
    cd "${REPO_ROOT}"
    find Dockerfile .dockerignore pyproject.toml README.md requirements/image.txt \
      requirements/image-build.txt webhook identity scripts/image.sh dist/trim.txt \
      dist/opa/opa dist/base/runtime.tar dist/base/build.tar \
      -type f ! -path '*/__pycache__/*' ! -name '*.py[co]' -print0 |
      sort -z | xargs -0 sha256sum
  } | sha256
}

image_id() { podman image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }

archive_digest() {
  if command -v skopeo >/dev/null 2>&1; then
    skopeo inspect --format '{{.Digest}}' "oci-archive:$1" 2>/dev/null || echo "?"
  else
    echo "(skopeo not installed)"
  fi
}

push_help() {
  local webhook_ref="$1" opa_ref="$2" webhook_archive="$3" opa_archive="$4"
  local webhook_tag="${webhook_ref##*:}" opa_tag="${opa_ref##*:}"
  cat <<EOF

Push them to a registry your nodes pull from (REGISTRY=registry.example.com/team):

  skopeo copy --digestfile dist/kube-intent.digest \\
    oci-archive:${webhook_archive#"${REPO_ROOT}/"} docker://\${REGISTRY}/kube-intent:${webhook_tag}
  skopeo copy --digestfile dist/kube-intent-opa.digest \\
    oci-archive:${opa_archive#"${REPO_ROOT}/"} docker://\${REGISTRY}/kube-intent-opa:${opa_tag}

then install the chart with them, pinned by the digests the registry answered:

  helm install kube-intent charts/kube-intent -n kube-intent --create-namespace \\
    --set image.repository=\${REGISTRY}/kube-intent --set image.tag=${webhook_tag} \\
    --set image.digest=\$(cat dist/kube-intent.digest) \\
    --set opa.image.repository=\${REGISTRY}/kube-intent-opa --set opa.image.tag=${opa_tag} \\
    --set opa.image.digest=\$(cat dist/kube-intent-opa.digest)
EOF
}

build() {
  local refresh=0 force=0 arg
  for arg in "$@"; do
    case "${arg}" in
      --refresh-base) refresh=1 ;;
      --no-cache) force=1; refresh=1 ;;
      *) die "unknown argument: ${arg}" ;;
    esac
  done
  require podman
  podman_env
  local start=${SECONDS}
  : "${SOURCE_DATE_EPOCH:=$(git -C "${REPO_ROOT}" log -1 --format=%ct 2>/dev/null || echo "${BASE_EPOCH}")}"
  export SOURCE_DATE_EPOCH
  mkdir -p "${DIST}"
  # One build at a time in this work tree (dist/ is shared).
  exec 9>"${DIST}/.lock"
  flock 9

  ensure_base runtime "${refresh}"
  ensure_base build "${refresh}"
  if [[ ! -x "${REPO_ROOT}/.tools/bin/opa" ]]; then
    log "building the pinned OPA (scripts/tools.sh opa)"
    "${REPO_ROOT}/scripts/tools.sh" opa >&2
  fi
  mkdir -p "${DIST}/opa"
  cp -f "${REPO_ROOT}/.tools/bin/opa" "${DIST}/opa/opa.tmp" && mv -f "${DIST}/opa/opa.tmp" "${DIST}/opa/opa"
  log "wheels (requirements/image.txt, requirements/image-build.txt)"
  fetch_wheels
  make_trim_list

  local version opa_ver inputs webhook_ref opa_ref webhook_archive opa_archive
  version="$(project_version)"
  opa_ver="$(opa_version)"
  webhook_ref="${WEBHOOK_IMAGE}:${version}"
  opa_ref="${OPA_IMAGE}:${opa_ver}"
  webhook_archive="${DIST}/kube-intent-${version}.oci.tar"
  opa_archive="${DIST}/kube-intent-opa-${opa_ver}.oci.tar"
  inputs="$(input_hash)"

  if [[ "${force}" == 0 && -f "${DIST}/images.env" && -f "${webhook_archive}" && -f "${opa_archive}" ]] &&
     grep -qxF "INPUTS=${inputs}" "${DIST}/images.env" &&
     grep -qxF "WEBHOOK_IMAGE_ID=$(image_id "${webhook_ref}")" "${DIST}/images.env" &&
     grep -qxF "OPA_IMAGE_ID=$(image_id "${opa_ref}")" "${DIST}/images.env"; then
    log "images up to date (inputs ${inputs:0:16}): nothing to build"
  else
    local revision common
    revision="$(git -C "${REPO_ROOT}" rev-parse HEAD 2>/dev/null || echo unknown)"
    # --layers=false: podman's layer cache does not key on --timestamp, and would hand back
    # layers stamped with another SOURCE_DATE_EPOCH (the INPUTS check above is the cache).
    common=(--file "${REPO_ROOT}/Dockerfile" --pull=never --network=none --layers=false
      --timestamp "${SOURCE_DATE_EPOCH}" --build-arg "SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH}"
      --label "org.opencontainers.image.revision=${revision}")
    local previous=("$(image_id "${webhook_ref}")" "$(image_id "${opa_ref}")")
    log "podman build ${opa_ref} (SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH})"
    podman build "${common[@]}" --target opa --tag "${opa_ref}" \
      --label "org.opencontainers.image.version=${opa_ver}" "${REPO_ROOT}" >&2
    log "podman build ${webhook_ref}"
    podman build "${common[@]}" --target webhook --tag "${webhook_ref}" \
      --label "org.opencontainers.image.version=${version}" "${REPO_ROOT}" >&2
    # The images these replaced, once untagged (only ours: never a prune of the whole store).
    local id
    for id in "${previous[@]}"; do
      if [[ -n "${id}" && "$(podman image inspect --format '{{len .RepoTags}}' "${id}" 2>/dev/null)" == 0 ]]; then
        podman rmi "${id}" >/dev/null 2>&1 || true
      fi
    done
    local ref archive
    for ref in "${webhook_ref}" "${opa_ref}"; do
      if [[ "${ref}" == "${webhook_ref}" ]]; then archive="${webhook_archive}"; else archive="${opa_archive}"; fi
      rm -f "${archive}"
      podman save --quiet --format oci-archive -o "${archive}.tmp" "${ref}"
      mv -f "${archive}.tmp" "${archive}"
    done
    cat >"${DIST}/images.env.tmp" <<EOF
INPUTS=${inputs}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH}
CONTAINERS_CONF=${CONTAINERS_CONF}
WEBHOOK_IMAGE=${webhook_ref}
WEBHOOK_IMAGE_ID=$(image_id "${webhook_ref}")
WEBHOOK_ARCHIVE=${webhook_archive}
OPA_IMAGE=${opa_ref}
OPA_IMAGE_ID=$(image_id "${opa_ref}")
OPA_ARCHIVE=${opa_archive}
EOF
    mv -f "${DIST}/images.env.tmp" "${DIST}/images.env"
  fi

  local ref
  for ref in "${webhook_ref}" "${opa_ref}"; do
    podman image inspect --format "[image] ${ref}: {{.Id}} ({{.Size}} bytes)" "${ref}" >&2
  done
  log "archives: ${webhook_archive#"${REPO_ROOT}/"} $(du -h "${webhook_archive}" | cut -f1) manifest $(archive_digest "${webhook_archive}")"
  log "          ${opa_archive#"${REPO_ROOT}/"} $(du -h "${opa_archive}" | cut -f1) manifest $(archive_digest "${opa_archive}")"
  log "done in $((SECONDS - start))s"
  push_help "${webhook_ref}" "${opa_ref}" "${webhook_archive}" "${opa_archive}"
}

# ---------------------------------------------------------------------------
# lock: pin the image's Python dependencies (with hashes) to .venv's versions
# ---------------------------------------------------------------------------
lock() {
  local py="${REPO_ROOT}/.venv/bin/python" tmp
  [[ -x "${py}" ]] || die ".venv is missing: run scripts/bootstrap.sh first"
  tmp="$(mktemp -d)"
  trap 'rm -rf "${tmp}"' RETURN
  "${py}" -m pip freeze --all --exclude-editable >"${tmp}/venv.txt"
  grep -v -i -E '^(setuptools|wheel)==' "${tmp}/venv.txt" >"${tmp}/constraints.txt"
  "${py}" -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' \
    "${REPO_ROOT}/pyproject.toml" >"${tmp}/runtime.in"
  # pip runs the build stage (from its wheel); setuptools builds the project's wheel.
  "${py}" -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["build-system"]["requires"]))' \
    "${REPO_ROOT}/pyproject.toml" >"${tmp}/build.in"
  grep -i '^pip==' "${tmp}/venv.txt" >>"${tmp}/build.in"
  local kind
  for kind in runtime build; do
    local constraints=()
    [[ "${kind}" == runtime ]] && constraints=(-c "${tmp}/constraints.txt")
    "${py}" -m pip install --quiet --disable-pip-version-check --dry-run --ignore-installed \
      "${PIP_PLATFORM[@]}" --target "${tmp}/target" "${constraints[@]}" \
      --report "${tmp}/${kind}.json" -r "${tmp}/${kind}.in"
  done
  "${py}" - "${tmp}" "${REPO_ROOT}/requirements" <<'EOF'
import json, re, sys
from pathlib import Path
tmp, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(exist_ok=True)
heads = {
    "runtime": ("image.txt", "Runtime dependencies of the kube-intent image"),
    "build": ("image-build.txt", "What the image's build stage runs: pip (from its wheel) and the build backend"),
}
for kind, (name, title) in heads.items():
    report = json.loads((tmp / f"{kind}.json").read_text())
    lines = [
        f"# {title},",
        "# pinned with hashes for linux x86_64, CPython 3.11 (Debian bookworm's python3.11).",
        "# Generated by `scripts/image.sh lock` from the versions in .venv (what the tests run);",
        "# do not edit by hand. Used with pip --require-hashes by scripts/image.sh and the Dockerfile.",
    ]
    entries = []
    for item in report["install"]:
        meta, info = item["metadata"], item["download_info"]
        digest = info["archive_info"]["hashes"]["sha256"]
        entries.append((re.sub(r"[-_.]+", "-", meta["name"]).lower(), meta["version"], digest))
    for pkg, version, digest in sorted(entries):
        lines.append(f"{pkg}=={version} \\\n    --hash=sha256:{digest}")
    (out / name).write_text("\n".join(lines) + "\n")
    print(f"[image] wrote requirements/{name}: {len(entries)} packages", file=sys.stderr)
EOF
}

case "${1:-build}" in
  -h | --help | help) sed -n '2,/^set -euo/p' "${SELF}" | sed '$d; s/^# \{0,1\}//' ;;
  build) shift || true; build "$@" ;;
  --*) build "$@" ;;
  lock) lock ;;
  env) podman_env; echo "export CONTAINERS_CONF=${CONTAINERS_CONF}" ;;
  _build_base) build_base "$2" "$3" ;;
  _base_hook) base_hook "$2" "$3" ;;
  *) die "unknown command: $1 (see scripts/image.sh --help)" ;;
esac
