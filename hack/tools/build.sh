#!/usr/bin/env bash
# Builds (or fetches from cache) the pinned tools the chart's tests run (`hack/tools/build.sh`):
#   helm         <- helm.sh/helm/v3/cmd/helm@$HELM_VERSION
#   kubeconform  <- github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION
#   promtool     <- github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION
#   fluxcel      <- hack/tools/fluxcel (Flux's own CEL health evaluator, github.com/fluxcd/pkg/runtime/cel, pinned in
#                   its go.mod), keyed by a hash of its sources
# or, with --storage, the servers the storage tests talk to (tests/storage_servers.py):
#   versitygw    <- github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION (S3 gateway, posix backend)
#   registry     <- github.com/distribution/distribution/v3/cmd/registry@$DISTRIBUTION_VERSION (CNCF distribution)
# From source through the Go module proxy, with the version ldflags their release builds set (so `helm version`,
# `kubeconform -v` and `promtool --version` tell the truth; helm's default Kubernetes version comes from its
# client-go, as in its Makefile). Caching as in hack/cluster/build.sh (hack/cache.sh). Measured cold on the shared
# 2-core VM: helm 165 s, fluxcel 140 s, promtool about 4 min, kubeconform 8 s; from the shared cache (a fresh clone):
# well under a second.
# Output: prints the bin directory holding the binaries (last line of stdout).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=hack/versions.env
source "$ROOT/hack/versions.env"

source "$ROOT/hack/cache.sh"
BIN="$CACHE/tools/bin"

log() { echo "[tools/build] $*" >&2; }

build_helm() {
  local out="$1" gomod client_go major minor pkg="helm.sh/helm/v3"
  gomod="$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
  client_go="$(awk '$1 == "k8s.io/client-go" {print $2; exit}' "$gomod")"  # v0.<minor>.<patch>
  major=1 minor="${client_go#v0.}" && minor="${minor%%.*}"
  local ldflags="-s -w -X $pkg/internal/version.version=$HELM_VERSION -X $pkg/internal/version.gitTreeState=clean"
  ldflags+=" -X $pkg/pkg/lint/rules.k8sVersionMajor=$major -X $pkg/pkg/lint/rules.k8sVersionMinor=$minor"
  ldflags+=" -X $pkg/pkg/chartutil.k8sVersionMajor=$major -X $pkg/pkg/chartutil.k8sVersionMinor=$minor"
  log "helm: go install $pkg/cmd/helm@$HELM_VERSION (Kubernetes $major.$minor defaults)"
  GOBIN="$out" "${NICE[@]}" go install -trimpath -ldflags "$ldflags" "$pkg/cmd/helm@$HELM_VERSION"
}

build_kubeconform() {
  local out="$1"
  log "kubeconform: go install github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
  GOBIN="$out" "${NICE[@]}" go install -trimpath -ldflags "-s -w -X main.version=$KUBECONFORM_VERSION" \
    "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
}

build_promtool() {
  # Prometheus tags its Go module v0.3MM.P for release 3.MM.P: v0.316.0 is 3.16.0.
  local out="$1" pkg="github.com/prometheus/prometheus" minor="${PROMETHEUS_VERSION#v0.3}"
  local release="3.$((10#${minor%%.*})).${minor#*.}"
  log "promtool: go install $pkg/cmd/promtool@$PROMETHEUS_VERSION (Prometheus $release)"
  GOBIN="$out" "${NICE[@]}" go install -trimpath \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=$release" "$pkg/cmd/promtool@$PROMETHEUS_VERSION"
}

build_fluxcel() {
  local out="$1"
  log "fluxcel: go build hack/tools/fluxcel"
  (cd "$ROOT/hack/tools/fluxcel" && "${NICE[@]}" go build -trimpath -ldflags "-s -w" -o "$out/fluxcel" .)
}

build_versitygw() {
  local out="$1" pkg="github.com/versity/versitygw"
  log "versitygw: go install $pkg/cmd/versitygw@$VERSITYGW_VERSION"
  GOBIN="$out" "${NICE[@]}" go install -trimpath -ldflags "-s -w -X main.Version=$VERSITYGW_VERSION" \
    "$pkg/cmd/versitygw@$VERSITYGW_VERSION"
}

build_registry() {
  local out="$1" pkg="github.com/distribution/distribution/v3"
  log "registry: go install $pkg/cmd/registry@$DISTRIBUTION_VERSION"
  GOBIN="$out" "${NICE[@]}" go install -trimpath \
    -ldflags "-s -w -X $pkg/version.version=$DISTRIBUTION_VERSION" "$pkg/cmd/registry@$DISTRIBUTION_VERSION"
}

if [[ "${1:-}" == --storage ]]; then
  fetch_or_build "versitygw-$VERSITYGW_VERSION" build_versitygw versitygw
  fetch_or_build "registry-$DISTRIBUTION_VERSION" build_registry registry
  echo "$BIN"
  exit 0
fi
fluxcel_key="$(cat "$ROOT"/hack/tools/fluxcel/{go.mod,go.sum,main.go} | sha256sum | cut -c1-12)"
fetch_or_build "fluxcel-$fluxcel_key" build_fluxcel fluxcel
fetch_or_build "kubeconform-$KUBECONFORM_VERSION" build_kubeconform kubeconform
fetch_or_build "helm-$HELM_VERSION" build_helm helm
fetch_or_build "promtool-$PROMETHEUS_VERSION" build_promtool promtool
echo "$BIN"
