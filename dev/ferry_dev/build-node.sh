#!/usr/bin/env bash
# Build the real local node from the official Go modules into a cache keyed by the pinned versions:
# kubelet + kube-proxy (one multi-call binary, the control plane's Kubernetes version), containerd
# 2.x with its runc shim and ctr, and CoreDNS. runc and the CNI plugins come from Debian.
# Idempotent: exits at once when the cache directory is complete.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=pins.env
source "$here/pins.env"
cache_root="${FERRY_CACHE:-$HOME/.cache/ferry}"
bin="$cache_root/bin/node-k8s-${KUBE_VERSION}_containerd-${CONTAINERD_VERSION}_coredns-${COREDNS_VERSION}"
if [[ -f "$bin/.complete" ]]; then echo "$bin"; exit 0; fi
export GOTOOLCHAIN=local CGO_ENABLED=0
command -v go >/dev/null || { echo "go is required (Go >= 1.26)" >&2; exit 1; }
work="$cache_root/build"
mkdir -p "$bin" "$work"
exec 9>"$cache_root/.build-node.lock"
flock 9
if [[ -f "$bin/.complete" ]]; then echo "$bin"; exit 0; fi
start=$(date +%s)

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

# --- kubelet + kube-proxy: the same consuming-module trick as build-controlplane.sh.
if [[ ! -f "$bin/k8s-node" ]]; then
  kdir="$work/k8s-node-$KUBE_VERSION"; mkdir -p "$kdir"
  gomod=$(cd "$(mktemp -d)" && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" \
    | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])')
  staging="v0.${KUBE_VERSION#v1.}"
  (
    cd "$kdir"
    rm -f go.mod go.sum
    go mod init ferry.local/k8snode >/dev/null 2>&1
    go mod edit -go=1.26.0 -godebug=default=go1.26 -require="k8s.io/kubernetes@$KUBE_VERSION"
    for m in $(sed -n 's#^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/.*#\1#p' "$gomod"); do
      go mod edit -replace="$m=$m@$staging"
    done
    cp "$here/k8s-node-main.go.txt" main.go
    go mod tidy
    minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
    ldf=""
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldf="$ldf -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=2026-01-01T00:00:00Z"
    done
    go build -trimpath -tags=selinux,notest -ldflags="-s -w $ldf" -o "$bin/k8s-node.tmp" .
    mv "$bin/k8s-node.tmp" "$bin/k8s-node"
  )
fi
for n in kubelet kube-proxy; do ln -sf k8s-node "$bin/$n"; done
echo "kubelet/kube-proxy built after $(( $(date +%s) - start ))s" >&2

touch "$bin/.complete"
echo "$bin"
