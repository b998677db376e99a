#!/usr/bin/env bash
# Builds (or fetches from cache) the object store and registry the storage tests talk to (tests/storage_servers.py):
#   versitygw  <- github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION (S3 gateway, posix backend)
#   registry   <- github.com/distribution/distribution/v3/cmd/registry@$DISTRIBUTION_VERSION (CNCF distribution)
# From source through the Go module proxy, cached like the other pinned tools (hack/cache.sh).
# Output: prints the bin directory holding the binaries (last line of stdout).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=hack/versions.env
source "$ROOT/hack/versions.env"

source "$ROOT/hack/cache.sh"
BIN="$CACHE/tools/bin"

log() { echo "[tools/storage-servers] $*" >&2; }

build_versitygw() {
  local out="$1" pkg="github.com/versity/versitygw"
  log "versitygw: go install $pkg/cmd/versitygw@$VERSITYGW_VERSION"
  GOBIN="$out" "${NICE[@]}" go install -trimpath -ldflags "-s -w -X main.Version=$VERSITYGW_VERSION" \
    "$pkg/cmd/versitygw@$VERSITYGW_VERSION"
}

build_registry() {
  local out="$1" pkg="github.com/distribution/distribution/v3"
  log "registry: go install $pkg/cmd/registry@$DISTRIBUTION_VERSION"
  GOBIN="$out" "${NICE[@]}" go install -trimpath \
    -ldflags "-s -w -X $pkg/version.version=$DISTRIBUTION_VERSION" "$pkg/cmd/registry@$DISTRIBUTION_VERSION"
}

fetch_or_build "versitygw-$VERSITYGW_VERSION" build_versitygw versitygw
fetch_or_build "registry-$DISTRIBUTION_VERSION" build_registry registry
echo "$BIN"
