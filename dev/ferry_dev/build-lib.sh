# Sourced by the build-*.sh scripts (not run): the pins, the cache, one lock per build, and the one
# way Kubernetes binaries are built from the k8s.io/kubernetes module.
# shellcheck source=pins.env
source "$here/pins.env"
cache_root="${FERRY_CACHE:-$HOME/.cache/ferry}"
export GOTOOLCHAIN=local CGO_ENABLED=0

# begin_build BIN LOCK: print BIN and exit when it is complete (also after waiting for a concurrent
# caller — parallel test sessions, the demo — that holds LOCK); otherwise start timing the build.
begin_build() {
  bin="$1"
  if [[ -f "$bin/.complete" ]]; then echo "$bin"; exit 0; fi
  command -v go >/dev/null || { echo "go is required (Go >= 1.26)" >&2; exit 1; }
  work="$cache_root/build"
  mkdir -p "$bin" "$work"
  exec 9>"$cache_root/$2"
  flock 9
  if [[ -f "$bin/.complete" ]]; then echo "$bin"; exit 0; fi
  start=$(date +%s)
}

# build_kubernetes MAIN OUTPUT: a multi-call binary from MAIN (a main.go kept as .txt) in a
# consuming module that requires k8s.io/kubernetes and replaces each of its ./staging modules with
# the published version (a dependency's replace directives are ignored), stamped with the version.
build_kubernetes() {
  local main="$1" output="$2" name
  name="$(basename "$output")"
  local kdir="$work/$name-$KUBE_VERSION"
  mkdir -p "$kdir"
  local gomod
  gomod=$(cd "$(mktemp -d)" && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" \
    | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])')
  local staging="v0.${KUBE_VERSION#v1.}"
  (
    cd "$kdir"
    rm -f go.mod go.sum
    go mod init "ferry.local/${name//-/}" >/dev/null 2>&1
    go mod edit -go=1.26.0 -godebug=default=go1.26 -require="k8s.io/kubernetes@$KUBE_VERSION"
    for m in $(sed -n 's#^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/.*#\1#p' "$gomod"); do
      go mod edit -replace="$m=$m@$staging"
    done
    cp "$here/$main" main.go
    go mod tidy
    local minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
    local ldf="" p
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldf="$ldf -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=2026-01-01T00:00:00Z"
    done
    go build -trimpath -tags=selinux,notest -ldflags="-s -w $ldf" -o "$output.tmp" .
    mv "$output.tmp" "$output"
  )
}
