#!/usr/bin/env bash
# Install the operator on the kind cluster the way users do: the locally built images (`make images`, cached by
# Docker's layers) loaded into the nodes, then `helm upgrade --install` of helm/finetune-operator with
# hack/kind/values.yaml. Idempotent; prints the kubeconfig path (last line of stdout).
#
#   FINETUNE_KIND_CLUSTER (finetune)  RELEASE (finetune-operator)  RELEASE_NAMESPACE (finetune-system)
#   HELM_ARGS                         extra arguments for helm, e.g. "--set operator.logFormat=json"
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
name="${FINETUNE_KIND_CLUSTER:-finetune}"
release="${RELEASE:-finetune-operator}"
release_namespace="${RELEASE_NAMESPACE:-finetune-system}"
log() { echo "[kind/install] $*" >&2; }

kubeconfig="$("$ROOT/hack/kind/up.sh" | tail -n1)"
export KUBECONFIG="$kubeconfig"
bin="$("$ROOT/hack/cluster/build.sh" --kind | tail -n1)"
tools="$("$ROOT/hack/tools/build.sh" | tail -n1)"
export PATH="$bin:$tools:$PATH"

# Always through the build: Docker's layer cache makes it seconds when nothing changed, and a stale image would
# test old code.
"$ROOT/hack/images/build.sh" >&2
# load <image>: into every node; kind skips nodes that already hold this image ID.
load() {
  local start=$SECONDS
  kind load docker-image "$1" --name "$name" >&2
  log "$1 loaded in $((SECONDS - start))s"
}
load finetune-operator:dev
# Every node: GPU jobs run on the fake-GPU worker, CPU-only ones (examples/tiny-lora.yaml) on the control plane.
load finetune-trainer:cpu

log "helm upgrade --install $release"
# shellcheck disable=SC2086 # HELM_ARGS is a list of arguments
helm upgrade --install "$release" "$ROOT/helm/finetune-operator" --namespace "$release_namespace" \
  --create-namespace --values "$ROOT/hack/kind/values.yaml" --wait --timeout 5m ${HELM_ARGS:-} >&2
echo "$kubeconfig"
