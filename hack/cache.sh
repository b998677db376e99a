# shellcheck shell=bash
# Sourced by hack/*/build.sh: the binary cache every pinned tool goes through.
# Callers set ROOT, BIN (where links go) and log(); this sets CACHE (per checkout, $ROOT/.cache), SHARED
# (machine-wide, see below), the Go build environment and NICE (builds run at low priority).
# Lookup order: $CACHE/bin/<component>-<version>/, then $SHARED/bin/<component>-<version>/ (copied in), then
# the caller's build function (its result is stored in both). SHARED defaults to
# $FINETUNE_SHARED_CACHE or ${XDG_CACHE_HOME:-$HOME/.cache}/finetune-operator, shared by every clone on the machine.

CACHE="$ROOT/.cache"
SHARED="${FINETUNE_SHARED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/finetune-operator}"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="${GOFLAGS:--buildvcs=false}"
# shellcheck disable=SC2034 # used by the callers' build functions
NICE=(nice -n 10)

# have <dir> <names...>: true when every named binary is in <dir> and executable.
have() {
  local dir="$1"; shift
  local b
  for b in "$@"; do [[ -x "$dir/$b" ]] || return 1; done
}

# fetch_or_build <component-version> <build-function> <binaries...>
# Ensures $CACHE/bin/<component-version>/ holds the binaries; links them into $BIN.
fetch_or_build() {
  local key="$1" builder="$2"; shift 2
  local local_dir="$CACHE/bin/$key" shared_dir="$SHARED/bin/$key" b
  if have "$local_dir" "$@"; then
    log "$key: cached in $local_dir"
  elif have "$shared_dir" "$@"; then
    log "$key: copying from shared cache $shared_dir"
    mkdir -p "$local_dir"
    for b in "$@"; do cp "$shared_dir/$b" "$local_dir/$b.tmp" && mv "$local_dir/$b.tmp" "$local_dir/$b"; done
  else
    log "$key: building from source (cold: minutes)"
    command -v go >/dev/null || { log "go (>= 1.24) is required on PATH to build $key"; exit 1; }
    local start=$SECONDS
    mkdir -p "$local_dir"
    "$builder" "$local_dir"
    have "$local_dir" "$@" || { log "$key: build did not produce $*"; exit 1; }
    log "$key: built in $((SECONDS - start))s"
    if mkdir -p "$shared_dir" 2>/dev/null; then
      for b in "$@"; do cp "$local_dir/$b" "$shared_dir/$b.tmp.$$" && mv "$shared_dir/$b.tmp.$$" "$shared_dir/$b"; done
      log "$key: stored in shared cache $shared_dir"
    fi
  fi
  mkdir -p "$BIN"
  for b in "$@"; do ln -sfn "$local_dir/$b" "$BIN/$b"; done
}
