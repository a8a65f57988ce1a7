#!/usr/bin/env bash
# Build Prometheus from its Go module with Kubernetes service discovery only (Debian's package is
# built without it) into a cache keyed by the pinned version. Idempotent.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=pins.env
source "$here/pins.env"
cache_root="${FERRY_CACHE:-$HOME/.cache/ferry}"
bin="$cache_root/bin/prometheus-${PROMETHEUS_VERSION}"
if [[ -x "$bin/prometheus" ]]; then echo "$bin"; exit 0; fi
export GOTOOLCHAIN=local CGO_ENABLED=0
command -v go >/dev/null || { echo "go is required (Go >= 1.26)" >&2; exit 1; }
mkdir -p "$bin"
exec 9>"$cache_root/.build-prometheus.lock"
flock 9
if [[ -x "$bin/prometheus" ]]; then echo "$bin"; exit 0; fi
start=$(date +%s)
GOBIN="$bin.tmp" go install -trimpath -tags "remove_all_sd,enable_kubernetes_sd" -ldflags="-s -w" \
  "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_VERSION"
mv "$bin.tmp/prometheus" "$bin/prometheus"; rmdir "$bin.tmp"
echo "prometheus built after $(( $(date +%s) - start ))s" >&2
echo "$bin"
