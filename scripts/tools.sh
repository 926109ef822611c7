#!/usr/bin/env bash
# scripts/tools.sh — put pinned third-party binaries into <repo>/.tools/bin/.
#
# Usage:
#   scripts/tools.sh              # all tools (opa, etcd, helm, promtool, kube-apiserver, kube-controller-manager)
#   scripts/tools.sh opa          # only opa (all the unit/integration tests need)
#   scripts/tools.sh promtool     # checks the chart's PrometheusRule and dashboard queries
#   scripts/tools.sh etcd helm    # any subset; kube-apiserver / kube-controller-manager / kubernetes
#                                 # all select the one kubernetes wrapper module
#   scripts/tools.sh vegeta       # the load generator bench/bench.py uses (only when asked for)
#
# Why build from source: this project's machines (and CI) can reach package
# registries, including the Go module proxy, but not GitHub release downloads.
# So every tool is compiled from its Go module, pinned by a small wrapper
# module under tools/<name>/ (go.mod + go.sum + tools.go). One wrapper per
# tool keeps their dependency graphs from colliding (helm, etcd and kube all
# pull in different versions of the same k8s/grpc/otel libraries).
#
# Why it is fast the second time: each build lands in a cache directory
#   ${KUBE_INTENT_TOOLS_CACHE:-$HOME/.cache/kube-intent/tools}/<tool>-<version>-<hash>/
# outside the work tree, keyed by a hash of the wrapper's go.mod + go.sum and
# of the build recipe below. A fresh clone (which is how CI runs) finds the
# binaries there and only hard-links/copies them into .tools/bin/. Go's own
# module and build caches (~/go/pkg/mod, ~/.cache/go-build) make even a cache
# miss cheaper when only the recipe changed.
#
# Environment:
#   KUBE_INTENT_TOOLS_CACHE   cache root (default: $HOME/.cache/kube-intent/tools)
#   GO                        go binary to use (default: go on PATH, else /usr/local/go/bin/go)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_SRC="${REPO_ROOT}/tools"
BIN_DIR="${REPO_ROOT}/.tools/bin"
CACHE_ROOT="${KUBE_INTENT_TOOLS_CACHE:-${HOME}/.cache/kube-intent/tools}"

# Pinned versions: tools/versions.env, the one place they are written.
# shellcheck source=../tools/versions.env
source "${TOOLS_SRC}/versions.env"

# Build order: opa first, because it is all most test runs need; the kube
# build (10+ minutes on 2 cores) last.
ALL_TOOLS=(opa etcd helm promtool kubernetes)
# Built only when named: the benchmark's load generator (no test needs it).
EXTRA_TOOLS=(vegeta)

# ---------------------------------------------------------------------------
# Per-tool recipe: version, binaries (name=main package), ldflags, and the
# command + expected output used to check a freshly built binary.
# ---------------------------------------------------------------------------
tool_version() {
  case "$1" in
    opa) echo "${OPA_VERSION}" ;;
    etcd) echo "${ETCD_VERSION}" ;;
    helm) echo "${HELM_VERSION}" ;;
    kubernetes) echo "${KUBE_VERSION}" ;;
    vegeta) echo "${VEGETA_VERSION}" ;;
    promtool) echo "${PROMTOOL_VERSION}" ;;
  esac
}

# "binary=main-package" pairs. Packages of one tool are built by a single
# `go build` so they share compilation (kube-apiserver and
# kube-controller-manager have most of their packages in common).
tool_binaries() {
  case "$1" in
    opa) echo "opa=github.com/open-policy-agent/opa" ;;
    etcd) echo "etcd=go.etcd.io/etcd/server/v3" ;;
    helm) echo "helm=helm.sh/helm/v3/cmd/helm" ;;
    kubernetes)
      echo "kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver"
      echo "kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager"
      ;;
    vegeta) echo "vegeta=github.com/tsenart/vegeta/v12" ;;
    promtool) echo "promtool=github.com/prometheus/prometheus/cmd/promtool" ;;
  esac
}

# Extra -X flags, so the binaries report the pinned version rather than a
# placeholder. For kube this matters beyond cosmetics: the API server's
# /version (which clients, kubectl and helm act on) comes from these.
tool_ldflags() {
  local kv="${KUBE_VERSION#v}" x=()
  case "$1" in
    opa)
      # OPA v1 keeps its version in the v1/version package (already
      # defaults to the release, but set it explicitly so it cannot drift).
      x+=("-X github.com/open-policy-agent/opa/v1/version.Version=${OPA_VERSION#v}")
      ;;
    etcd)
      # etcd's version is a constant in go.etcd.io/etcd/api/v3/version;
      # the only -X variable (GitSHA) needs a git checkout we do not have.
      ;;
    helm)
      local hv=helm.sh/helm/v3
      # k8sVersionMajor/Minor mirror helm's Makefile (derived from the
      # client-go it is built with, v0.34 -> 1.34); without them
      # `helm template` assumes .Capabilities.KubeVersion = v1.20.0.
      x+=("-X ${hv}/internal/version.version=${HELM_VERSION}"
          "-X ${hv}/internal/version.gitCommit=${HELM_GIT_COMMIT}"
          "-X ${hv}/internal/version.gitTreeState=clean"
          "-X ${hv}/pkg/lint/rules.k8sVersionMajor=1"
          "-X ${hv}/pkg/lint/rules.k8sVersionMinor=34"
          "-X ${hv}/pkg/chartutil.k8sVersionMajor=1"
          "-X ${hv}/pkg/chartutil.k8sVersionMinor=34")
      ;;
    kubernetes)
      # Same variables as upstream hack/lib/version.sh sets, in both packages.
      local pkg
      for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        x+=("-X ${pkg}.gitVersion=${KUBE_VERSION}"
            "-X ${pkg}.gitMajor=${kv%%.*}"
            "-X ${pkg}.gitMinor=$(echo "${kv}" | cut -d. -f2)"
            "-X ${pkg}.gitTreeState=clean"
            "-X ${pkg}.buildDate=${KUBE_BUILD_DATE}")
      done
      ;;
    vegeta)
      # main.Version/Commit/Date are what its Makefile stamps (from git, which we do not have).
      x+=("-X main.Version=${VEGETA_VERSION}")
      ;;
    promtool)
      # What Prometheus' Makefile (promu) stamps; the revision is the tag (no git checkout).
      local pv=github.com/prometheus/common/version
      x+=("-X ${pv}.Version=${PROMTOOL_RELEASE}"
          "-X ${pv}.Revision=${PROMTOOL_VERSION}"
          "-X ${pv}.Branch=HEAD")
      ;;
  esac
  echo "-s -w ${x[*]:-}"
}

# How to check a binary: "<args>|<line its output must contain exactly>"
# (whole-line match, so e.g. opa 1.22.30 is not taken for 1.22.3).
binary_check() {
  case "$1" in
    opa) echo "version|Version: ${OPA_VERSION#v}" ;;
    etcd) echo "--version|etcd Version: ${ETCD_VERSION#v}" ;;
    helm) echo "version --template {{.Version}}|${HELM_VERSION}" ;;
    kube-apiserver | kube-controller-manager) echo "--version|Kubernetes ${KUBE_VERSION}" ;;
    vegeta) echo "-version|Version: ${VEGETA_VERSION}" ;;
    promtool) echo "--version|promtool, version ${PROMTOOL_RELEASE} (branch: HEAD, revision: ${PROMTOOL_VERSION})" ;;
  esac
}

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------
log() { printf '[tools] %s\n' "$*"; }
BUILD_TMP=""
# shellcheck disable=SC2329  # invoked via the EXIT trap below
cleanup() { if [[ -n "${BUILD_TMP}" ]]; then rm -rf "${BUILD_TMP}"; fi; }
trap cleanup EXIT
# Turn INT/TERM into a normal exit so the EXIT trap (cleanup) runs for them too.
trap 'exit 130' INT
trap 'exit 143' TERM
die() { printf '[tools] ERROR: %s\n' "$*" >&2; exit 1; }

find_go() {
  if [[ -n "${GO:-}" ]]; then echo "${GO}"; return; fi
  if command -v go >/dev/null 2>&1; then command -v go; return; fi
  if [[ -x /usr/local/go/bin/go ]]; then echo /usr/local/go/bin/go; return; fi
  die "no Go toolchain found (set GO=/path/to/go or put go on PATH)"
}

sha256() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum | cut -c1-64
  else shasum -a 256 | cut -c1-64; fi
}

# True if running the binary with the check args prints the expected line.
binary_ok() {
  local path="$1" name="$2" spec args want out
  spec="$(binary_check "${name}")"
  args="${spec%%|*}"
  want="${spec#*|}"
  [[ -x "${path}" ]] || return 1
  # shellcheck disable=SC2086  # args is a fixed word list from binary_check
  out="$("${path}" ${args} 2>&1)" || return 1
  grep -qxF -- "${want}" <<<"${out}"
}

# Cache key: wrapper go.mod + go.sum (what gets built) plus the recipe (how:
# package list, ldflags, Go version, target platform), so changing a flag or
# upgrading Go does not silently reuse a stale binary.
cache_key() {
  local tool="$1" dir="${TOOLS_SRC}/$1"
  {
    cat "${dir}/go.mod" "${dir}/go.sum"
    tool_binaries "${tool}"
    tool_ldflags "${tool}"
    # Asked from inside the wrapper: that is the toolchain `go build` will use
    # there (GOTOOLCHAIN may switch on the go.mod's go line).
    (cd "${dir}" && "${GO_BIN}" env GOVERSION GOOS GOARCH)
    echo "CGO_ENABLED=0 -trimpath"
  } | sha256 | cut -c1-16
}

# Put one cached binary into .tools/bin: hard link when the cache is on the
# same filesystem (instant, no extra disk for the ~100 MB kube binaries),
# copy otherwise. Replace atomically so a running test never sees half a file.
install_binary() {
  local src="$1" name="$2" dst="${BIN_DIR}/$2"
  if [[ -e "${dst}" && ! -L "${dst}" && "${src}" -ef "${dst}" ]]; then return; fi
  if ! ln -f "${src}" "${dst}.tmp.$$" 2>/dev/null; then
    cp -f "${src}" "${dst}.tmp.$$"
  fi
  mv -f "${dst}.tmp.$$" "${dst}"
}

# ---------------------------------------------------------------------------
# Build one tool (all its binaries) into the cache unless already there.
# Sets RESULT_STATUS / RESULT_SECONDS for the summary.
# ---------------------------------------------------------------------------
ensure_tool() {
  local tool="$1" version key cache_dir tmp pairs pair name start ldflags
  version="$(tool_version "${tool}")"
  [[ -f "${TOOLS_SRC}/${tool}/go.mod" && -f "${TOOLS_SRC}/${tool}/go.sum" ]] ||
    die "${tool}: wrapper module tools/${tool}/ (go.mod + go.sum) is missing"

  mapfile -t pairs < <(tool_binaries "${tool}")
  : "${GO_BIN:=$(find_go)}"
  key="$(cache_key "${tool}")"
  cache_dir="${CACHE_ROOT}/${tool}-${version}-${key}"
  RESULT_SECONDS=0

  if [[ -d "${cache_dir}" ]]; then
    RESULT_STATUS="cached"
  else
    log "${tool} ${version}: building (cache miss: ${cache_dir})"
    if [[ "${tool}" == kubernetes ]]; then
      log "  (kube-apiserver + kube-controller-manager: 10+ minutes on 2 cores when Go's build cache is cold)"
    fi
    mkdir -p "${CACHE_ROOT}"
    # Build in a temp dir and rename at the end, so an interrupted or failed
    # build never leaves a cache entry that a later run would trust.
    tmp="$(mktemp -d "${CACHE_ROOT}/.build-${tool}-XXXXXX")"
    BUILD_TMP="${tmp}" # removed by the EXIT trap if we fail or are interrupted
    ldflags="$(tool_ldflags "${tool}")"
    local pkgs=() out
    for pair in "${pairs[@]}"; do pkgs+=("${pair#*=}"); done
    if ((${#pairs[@]} == 1)); then
      out="${tmp}/${pairs[0]%%=*}"
    else
      out="${tmp}/" # multiple packages: go names each after its import path
    fi
    start=$SECONDS
    # -mod=readonly: build exactly what the committed go.mod/go.sum say; a
    # missing go.sum entry fails loudly instead of being resolved on the fly.
    if ! (cd "${TOOLS_SRC}/${tool}" &&
          CGO_ENABLED=0 "${GO_BIN}" build -mod=readonly -p 2 -trimpath \
            -ldflags "${ldflags}" -o "${out}" "${pkgs[@]}") >"${tmp}/build.log" 2>&1; then
      local failed_log="${CACHE_ROOT}/${tool}-${version}-${key}.failed.log"
      mv -f "${tmp}/build.log" "${failed_log}"
      printf '[tools] ERROR: building %s %s failed after %ss. Last lines of %s:\n' \
        "${tool}" "${version}" "$((SECONDS - start))" "${failed_log}" >&2
      tail -n 40 "${failed_log}" >&2
      printf '[tools] (if go.sum is incomplete: cd tools/%s && go mod tidy)\n' "${tool}" >&2
      exit 1
    fi
    RESULT_SECONDS=$((SECONDS - start))
    for pair in "${pairs[@]}"; do
      name="${pair%%=*}"
      binary_ok "${tmp}/${name}" "${name}" ||
        die "${tool}: built ${name} does not print '$(binary_check "${name}" | cut -d'|' -f2)' for '$(binary_check "${name}" | cut -d'|' -f1)'"
    done
    rm -f "${tmp}/build.log" "${CACHE_ROOT}/${tool}-${version}-${key}.failed.log"
    # Another run may have finished the same build meanwhile: keep theirs.
    if ! mv -T "${tmp}" "${cache_dir}" 2>/dev/null; then rm -rf "${tmp}"; fi
    BUILD_TMP=""
    RESULT_STATUS="built"
  fi

  mkdir -p "${BIN_DIR}"
  for pair in "${pairs[@]}"; do
    name="${pair%%=*}"
    [[ -x "${cache_dir}/${name}" ]] || die "${tool}: cache entry ${cache_dir} lacks ${name}; delete that directory and rerun"
    install_binary "${cache_dir}/${name}" "${name}"
  done
}

# opa: a developer who already has exactly the pinned OPA on PATH should not
# have to compile it; symlink theirs instead. Anything else -> build.
use_opa_from_path() {
  local p
  p="$(command -v opa 2>/dev/null)" || return 1
  p="$(readlink -m "${p}")"
  # Never "reuse" our own output (e.g. when .tools/bin is on PATH).
  [[ "${p}" != "$(readlink -m "${BIN_DIR}")"/* && "${p}" != "$(readlink -m "${CACHE_ROOT}")"/* ]] || return 1
  binary_ok "${p}" opa || return 1
  mkdir -p "${BIN_DIR}"
  rm -f "${BIN_DIR}/opa" # may be a hard link into the cache from an earlier build
  ln -s "${p}" "${BIN_DIR}/opa"
  log "opa ${OPA_VERSION}: using ${p} from PATH (symlinked)"
}

# Map command-line names (tools or binary names) to wrapper modules.
resolve_tool() {
  case "$1" in
    opa | etcd | helm | kubernetes) echo "$1" ;;
    kube | kube-apiserver | kube-controller-manager) echo kubernetes ;;
    vegeta) echo vegeta ;;
    promtool) echo promtool ;;
    *) die "unknown tool '$1' (known: opa etcd helm promtool kube-apiserver kube-controller-manager vegeta)" ;;
  esac
}

main() {
  local requested=() tool arg t summary=() bins status
  case "${1:-}" in -h | --help) sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;; esac

  if (($# == 0)); then
    requested=("${ALL_TOOLS[@]}")
  else
    # Keep ALL_TOOLS order (opa first) and drop duplicates.
    local wanted=" "
    for arg in "$@"; do wanted+="$(resolve_tool "${arg}") "; done
    for t in "${ALL_TOOLS[@]}" "${EXTRA_TOOLS[@]}"; do
      if [[ "${wanted}" == *" ${t} "* ]]; then requested+=("${t}"); fi
    done
  fi

  # Go is looked up lazily (ensure_tool): symlinking an opa from PATH needs none.
  GO_BIN="${GO:-}"

  local total_start=$SECONDS
  for tool in "${requested[@]}"; do
    if [[ "${tool}" == opa ]] && use_opa_from_path; then
      summary+=("$(printf '%-11s %-9s %s' opa "${OPA_VERSION}" "from PATH")")
      continue
    fi
    ensure_tool "${tool}"
    bins="$(tool_binaries "${tool}" | cut -d= -f1 | paste -sd' ')"
    if [[ "${RESULT_STATUS}" == built ]]; then
      status="built in ${RESULT_SECONDS}s"
    else
      status="cached"
    fi
    log "${tool} $(tool_version "${tool}"): ${status} -> .tools/bin/ (${bins})"
    summary+=("$(printf '%-11s %-9s %s' "${tool}" "$(tool_version "${tool}")" "${status}")")
  done

  log "done in $((SECONDS - total_start))s; binaries in ${BIN_DIR}"
  printf '[tools]   %s\n' "${summary[@]}"
}

# `exit` on the same line: bash reads scripts lazily, so this keeps a run
# from executing stray text if the file is rewritten (git pull) meanwhile.
main "$@"; exit
