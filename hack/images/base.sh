#!/usr/bin/env bash
# Build the local base image `finetune/debian:bookworm` (Debian 12 + Python 3.11) with debootstrap and
# `docker import`, since no container registry is reachable. Idempotent: an existing image is kept unless
# REBUILD=1. The root filesystem is cached under .cache/images/ (git-ignored).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
image="${BASE_IMAGE:-finetune/debian:bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
rootfs="$root/.cache/images/bookworm-rootfs"
docker=/usr/bin/docker

"$root/hack/docker/start-dockerd.sh"
if [ "${REBUILD:-0}" != 1 ] && $docker image inspect "$image" >/dev/null 2>&1; then
  echo "==> $image exists"
  exit 0
fi
command -v debootstrap >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; }

if [ ! -x "$rootfs/usr/bin/python3" ]; then
  echo "==> debootstrap bookworm into $rootfs (a few minutes)"
  rm -rf "$rootfs"
  mkdir -p "$rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,procps \
    bookworm "$rootfs" "$mirror" >"$root/.cache/images/debootstrap.log"
  chroot "$rootfs" apt-get clean
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
fi
echo "==> importing $image"
tar -C "$rootfs" -c . | $docker import \
  -c 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'CMD ["/bin/bash"]' - "$image" >/dev/null
$docker run --rm "$image" python3 --version
