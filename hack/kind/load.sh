#!/usr/bin/env bash
# Load a local Docker image into kind nodes, as `kind load docker-image` does, within this machine's disk:
#
#   hack/kind/load.sh IMAGE:TAG NODE...        (node names are their container names)
#
# kind saves the image to a temporary tar, then imports it into every node at once; each node's containerd keeps
# the layers twice (content store and unpacked snapshot). For the 6.6 GB trainer image on two nodes that is about
# 33 GB at the peak, more than a CI machine has. Here `docker save` streams into one node at a time, and a node
# that already holds IMAGE:TAG is skipped. Afterwards the node's other tags of the same repository (earlier
# builds, tagged by content in hack/kind/install.sh) are removed, so a reused cluster does not grow with every
# build; containers still running keep their own snapshots.
set -euo pipefail
(($# >= 2)) || { echo "usage: $0 IMAGE:TAG NODE..." >&2; exit 2; }
image="$1"
shift
repo="docker.io/library/${image%:*}"
ref="docker.io/library/$image"
log() { echo "[kind/load] $*" >&2; }
gib() { awk -v b="$1" 'BEGIN { printf "%.1f GiB", b / 2^30 }'; }

root="$(/usr/bin/docker info -f '{{.DockerRootDir}}')"
size="$(/usr/bin/docker image inspect -f '{{.Size}}' "$image")"
for node in "$@"; do
  ctr=(/usr/bin/docker exec -i "$node" ctr --namespace=k8s.io)
  if ! "${ctr[@]}" images ls -q | grep -qxF "$ref"; then
    free="$(df --output=avail -B1 "$root" | tail -n1)"
    log "$image ($(gib "$size")) into $node; $(gib "$free") free on $root"
    start=$SECONDS
    if ! /usr/bin/docker save "$image" | "${ctr[@]}" images import --snapshotter=overlayfs - >/dev/null; then
      free="$(df --output=avail -B1 "$root" | tail -n1)"
      log "loading $image into $node failed; $root has $(gib "$free") free, and a node keeps an image's new" \
        "layers twice (up to $(gib $((2 * size))) here). Free space (docker image prune; make kind-down) and retry."
      exit 1
    fi
    log "$image into $node in $((SECONDS - start))s"
  fi
  # Other tags of the repository, and digest references kind's own loads made, except this image's.
  digest="$("${ctr[@]}" images ls | awk -v r="$ref" '$1 == r { print $3 }')"
  stale="$("${ctr[@]}" images ls | awk -v repo="$repo" -v d="$digest" \
    'index($1, repo ":") == 1 || index($1, repo "@") == 1 { if ($3 != d) print $1 }')"
  if [[ -n "$stale" ]]; then
    # shellcheck disable=SC2086 # one reference per word
    "${ctr[@]}" images rm --sync $stale >/dev/null
    log "$node: removed $(wc -w <<<"$stale") older reference(s) of $repo"
  fi
done
