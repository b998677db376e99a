#!/usr/bin/env bash
# Build the kind node image offline: `finetune.local/kind-node:<kubernetes version>-<content hash>`.
# `kind build node-image` cannot run here (it pulls etcd, CoreDNS, pause, kindnetd and local-path images), so this
# does its job from local parts only:
#   1. binaries from source (hack/cluster/build.sh --kind): kubelet, kubeadm, kubectl, the control-plane
#      components, etcd, CoreDNS, pause, local-path-provisioner, crictl;
#   2. two Debian root filesystems (debootstrap): the node (systemd, containerd, runc, CNI plugins, iptables) and a
#      small toolbox (iptables, iproute2, kubectl) for kube-proxy, pod networking and local-path's helper pods;
#   3. the images kubeadm and the node's manifests name (registry.k8s.io/kube-apiserver:v1.33.5, …), built with
#      `docker build` from those binaries and imported into the node's containerd, so nothing is ever pulled;
#   4. the node's own files (hack/kind/node/): entrypoint, kubelet unit, containerd config, and the manifests kind
#      applies at cluster creation — pod networking (finetune-cni, in place of kindnetd, whose module is not
#      served) and the default StorageClass.
# Prints the image name (last line of stdout). An existing image with the same tag is kept (REBUILD=1 rebuilds);
# the tag changes whenever a version the node is built from (NODE_PINS) or anything under hack/kind/ changes, not when an
# unrelated pin in hack/versions.env does. Cold: ~10 minutes; warm: seconds.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=hack/versions.env
source "$ROOT/hack/versions.env"
here="$ROOT/hack/kind"
docker=/usr/bin/docker
log() { echo "[kind/node-image] $*" >&2; }

NODE_PINS=(KUBERNETES_VERSION ETCD_VERSION KIND_VERSION COREDNS_VERSION PAUSE_VERSION LOCAL_PATH_PROVISIONER_VERSION
           CRI_TOOLS_VERSION KIND_DEBIAN_SUITE)
hash="$({ for pin in "${NODE_PINS[@]}"; do echo "$pin=${!pin}"; done
          cat "$here"/node-image.sh "$here"/node/* "$here"/toolbox/*; } | sha256sum | cut -c1-12)"
image="finetune.local/kind-node:$KUBERNETES_VERSION-$hash"
toolbox="finetune.local/kind-toolbox:$hash"
local_path="finetune.local/local-path-provisioner:$LOCAL_PATH_PROVISIONER_VERSION"

"$ROOT/hack/docker/start-dockerd.sh" >&2
if [[ "${REBUILD:-0}" != 1 ]] && $docker image inspect "$image" >/dev/null 2>&1; then
  log "$image exists"
  echo "$image"
  exit 0
fi
start=$SECONDS
bin="$("$ROOT/hack/cluster/build.sh" --kind | tail -n1)"
work="$ROOT/.cache/kind/build"
rm -rf "$work"
mkdir -p "$work"

# rootfs <name> <packages>: a Debian root filesystem imported as finetune.local/kind-<name>-rootfs:<suite>-<hash>.
rootfs() {
  local name="$1" packages="$2" tag dir
  tag="finetune.local/kind-$name-rootfs:$KIND_DEBIAN_SUITE-$(echo "$packages" | sha256sum | cut -c1-8)"
  if ! $docker image inspect "$tag" >/dev/null 2>&1; then
    # apt's output goes to stderr: this function's stdout is the tag its caller captures.
    command -v debootstrap >/dev/null ||
      { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; } >&2
    dir="$work/rootfs-$name"
    log "debootstrap $KIND_DEBIAN_SUITE ($name: $packages)"
    debootstrap --variant=minbase --include="$packages" "$KIND_DEBIAN_SUITE" "$dir" \
      "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$work/debootstrap-$name.log"
    chroot "$dir" apt-get clean
    rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/usr/share/doc/* "$dir"/usr/share/man/*
    tar -C "$dir" -c . | $docker import - "$tag" >/dev/null
    rm -rf "$dir"
  fi
  echo "$tag"
}

# image <tag> <base> <entrypoint|-> <file...>: an image holding the files under /usr/local/bin.
image() {
  local tag="$1" base="$2" entrypoint="$3" ctx
  shift 3
  ctx="$work/ctx-${tag//[\/:]/_}"
  mkdir -p "$ctx"
  cp "$@" "$ctx/"
  {
    echo "FROM $base"
    echo "COPY . /usr/local/bin/"
    echo "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    [[ "$entrypoint" == - ]] || echo "ENTRYPOINT [\"/usr/local/bin/$entrypoint\"]"
  } >"$ctx/Dockerfile"
  DOCKER_BUILDKIT=0 $docker build -q -t "$tag" "$ctx" >/dev/null
  images+=("$tag")
}

node_rootfs="$(rootfs node systemd,systemd-sysv,dbus,containerd,runc,containernetworking-plugins,iptables,nftables,conntrack,iproute2,ethtool,ebtables,ipset,kmod,mount,util-linux,libseccomp2,socat,ca-certificates,procps,bash)"
toolbox_rootfs="$(rootfs toolbox iptables,nftables,conntrack,iproute2,ipset,ebtables,kmod,ca-certificates)"

log "images for kubeadm and the node's manifests"
images=()
for cmd in kube-apiserver kube-controller-manager kube-scheduler; do
  image "registry.k8s.io/$cmd:$KUBERNETES_VERSION" scratch - "$bin/$cmd"
done
image "registry.k8s.io/kube-proxy:$KUBERNETES_VERSION" "$toolbox_rootfs" - "$bin/kube-proxy"
image "registry.k8s.io/etcd:${ETCD_VERSION#v}-0" scratch - "$bin/etcd"
image "registry.k8s.io/coredns/coredns:$COREDNS_VERSION" scratch coredns "$bin/coredns"
image "registry.k8s.io/pause:$PAUSE_VERSION" scratch pause "$bin/pause"
image "$local_path" scratch - "$bin/local-path-provisioner"
image "$toolbox" "$toolbox_rootfs" - "$bin/kubectl" "$here/toolbox/finetune-cni"

log "node filesystem"
ctx="$work/node"
mkdir -p "$ctx/manifests"
cp "$here"/node/{entrypoint,*.service,kubelet.slice,10-kubeadm.conf,containerd.toml,Dockerfile} "$ctx/"
cp "$bin"/{kubelet,kubeadm,kubectl,crictl} "$ctx/"
for manifest in default-cni default-storage; do
  sed -e "s|\${TOOLBOX_IMAGE}|$toolbox|g" -e "s|\${LOCAL_PATH_IMAGE}|$local_path|g" \
    "$here/node/$manifest.yaml" >"$ctx/manifests/$manifest.yaml"
done
echo "$KUBERNETES_VERSION" >"$ctx/version"
DOCKER_BUILDKIT=0 $docker build -q --build-arg BASE="$node_rootfs" -t "$image-unloaded" "$ctx" >/dev/null

log "importing ${#images[@]} images into the node's containerd"
$docker save "${images[@]}" -o "$work/images.tar"
builder="finetune-kind-node-build-$$"
trap '$docker rm -f "$builder" >/dev/null 2>&1 || true' EXIT
$docker run -d --name "$builder" --privileged --entrypoint sleep "$image-unloaded" infinity >/dev/null
$docker exec -d "$builder" containerd
for _ in $(seq 60); do
  $docker exec "$builder" ctr version >/dev/null 2>&1 && break
  sleep 1
done
# --no-unpack: the node's /var is a volume at run time, where the CRI plugin unpacks each image on first use.
$docker exec -i "$builder" ctr --namespace=k8s.io images import --no-unpack - <"$work/images.tar" >&2
$docker exec "$builder" pkill containerd || true
$docker commit --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' --change 'CMD []' \
  "$builder" "$image" >/dev/null
$docker rm -f "$builder" >/dev/null
$docker rmi "$image-unloaded" >/dev/null
rm -f "$work/images.tar"
# Older builds of the node and toolbox images (a running cluster keeps its own: docker refuses to remove those).
for old in $($docker images --format '{{.Repository}}:{{.Tag}}' finetune.local/kind-node) \
  $($docker images --format '{{.Repository}}:{{.Tag}}' finetune.local/kind-toolbox); do
  [[ "$old" == "$image" || "$old" == "$toolbox" ]] || $docker rmi "$old" >/dev/null 2>&1 || true
done
log "built $image in $((SECONDS - start))s"
echo "$image"
