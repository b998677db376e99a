#!/usr/bin/env bash
# Start Docker Engine (Debian's docker.io) for image builds and kind, idempotently.
#
# Installs docker.io if missing, makes the CAP_SYS_RESOURCE-dropping runc wrapper the default runtime (this VM
# refuses that capability, so privileged containers such as kind nodes fail without it), starts dockerd in the
# background (no systemd here) and waits until it answers. Safe to run again: a running dockerd is left alone.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
log_dir="${XDG_CACHE_HOME:-$HOME/.cache}/finetune-operator"
mkdir -p "$log_dir"

if ! command -v dockerd >/dev/null 2>&1; then
  echo "==> installing docker.io from Debian"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi

install -m 0755 "$here/runc-wrapper" /usr/local/sbin/runc-nosysresource
mkdir -p /etc/docker
cat >/etc/docker/daemon.json <<JSON
{
  "runtimes": {"runc-nosysresource": {"path": "/usr/local/sbin/runc-nosysresource"}},
  "default-runtime": "runc-nosysresource",
  "storage-driver": "overlay2"
}
JSON

if /usr/bin/docker info >/dev/null 2>&1; then
  echo "==> dockerd already running"
  exit 0
fi
echo "==> starting dockerd (log: $log_dir/dockerd.log)"
# The host's containerd is asked through its socket: a process name would also match the containerd of a kind node
# (a container's processes are visible here), which does not serve this socket.
if ! ctr --address /run/containerd/containerd.sock version >/dev/null 2>&1; then
  nohup containerd >"$log_dir/containerd.log" 2>&1 &
fi
nohup dockerd --containerd=/run/containerd/containerd.sock >"$log_dir/dockerd.log" 2>&1 &
for _ in $(seq 60); do
  /usr/bin/docker info >/dev/null 2>&1 && { echo "==> dockerd is up"; exit 0; }
  sleep 1
done
echo "dockerd did not start; see $log_dir/dockerd.log" >&2
tail -20 "$log_dir/dockerd.log" >&2
exit 1
