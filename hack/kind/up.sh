#!/usr/bin/env bash
# `make kind-up`: the kind cluster from kind-config.yaml, offline. Idempotent: an existing cluster is reused.
#
#   FINETUNE_KIND_CLUSTER (finetune)   cluster name; kubeconfig at .cache/kind/<name>/kubeconfig
#   KIND_NODE_IMAGE                    a node image to use instead of building ours (e.g. kindest/node online)
#   FAKE_GPUS (4)                      nvidia.com/gpu capacity given to each node labelled nvidia.com/gpu.present
#
# 1. Docker Engine (hack/docker/start-dockerd.sh), kind and the node image (hack/kind/node-image.sh).
# 2. kind create cluster, then wait until every node is Ready and CoreDNS and the StorageClass work.
# 3. Fake GPU capacity: nvidia.com/gpu on the worker's status (what NVIDIA's device plugin would report).
# Prints the kubeconfig path (last line of stdout).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
name="${FINETUNE_KIND_CLUSTER:-finetune}"
dir="$ROOT/.cache/kind/$name"
kubeconfig="$dir/kubeconfig"
log() { echo "[kind/up] $*" >&2; }
mkdir -p "$dir"

"$ROOT/hack/docker/start-dockerd.sh" >&2
bin="$("$ROOT/hack/cluster/build.sh" --kind | tail -n1)"
export PATH="$bin:$PATH"
running="$(/usr/bin/docker inspect -f '{{.Config.Image}}' "$name-control-plane" 2>/dev/null || true)"
if [[ -n "${KIND_NODE_IMAGE:-}" ]]; then
  image="$KIND_NODE_IMAGE"
elif [[ -n "$running" && "$running" != finetune.local/kind-node:* ]]; then
  image="$running"  # a cluster the user made from another node image: use it as it is
else
  image="$("$ROOT/hack/kind/node-image.sh" | tail -n1)"
fi

# A cluster on an older build of our node image is recreated; one on any other image (e.g. kindest/node) is kept.
if [[ "$running" == finetune.local/kind-node:* && "$running" != "$image" ]]; then
  log "cluster $name runs $running, not $image: recreating it"
  kind delete cluster --name "$name" >&2
fi
# answers: the cluster's API server is ready within $1 seconds.
answers() {
  local deadline=$((SECONDS + $1))
  until kubectl --kubeconfig "$kubeconfig" get --raw /readyz >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 2
  done
}
# A cluster of ours whose node containers restarted (with Docker or the machine) comes back on new container
# addresses that its kubeadm configuration does not know, and its API server never answers: after 90 s it is
# recreated. Someone else's cluster is never deleted.
if kind get clusters 2>/dev/null | grep -qx "$name"; then
  if kind export kubeconfig --name "$name" --kubeconfig "$kubeconfig" >&2 && answers 90; then
    log "cluster $name exists"
  elif [[ "$running" == finetune.local/kind-node:* ]]; then
    log "cluster $name exists but its API server does not answer (its nodes restarted?): recreating it"
    kind delete cluster --name "$name" >&2
  else
    log "cluster $name ($running) does not answer; fix it or delete it: kind delete cluster --name $name"
    exit 1
  fi
fi
if ! kind get clusters 2>/dev/null | grep -qx "$name"; then
  log "creating cluster $name from kind-config.yaml with $image"
  start=$SECONDS
  kind create cluster --name "$name" --config "$ROOT/kind-config.yaml" --image "$image" \
    --kubeconfig "$kubeconfig" >&2
  log "created in $((SECONDS - start))s"
fi
export KUBECONFIG="$kubeconfig"
kubectl wait --for=condition=Ready nodes --all --timeout=300s >&2
kubectl -n kube-system rollout status deployment/coredns --timeout=300s >&2
if kubectl get namespace local-path-storage >/dev/null 2>&1; then
  kubectl -n local-path-storage rollout status deployment/local-path-provisioner --timeout=300s >&2
fi

for node in $(kubectl get nodes -l nvidia.com/gpu.present=true -o name); do
  kubectl patch "$node" --subresource=status --type=merge \
    -p "{\"status\": {\"capacity\": {\"nvidia.com/gpu\": \"${FAKE_GPUS:-4}\"}}}" >/dev/null
  kubectl wait "$node" --for=jsonpath='{.status.allocatable.nvidia\.com/gpu}'="${FAKE_GPUS:-4}" --timeout=120s >&2
  log "$node: ${FAKE_GPUS:-4} fake nvidia.com/gpu"
done
echo "$kubeconfig"
