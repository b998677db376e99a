#!/usr/bin/env bash
# Stops the local test cluster started by hack/cluster/up.sh and removes its state (etcd data, PKI,
# kubeconfig); built binaries stay cached. Safe to run when nothing is running.
# Every process up.sh started has a pid file under .cache/cluster/kwok/clusters/<name>/pids/; after
# `kwokctl delete cluster` those pids are checked again and any survivor is killed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
CLUSTER_DIR="$ROOT/.cache/cluster"
NAME="${FINETUNE_CLUSTER_NAME:-finetune}"
export KWOK_WORKDIR="$CLUSTER_DIR/kwok"
STATE="$KWOK_WORKDIR/clusters/$NAME"
KWOKCTL="$CLUSTER_DIR/bin/kwokctl"

log() { echo "[cluster/down] $*" >&2; }

if [[ ! -d "$STATE" ]]; then
  log "no cluster $NAME in $KWOK_WORKDIR"
  rm -f "$CLUSTER_DIR/kubeconfig"
  exit 0
fi

pids=()
for f in "$STATE"/pids/*.pid; do
  [[ -f "$f" ]] && pids+=("$(<"$f")")
done

if [[ -x "$KWOKCTL" ]]; then
  log "kwokctl delete cluster --name $NAME"
  "$KWOKCTL" delete cluster --name "$NAME" --kubeconfig "$CLUSTER_DIR/kubeconfig" >&2 \
    || log "kwokctl delete failed; killing processes directly"
fi

# A pid from the pid files that is still alive and runs a binary from this checkout's .cache/ is ours:
# TERM, then KILL after 10 s. The exe check guards against reused pids.
ours() {
  local p exe
  for p in "$@"; do
    exe="$(readlink "/proc/$p/exe" 2>/dev/null)" || continue
    [[ "$exe" == "$ROOT/.cache/"* ]] && echo "$p"
  done
  return 0
}
mapfile -t left < <(ours "${pids[@]}")
if ((${#left[@]})); then
  log "terminating leftover pids: ${left[*]}"
  kill "${left[@]}" 2>/dev/null || true
  for _ in $(seq 1 20); do
    mapfile -t left < <(ours "${left[@]}")
    ((${#left[@]})) || break
    sleep 0.5
  done
  if ((${#left[@]})); then
    log "killing pids that ignored SIGTERM: ${left[*]}"
    kill -9 "${left[@]}" 2>/dev/null || true
  fi
fi

rm -rf "$STATE"
rm -f "$CLUSTER_DIR/kubeconfig"
log "cluster $NAME stopped"
