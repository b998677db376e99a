#!/usr/bin/env bash
# Builds (or fetches from cache) the pinned binaries the local test cluster runs:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl  <- k8s.io/kubernetes@$KUBERNETES_VERSION
#   etcd                                                              <- go.etcd.io/etcd/server/v3@$ETCD_VERSION
#   kwok, kwokctl                                                     <- sigs.k8s.io/kwok@$KWOK_VERSION
# With --kind, also what the offline kind node image holds (hack/kind/node-image.sh):
#   kubelet, kubeadm, kube-proxy                                      <- k8s.io/kubernetes@$KUBERNETES_VERSION
#   coredns, local-path-provisioner, crictl, kind                     <- their Go modules (hack/versions.env)
#   pause                                                             <- build/pause/linux/pause.c (gcc -static)
# With --karpenter, also what tests/integration/karpenter_process.py runs (hack/versions.env: KARPENTER_*):
#   karpenter-kwok       <- sigs.k8s.io/karpenter/kwok@$KARPENTER_VERSION (the controller with its KWOK cloud provider),
#                           built with Go $KARPENTER_GOTOOLCHAIN, which its go.mod requires (GOTOOLCHAIN fetches it)
#   karpenter-crds.yaml  <- the module's pkg/apis/crds/ and kwok/apis/crds/ (NodePool, NodeClaim, KWOKNodeClass, ...)
#   Measured on the shared 2-core VM: cold (empty Go build cache) ~6 min, from the shared cache under a second
#   (CONTRIBUTING.md#karpenter).
# With --kueue, also the Kueue manager the integration tests run against the cluster (tests/integration/kueue.py):
#   kueue                                                             <- sigs.k8s.io/kueue/cmd/kueue@$KUEUE_VERSION
#   and .cache/cluster/kueue-crds -> that module's config/components/crd/bases (CRDs from the module, not copies)
#   Measured on the shared 2-core VM: cold (empty Go build cache) 8 CPU-minutes (25 min wall at load ~15),
#   warm Go build cache 12 s, from the shared binary cache < 1 s.
# All from source through the Go module proxy (the only binary source this project may use).
# etcd comes from its Go module rather than Debian's `etcd-server` (3.4.23, older than the 3.5 line
# Kubernetes 1.33 is tested against) or PyPI (no etcd server there); ETCD_VERSION is the one
# k8s.io/kubernetes itself requires, so client and server match.
#
# Output: prints the bin directory holding the binaries (last line of stdout).
# Caches, in lookup order: $ROOT/.cache/bin/<component>-<version>/ (per checkout), then
# $FINETUNE_SHARED_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/finetune-operator/bin/…, shared by
# every clone on the machine, e.g. CI's fresh clone), then a build (Go's build cache makes rebuilds cheap).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=hack/versions.env
source "$ROOT/hack/versions.env"

source "$ROOT/hack/cache.sh"
BIN="$CACHE/cluster/bin"

log() { echo "[cluster/build] $*" >&2; }

# A throwaway module that requires k8s.io/kubernetes and maps its staging modules (which its go.mod
# points at ./staging/src/…, unusable from the module cache) to the published k8s.io/* v0.<minor>.<patch>.
# build_kubernetes <out> <cmd...>
build_kubernetes() {
  local out="$1" mod="$CACHE/build/kubernetes-$KUBERNETES_VERSION"
  shift
  local staging="v0.${KUBERNETES_VERSION#v1.}"
  mkdir -p "$mod"
  if [[ ! -f "$mod/go.mod" ]] || ! grep -q "k8s.io/kubernetes $KUBERNETES_VERSION" "$mod/go.mod"; then
    log "kubernetes: generating build module in $mod (staging modules -> $staging)"
    local upstream
    upstream="$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
    {
      echo "module finetune-operator.local/kubernetes-build"
      echo
      echo "go $(awk '$1 == "go" {print $2; exit}' "$upstream")"
      echo
      echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
      echo
      awk -v v="$staging" '$2 == "=>" && $3 ~ /^\.\/staging\// {print "replace " $1 " => " $1 " " v}' "$upstream"
    } >"$mod/go.mod"
    rm -f "$mod/go.sum"
  fi
  local pkg="k8s.io/component-base/version" minor="${KUBERNETES_VERSION#v1.}"
  minor="${minor%%.*}"
  local ldflags="-s -w -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION"
  local cmds=("$@")
  log "kubernetes: go build ${cmds[*]} (one build graph, so packages and links run in parallel)"
  (cd "$mod" && "${NICE[@]}" go build -mod=mod -trimpath -ldflags "$ldflags" -o "$out/" \
    "${cmds[@]/#/k8s.io/kubernetes/cmd/}")
}

build_etcd() {
  local out="$1" mod="$CACHE/build/etcd-$ETCD_VERSION"
  mkdir -p "$mod"
  if [[ ! -f "$mod/go.mod" ]] || ! grep -q "server/v3 $ETCD_VERSION" "$mod/go.mod"; then
    log "etcd: generating build module in $mod"
    printf 'module finetune-operator.local/etcd-build\n\ngo 1.23\n\nrequire go.etcd.io/etcd/server/v3 %s\n' \
      "$ETCD_VERSION" >"$mod/go.mod"
    rm -f "$mod/go.sum"
  fi
  log "etcd: go build go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  (cd "$mod" && "${NICE[@]}" go build -mod=mod -trimpath -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3)
}

build_kwok() {
  local out="$1" cmd
  local ldflags="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}"
  ldflags+=" -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${KUBERNETES_VERSION#v}"
  for cmd in kwok kwokctl; do
    log "kwok: go install sigs.k8s.io/kwok/cmd/$cmd@$KWOK_VERSION"
    GOBIN="$out" "${NICE[@]}" go install -trimpath -ldflags "$ldflags" "sigs.k8s.io/kwok/cmd/$cmd@$KWOK_VERSION"
  done
}

build_karpenter() {
  local out="$1" pkg="sigs.k8s.io/karpenter" dir
  local -x GOTOOLCHAIN="$KARPENTER_GOTOOLCHAIN"  # this build only; the others stay on the local Go
  log "karpenter: go install $pkg/kwok@$KARPENTER_VERSION (Go $GOTOOLCHAIN)"
  GOBIN="$out/.gobin" "${NICE[@]}" go install -trimpath \
    -ldflags "-s -w -X $pkg/pkg/operator.Version=$KARPENTER_VERSION" "$pkg/kwok@$KARPENTER_VERSION"
  mv "$out/.gobin/kwok" "$out/karpenter-kwok" && rmdir "$out/.gobin"  # `kwok` would shadow KWOK's own binary
  dir="$(go mod download -json "$pkg@$KARPENTER_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  local crd
  for crd in "$dir"/pkg/apis/crds/*.yaml "$dir"/kwok/apis/crds/*.yaml; do echo "---"; cat "$crd"; done \
    >"$out/karpenter-crds.yaml"
  chmod 755 "$out/karpenter-crds.yaml"  # hack/cache.sh caches files it finds executable
}

build_control_plane() { build_kubernetes "$1" kube-apiserver kube-controller-manager kube-scheduler kubectl; }
build_node() { build_kubernetes "$1" kubelet kubeadm kube-proxy; }

# go_install <out> <package@version>: a tool whose module builds as published.
go_install() {
  log "go install $2"
  GOBIN="$1" "${NICE[@]}" go install -trimpath -ldflags "-s -w" "$2"
}
build_coredns() { go_install "$1" "github.com/coredns/coredns@$COREDNS_VERSION"; }
build_local_path() { go_install "$1" "github.com/rancher/local-path-provisioner@$LOCAL_PATH_PROVISIONER_VERSION"; }
build_crictl() { go_install "$1" "sigs.k8s.io/cri-tools/cmd/crictl@$CRI_TOOLS_VERSION"; }
build_kind() { go_install "$1" "sigs.k8s.io/kind@$KIND_VERSION"; }

# The pause container Kubernetes ships, compiled from the copy in the k8s.io/kubernetes module.
build_pause() {
  local src
  src="$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')/build/pause/linux/pause.c"
  log "pause: gcc -static $src"
  gcc -Os -static -Wall -Werror -DVERSION="v$PAUSE_VERSION" -o "$1/pause" "$src"
}

# Kueue's release ldflags (its Makefile's LD_FLAGS), so `kueue --version`-style logs name the pinned version.
build_kueue() {
  local pkg="sigs.k8s.io/kueue/pkg/version"
  log "kueue: go install sigs.k8s.io/kueue/cmd/kueue@$KUEUE_VERSION"
  GOBIN="$1" "${NICE[@]}" go install -trimpath \
    -ldflags "-s -w -X $pkg.GitVersion=$KUEUE_VERSION -X $pkg.BuildDate=1970-01-01T00:00:00Z" \
    "sigs.k8s.io/kueue/cmd/kueue@$KUEUE_VERSION"
}

# Links $CACHE/cluster/kueue-crds to the CRD manifests in the Kueue module (downloaded into Go's module cache).
link_kueue_crds() {
  local dir
  dir="$(go mod download -json "sigs.k8s.io/kueue@$KUEUE_VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')/config/components/crd/bases"
  [[ -d "$dir" ]] || { log "kueue: no CRDs at $dir"; exit 1; }
  ln -sfn "$dir" "$CACHE/cluster/kueue-crds"
}

kind=false kueue=false karpenter=false
for arg in "$@"; do
  case "$arg" in
    --kind) kind=true ;;
    --kueue) kueue=true ;;
    --karpenter) karpenter=true ;;
    *) log "unknown argument $arg (expected --kind, --kueue, --karpenter)"; exit 2 ;;
  esac
done

fetch_or_build "etcd-$ETCD_VERSION" build_etcd etcd
fetch_or_build "kwok-$KWOK_VERSION" build_kwok kwok kwokctl
fetch_or_build "kubernetes-$KUBERNETES_VERSION" build_control_plane kube-apiserver kube-controller-manager kube-scheduler kubectl
if $karpenter; then
  fetch_or_build "karpenter-$KARPENTER_VERSION" build_karpenter karpenter-kwok karpenter-crds.yaml
fi
if $kind; then
  fetch_or_build "kubernetes-node-$KUBERNETES_VERSION" build_node kubelet kubeadm kube-proxy
  fetch_or_build "coredns-$COREDNS_VERSION" build_coredns coredns
  fetch_or_build "local-path-provisioner-$LOCAL_PATH_PROVISIONER_VERSION" build_local_path local-path-provisioner
  fetch_or_build "crictl-$CRI_TOOLS_VERSION" build_crictl crictl
  fetch_or_build "kind-$KIND_VERSION" build_kind kind
  fetch_or_build "pause-$PAUSE_VERSION" build_pause pause
fi
if $kueue; then
  fetch_or_build "kueue-$KUEUE_VERSION" build_kueue kueue
  link_kueue_crds
fi
echo "$BIN"
