#!/usr/bin/env bash
# `make kind-down`: delete the kind cluster `make kind-up` created (its node containers and volumes). Images stay.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
name="${FINETUNE_KIND_CLUSTER:-finetune}"
bin="$("$ROOT/hack/cluster/build.sh" --kind | tail -n1)"
if /usr/bin/docker info >/dev/null 2>&1 && "$bin/kind" get clusters 2>/dev/null | grep -qx "$name"; then
  "$bin/kind" delete cluster --name "$name"
fi
rm -rf "$ROOT/.cache/kind/$name"
