#!/usr/bin/env bash
# Build kube-apiserver/controller-manager/scheduler/kubectl (one multi-call binary), etcd and
# kwok/kwokctl from the official Go modules into a cache keyed by the pinned versions.
# Idempotent: exits at once when the cache directory is complete.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=build-lib.sh
source "$here/build-lib.sh"
begin_build "$cache_root/bin/k8s-${KUBE_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}" .build.lock

# --- Kubernetes: the control plane's commands in one binary.
if [[ ! -f "$bin/k8s" ]]; then build_kubernetes k8s-main.go.txt "$bin/k8s"; fi
for n in kube-apiserver kube-controller-manager kube-scheduler kubectl; do ln -sf k8s "$bin/$n"; done
echo "k8s built after $(( $(date +%s) - start ))s" >&2

# --- etcd: wrapper module (server/go.mod has relative replaces, so go install is refused).
if [[ ! -f "$bin/etcd" ]]; then
  edir="$work/etcd-$ETCD_VERSION"; mkdir -p "$edir"
  (
    cd "$edir"
    rm -f go.mod go.sum
    go mod init ferry.local/etcdbin >/dev/null 2>&1
    go mod edit -go=1.26.0
    go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    go build -trimpath -ldflags="-s -w" -o "$bin/etcd.tmp" go.etcd.io/etcd/server/v3
    mv "$bin/etcd.tmp" "$bin/etcd"
  )
fi
echo "etcd built after $(( $(date +%s) - start ))s" >&2

# --- kwok + kwokctl
if [[ ! -f "$bin/kwok" || ! -f "$bin/kwokctl" ]]; then
  GOBIN="$bin" go install -trimpath -ldflags="-s -w" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
fi
# The default kwok stage files ship in the module; keep a path to them next to the binaries.
stages="$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage"
if [[ ! -d "$stages" ]]; then (cd "$(mktemp -d)" && go mod download "sigs.k8s.io/kwok@$KWOK_VERSION"); fi
rm -rf "$bin/stages"; cp -r "$stages" "$bin/stages"; chmod -R u+w "$bin/stages"
echo "kwok built after $(( $(date +%s) - start ))s" >&2
touch "$bin/.complete"
echo "$bin"
