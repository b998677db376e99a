#!/usr/bin/env bash
# Install the operator on the kind cluster the way users do: the locally built images (`make images`, cached by
# Docker's layers) loaded into the nodes, then `helm upgrade --install` of helm/finetune-operator with
# hack/kind/values.yaml. Idempotent; prints the kubeconfig path (last line of stdout).
#
#   FINETUNE_KIND_CLUSTER (finetune)  RELEASE (finetune-operator)  RELEASE_NAMESPACE (finetune-system)
#   HELM_ARGS                         extra arguments for helm, e.g. "--set operator.logFormat=json"
#   FINETUNE_KIND_TRAINER_NODES       label selector of the nodes given the trainer image
#                                     (nvidia.com/gpu.present=true; empty: all nodes)
#
# The host's address on the kind network is given as trainer.insecureRegistries: a registry without TLS on the
# host (kind's local-registry recipe, or the e2e suite's) takes the pods' oci:// pushes over plain HTTP.
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
# Each image goes in under a tag naming its content (the first 12 hex digits of its ID), and the chart gets that
# tag: a rebuilt image rolls the operator out again, and its trainer setting names the new trainer image.
# hack/kind/load.sh skips nodes that already hold the tag and drops older ones. The trainer image (6.6 GB,
# held twice by each node) goes only to the nodes selected by $FINETUNE_KIND_TRAINER_NODES (a label selector;
# by default the GPU-labelled worker, where hack/kind/values.yaml sends every training pod; empty: all nodes),
# and is removed from the others (an older install may have put it there).
declare -A tags
for repo in finetune-operator finetune-trainer; do
  source_tag=dev selector=""
  if [[ "$repo" == finetune-trainer ]]; then
    source_tag=cpu selector="${FINETUNE_KIND_TRAINER_NODES-nvidia.com/gpu.present=true}"
  fi
  id="$(/usr/bin/docker image inspect -f '{{.Id}}' "$repo:$source_tag")"
  tags[$repo]="${id#sha256:}"
  tags[$repo]="${tags[$repo]:0:12}"
  /usr/bin/docker tag "$repo:$source_tag" "$repo:${tags[$repo]}"
  for old in $(/usr/bin/docker images --format '{{.Tag}}' "$repo" | grep -E '^[0-9a-f]{12}$' | grep -vx "${tags[$repo]}"); do
    /usr/bin/docker rmi "$repo:$old" >/dev/null
  done
  mapfile -t nodes < <(kubectl get nodes -l "$selector" -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}')
  ((${#nodes[@]})) || { log "no node matches '$selector' for $repo"; exit 1; }
  mapfile -t others < <(kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}' |
    grep -vxF -f <(printf '%s\n' "${nodes[@]}") || true)
  "$ROOT/hack/kind/load.sh" "$repo:${tags[$repo]}" "${nodes[@]}" -- "${others[@]}"
done

gateway="$(/usr/bin/docker network inspect kind -f '{{range .IPAM.Config}}{{.Gateway}} {{end}}' | tr ' ' '\n' |
  grep -m1 -F .)"
log "helm upgrade --install $release"
# shellcheck disable=SC2086 # HELM_ARGS is a list of arguments
helm upgrade --install "$release" "$ROOT/helm/finetune-operator" --namespace "$release_namespace" \
  --create-namespace --values "$ROOT/hack/kind/values.yaml" --wait --timeout 5m \
  --set "image.tag=${tags[finetune-operator]}" --set "trainer.image.tag=${tags[finetune-trainer]}" \
  --set "trainer.insecureRegistries={$gateway}" ${HELM_ARGS:-} >&2
echo "$kubeconfig"
