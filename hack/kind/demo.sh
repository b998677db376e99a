#!/usr/bin/env bash
# `make demo`: the tiny LoRA fine-tune of examples/tiny-lora.yaml, end to end on a local kind cluster.
#
# 1. hack/kind/install.sh: Docker Engine, the kind cluster (node image built offline on first use), the operator
#    and trainer images (`make images`), loaded into the nodes, and the Helm chart (helm/finetune-operator).
# 2. kubectl apply -f examples/tiny-lora.yaml (a previous demo's job and volume are deleted first).
# 3. Progress from status.progress until the job is Succeeded or Failed.
# 4. Where the adapter is (status.result), its digest, and the loss curve from the trainer's log.
# Cold (nothing built or cached): about half an hour on 2 cores; warm: about a minute. `make kind-down` stops it all.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
namespace="${DEMO_NAMESPACE:-default}"
job=tiny-lora
say() { printf '\n==> %s\n' "$*"; }

say "cluster, images and chart (hack/kind/install.sh)"
kubeconfig="$("$ROOT/hack/kind/install.sh" | tail -n1)"
bin="$("$ROOT/hack/cluster/build.sh" --kind 2>/dev/null | tail -n1)"
export KUBECONFIG="$kubeconfig" PATH="$bin:$PATH"
kubectl get nodes -o custom-columns='NODE:.metadata.name,GPUS:.status.allocatable.nvidia\.com/gpu,PRODUCT:.metadata.labels.nvidia\.com/gpu\.product'

if kubectl -n "$namespace" get finetunejob "$job" >/dev/null 2>&1; then
  say "deleting the previous demo's job and its output volume"
  pvc="$(kubectl -n "$namespace" get finetunejob "$job" -o jsonpath='{.status.workload.pvcName}')"
  kubectl -n "$namespace" delete finetunejob "$job" --wait
  [[ -z "$pvc" ]] || kubectl -n "$namespace" delete pvc "$pvc" --ignore-not-found --wait
fi
say "kubectl apply -f examples/tiny-lora.yaml"
kubectl -n "$namespace" apply -f "$ROOT/examples/tiny-lora.yaml"

say "training (status.progress)"
last=""
while true; do
  IFS='|' read -r phase step total loss < <(kubectl -n "$namespace" get finetunejob "$job" \
    -o jsonpath='{.status.phase}|{.status.progress.step}|{.status.progress.totalSteps}|{.status.progress.loss}{"\n"}')
  line="${phase:-Pending}${step:+  step $step/$total}${loss:+  loss $loss}"
  [[ "$line" == "$last" ]] || { echo "  $line"; last="$line"; }
  [[ "$phase" == Succeeded || "$phase" == Failed ]] && break
  sleep 1
done
kubectl -n "$namespace" get finetunejob "$job"
if [[ "$phase" == Failed ]]; then
  kubectl -n "$namespace" describe finetunejob "$job"
  exit 1
fi

say "result"
kubectl -n "$namespace" get finetunejob "$job" -o jsonpath='  adapter: {.status.result.artifactUri} on PersistentVolumeClaim {.status.workload.pvcName}
  digest:  {.status.result.digest} (sha256 of manifest.json, which lists every file'"'"'s digest)
'
echo "  loss curve:"
kubectl -n "$namespace" logs "job/$(kubectl -n "$namespace" get finetunejob "$job" -o jsonpath='{.status.workload.jobName}')" \
  | python3 "$ROOT/hack/kind/loss_curve.py"
cat <<EOT

Next: KUBECONFIG=$KUBECONFIG kubectl get finetunejobs; the README says how to copy the adapter out.
Stop everything with: make kind-down
EOT
