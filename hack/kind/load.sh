#!/usr/bin/env bash
# Load a local Docker image into kind nodes, as `kind load docker-image` does, within this machine's disk:
#
#   hack/kind/load.sh IMAGE:TAG NODE... [-- OTHER_NODE...]     (node names are their container names)
#
# kind saves the image to a temporary tar, then imports it into every node at once; each node's containerd keeps
# the layers twice (content store and unpacked snapshot). For the 6.6 GB trainer image on two nodes that is about
# 33 GB at the peak, more than a CI machine has. Here `docker save` streams into one node at a time, and a node
# that already holds IMAGE:TAG is skipped. Afterwards the node's other tags of the same repository (earlier
# builds, tagged by content in hack/kind/install.sh) are removed, so a reused cluster does not grow with every
# build; OTHER_NODEs lose every tag of the repository. Containers still running keep their own snapshots.
set -euo pipefail
(($# >= 2)) || { echo "usage: $0 IMAGE:TAG NODE... [-- OTHER_NODE...]" >&2; exit 2; }
image="$1"
shift
repo="docker.io/library/${image%:*}"
ref="docker.io/library/$image"
log() { echo "[kind/load] $*" >&2; }
gib() { awk -v b="$1" 'BEGIN { printf "%.1f GiB", b / 2^30 }'; }
ctr() { local node="$1"; shift; /usr/bin/docker exec -i "$node" ctr --namespace=k8s.io "$@"; }

# drop NODE DIGEST: removes the node's references to the repository, except those to DIGEST (a manifest).
drop() {
  local stale
  stale="$(ctr "$1" images ls | awk -v repo="$repo" -v d="$2" \
    'index($1, repo ":") == 1 || index($1, repo "@") == 1 { if ($3 != d) print $1 }')"
  [[ -n "$stale" ]] || return 0
  # shellcheck disable=SC2086 # one reference per word
  ctr "$1" images rm --sync $stale >/dev/null
  log "$1: removed $(wc -w <<<"$stale") reference(s) of $repo"
}

root="$(/usr/bin/docker info -f '{{.DockerRootDir}}')"
size="$(/usr/bin/docker image inspect -f '{{.Size}}' "$image")"
while (($#)); do
  node="$1"
  shift
  if [[ "$node" == -- ]]; then
    for other in "$@"; do drop "$other" none; done
    break
  fi
  # (grep reads a variable: with pipefail, `ctr | grep -q` fails when grep stops reading early)
  if ! grep -qxF "$ref" <<<"$(ctr "$node" images ls -q)"; then
    free="$(df --output=avail -B1 "$root" | tail -n1)"
    log "$image ($(gib "$size")) into $node; $(gib "$free") free on $root"
    start=$SECONDS
    if ! /usr/bin/docker save "$image" | ctr "$node" images import --snapshotter=overlayfs - >/dev/null; then
      free="$(df --output=avail -B1 "$root" | tail -n1)"
      log "loading $image into $node failed; $root has $(gib "$free") free, and a node keeps an image's new" \
        "layers twice (up to $(gib $((2 * size))) here). Free space (docker image prune; make kind-down) and retry."
      exit 1
    fi
    log "$image into $node in $((SECONDS - start))s"
  fi
  drop "$node" "$(ctr "$node" images ls | awk -v r="$ref" '$1 == r { print $3 }')"
done
