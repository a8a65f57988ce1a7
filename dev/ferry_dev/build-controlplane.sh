#!/usr/bin/env bash
# Build kube-apiserver/controller-manager/scheduler/kubectl (one multi-call binary), etcd and
# kwok/kwokctl from the official Go modules into a cache keyed by the pinned versions.
# Idempotent: exits at once when the cache directory is complete.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=pins.env
source "$here/pins.env"
cache_root="${FERRY_CACHE:-$HOME/.cache/ferry}"
bin="$cache_root/bin/k8s-${KUBE_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}"
if [[ -f "$bin/.complete" ]]; then echo "$bin"; exit 0; fi
export GOTOOLCHAIN=local CGO_ENABLED=0
command -v go >/dev/null || { echo "go is required (Go >= 1.26)" >&2; exit 1; }
work="$cache_root/build"
mkdir -p "$bin" "$work"
# Concurrent callers (parallel test sessions, the demo) wait for one build instead of racing it.
exec 9>"$cache_root/.build.lock"
flock 9
if [[ -f "$bin/.complete" ]]; then echo "$bin"; exit 0; fi
start=$(date +%s)

# --- Kubernetes: a consuming module that replaces every staging module with its published version.
kdir="$work/k8s-$KUBE_VERSION"
mkdir -p "$kdir"
if [[ ! -f "$bin/k8s" ]]; then
  gomod=$(cd "$(mktemp -d)" && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" \
    | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])')
  staging="v0.${KUBE_VERSION#v1.}"
  (
    cd "$kdir"
    rm -f go.mod go.sum
    go mod init ferry.local/k8sbin >/dev/null 2>&1
    go mod edit -go=1.26.0 -godebug=default=go1.26 -require="k8s.io/kubernetes@$KUBE_VERSION"
    for m in $(sed -n 's#^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/.*#\1#p' "$gomod"); do
      go mod edit -replace="$m=$m@$staging"
    done
    cp "$here/k8s-main.go.txt" main.go
    go mod tidy
    minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
    ldf=""
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldf="$ldf -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=2026-01-01T00:00:00Z"
    done
    go build -trimpath -tags=selinux,notest -ldflags="-s -w $ldf" -o "$bin/k8s.tmp" .
    mv "$bin/k8s.tmp" "$bin/k8s"
  )
fi
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
