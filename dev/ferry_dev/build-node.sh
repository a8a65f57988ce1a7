#!/usr/bin/env bash
# Build the real local node from the official Go modules into a cache keyed by the pinned versions:
# kubelet + kube-proxy (one multi-call binary, the control plane's Kubernetes version), containerd
# 2.x with its runc shim and ctr, and CoreDNS. runc and the CNI plugins come from Debian.
# Idempotent: exits at once when the cache directory is complete.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=build-lib.sh
source "$here/build-lib.sh"
begin_build "$cache_root/bin/node-k8s-${KUBE_VERSION}_containerd-${CONTAINERD_VERSION}_coredns-${COREDNS_VERSION}" \
  .build-node.lock

# --- containerd 2.x (the CRI runtime kubelet supports; Debian's 1.6 is outside its range).
if [[ ! -f "$bin/containerd" || ! -f "$bin/containerd-shim-runc-v2" || ! -f "$bin/ctr" ]]; then
  GOBIN="$bin" go install -trimpath -tags "no_btrfs no_devmapper no_zfs" -ldflags="-s -w" \
    "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD_VERSION"
fi
echo "containerd built after $(( $(date +%s) - start ))s" >&2

# --- CoreDNS (cluster DNS for cluster.local, run as a host process on the node).
if [[ ! -f "$bin/coredns" ]]; then
  GOBIN="$bin" go install -trimpath -ldflags="-s -w" "github.com/coredns/coredns@$COREDNS_VERSION"
fi
echo "coredns built after $(( $(date +%s) - start ))s" >&2
# --- the sandbox (pause) process, packed into a local image by ferry_dev.node.
if [[ ! -f "$bin/pause" ]]; then
  pdir="$work/pause"; mkdir -p "$pdir"
  (
    cd "$pdir"
    rm -f go.mod
    go mod init ferry.local/pause >/dev/null 2>&1
    cp "$here/pause-main.go.txt" main.go
    go build -trimpath -ldflags="-s -w" -o "$bin/pause" .
  )
fi

# --- kubelet + kube-proxy in one binary.
if [[ ! -f "$bin/k8s-node" ]]; then build_kubernetes k8s-node-main.go.txt "$bin/k8s-node"; fi
for n in kubelet kube-proxy; do ln -sf k8s-node "$bin/$n"; done
echo "kubelet/kube-proxy built after $(( $(date +%s) - start ))s" >&2

touch "$bin/.complete"
echo "$bin"
