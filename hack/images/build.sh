#!/usr/bin/env bash
# `make images`: build the operator and trainer images locally (no registry is reachable here).
#
#   IMAGES (operator trainer)  VARIANT=cpu|cuda (cpu)  TAG (finetune-trainer:<variant>)
#   OPERATOR_TAG (finetune-operator:dev)
#
# 1. hack/images/base.sh: Docker Engine up, base image finetune/debian:bookworm from debootstrap.
# 2. Stage a small build context under .cache/images/trainer-context/: the pinned requirements of each image (from
#    pyproject.toml), the Python sources, the host's CA bundle, and local torch wheels from /opt/wheels when the
#    machine has them (a CPU build there is used by VARIANT=cpu).
# 3. docker build with the classic builder (BuildKit front ends would be pulled from a registry); the operator
#    image (operator/Dockerfile, no torch) first, then the trainer image. Each gets its smoke test when its image ID
#    changed. Dependencies sit in layers below the source, so after a source change a rebuild takes seconds.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
variant="${VARIANT:-cpu}"
tag="${TAG:-finetune-trainer:$variant}"
operator_tag="${OPERATOR_TAG:-finetune-operator:dev}"
images="${IMAGES:-operator trainer}"
context="$root/.cache/images/trainer-context"

"$root/hack/images/base.sh"
image_id() { /usr/bin/docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }
# forget <image id>: drop the image a rebuild replaced, unless something still uses it (the trainer's is gigabytes).
forget() { [[ -z "$1" ]] || /usr/bin/docker image rm "$1" >/dev/null 2>&1 || true; }

echo "==> staging the build context in $context"
rm -rf "$context"
mkdir -p "$context/src/api" "$context/src/operator" "$context/src/trainer_image" "$context/src/cli" "$context/wheels"
cp "$root/pyproject.toml" "$context/src/"
# pyproject.toml names README.md as the package's description; a stub keeps README edits from rebuilding images.
echo "# finetune-operator: the repository README.md describes it" >"$context/src/README.md"
# Both images install the one distribution, so both hold its four packages (pyproject.toml's package-dir).
for package in api/finetune_api operator/finetune_operator trainer_image/finetune_trainer cli/finetune_cli; do
  cp -r "$root/$package" "$context/src/${package%%/*}/"
done
find "$context/src" -name __pycache__ -prune -exec rm -rf {} +
# requirements-<extra>.txt: the core dependencies plus the extra's, pinned in pyproject.toml.
python3 - "$root/pyproject.toml" "$context" <<'PY'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
for extra in ("operator", "trainer"):
    pins = project["dependencies"] + project["optional-dependencies"][extra]
    open(f"{sys.argv[2]}/requirements-{extra}.txt", "w").write("\n".join(pins) + "\n")
PY
cp "${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}" "$context/ca.crt"
if [ "$variant" = cpu ] && compgen -G "/opt/wheels/torch-*.whl" >/dev/null; then
  cp /opt/wheels/torch-*.whl "$context/wheels/"
fi

if [[ " $images " == *" operator "* ]]; then
  echo "==> docker build $operator_tag"
  before="$(image_id "$operator_tag")"
  DOCKER_BUILDKIT=0 /usr/bin/docker build -q -f "$root/operator/Dockerfile" -t "$operator_tag" "$context" >/dev/null
  if [[ "$(image_id "$operator_tag")" == "$before" ]]; then
    echo "==> $operator_tag unchanged"
  else
    echo "==> smoke test: the operator image runs as its non-root user and knows its settings"
    /usr/bin/docker run --rm --network none "$operator_tag" --help >/dev/null
    refused="$(/usr/bin/docker run --rm --network none -e FINETUNE_LOG_FORMAT=bad "$operator_tag" 2>&1 || true)"
    grep -q "FINETUNE_LOG_FORMAT" <<<"$refused" || { echo "operator image: bad settings not reported: $refused" >&2; exit 1; }
    echo "==> built $operator_tag"
    forget "$before"
  fi
fi
[[ " $images " == *" trainer "* ]] || exit 0

echo "==> docker build $tag (VARIANT=$variant)"
before="$(image_id "$tag")"
DOCKER_BUILDKIT=0 /usr/bin/docker build --build-arg VARIANT="$variant" \
  -f "$root/trainer_image/Dockerfile" -t "$tag" "$context"
if [[ "$(image_id "$tag")" == "$before" ]]; then
  echo "==> $tag unchanged"
  exit 0
fi
echo "==> smoke test: the image trains examples/tiny-lora.yaml for 3 steps, as its non-root user, with no network"
/usr/bin/docker run --rm --network none -v "$root/examples:/examples:ro" --entrypoint finetune "$tag" \
  run /examples/tiny-lora.yaml --output /tmp/out --max-steps 3
echo "==> built $tag"
forget "$before"
