#!/usr/bin/env bash
# Builds a Kubernetes control plane for the deployment test (tests/k8s/) once and caches it
# outside the repo under ~/.cache/volspike-tools/k8s-<version>/bin, like build_go_tools.sh:
#   kube-apiserver, kube-controller-manager, kube-scheduler  (k8s.io/kubernetes $K8S_VERSION)
#   etcd                                                     (go.etcd.io/etcd/server/v3 $ETCD_VERSION)
#   kwok                                                     (sigs.k8s.io/kwok $KWOK_VERSION)
#   controller-gen                                           (sigs.k8s.io/controller-tools $CONTROLLER_TOOLS_VERSION)
# `go install pkg@version` refuses k8s.io/kubernetes (its go.mod replaces every k8s.io/* staging
# module with ./staging/src/...) and etcd's main module (same), so each is built from a small
# wrapper module made here: it requires the module and copies its replaces, pointing each
# staging module at its published version (v0.<minor>.<patch>); etcd's wrapper is a
# main package that calls etcdmain.Main, requiring go.etcd.io/etcd/server/v3 alone.
# Everything comes from the Go module proxy; nothing is copied out of the module cache.
# Each part holds a lock (flock on its dir .lock); a cached binary is never rebuilt.
#   tools/build_k8s.sh [essential|all]   -> prints the bin directory
#   essential: kube-apiserver + etcd + controller-gen; all: + controller-manager, scheduler, kwok
set -euo pipefail
CACHE="${VOLSPIKE_TOOLS_CACHE:-$HOME/.cache/volspike-tools}"
K8S_VERSION=v1.36.3
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.8.0
CONTROLLER_TOOLS_VERSION=v0.23.0
DIR="$CACHE/k8s-$K8S_VERSION"
BIN="$DIR/bin"
export GOFLAGS="-trimpath -buildvcs=false"

locked() {
  local name=$1 fn=$2
  command -v flock >/dev/null || { echo "flock (util-linux) is needed" >&2; exit 1; }
  mkdir -p "$DIR"
  (
    if ! flock -n 9; then
      echo "waiting for another build of $name ($DIR/$name.lock)" >&2
      flock 9
    fi
    "$fn"
  ) 9>"$DIR/$name.lock"
}

have() { local b; for b in "$@"; do [[ -x "$BIN/$b" ]] || return 1; done; }

# timed NAME CMD...: runs CMD, logging its wall time to $DIR/build-times.log and stderr
timed() {
  local name=$1; shift
  local t0=$SECONDS
  "$@"
  echo "$(date -u +%FT%TZ) $name $((SECONDS - t0)) s wall" | tee -a "$DIR/build-times.log" >&2
}

kube_wrapper() {
  local src="$DIR/src/kubernetes" minor patch mod
  minor=$(echo "$K8S_VERSION" | cut -d. -f2); patch=$(echo "$K8S_VERSION" | cut -d. -f3)
  mkdir -p "$src"
  mod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
  {
    echo "module volspike-k8s-build"
    echo
    grep '^go ' "$mod"
    grep '^godebug ' "$mod" || true
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    # k8s.io/api => ./staging/src/k8s.io/api  ->  k8s.io/api => k8s.io/api v0.36.3
    sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/k8s.io/[a-z0-9-]*$#\t\1 => \1 v0.'"$minor.$patch"'#p' "$mod"
    echo ")"
  } >"$src/go.mod"
  cat >"$src/tools.go" <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
EOF
  (cd "$src" && go mod tidy -e >&2 2>"$src/tidy.log" || { cat "$src/tidy.log" >&2; return 1; })
}

kube_build() {
  local src="$DIR/src/kubernetes" ld minor
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  ld="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
  ld="$ld -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
  ld="$ld -X k8s.io/component-base/version.gitTreeState=clean"
  mkdir -p "$BIN"
  [[ -f "$src/go.sum" ]] || timed "kubernetes-wrapper-module" kube_wrapper
  local cmd
  for cmd in "$@"; do
    have "$cmd" && continue
    echo "building $cmd $K8S_VERSION into $BIN (one time)" >&2
    (cd "$src" && timed "$cmd" go build -ldflags "$ld" -o "$BIN/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd")
    mv "$BIN/$cmd.tmp" "$BIN/$cmd"
  done
}

etcd_build() {
  have etcd && return
  local src="$DIR/src/etcd"
  mkdir -p "$src" "$BIN"
  cat >"$src/main.go" <<'EOF'
// etcd's own main (go.etcd.io/etcd/v3) replaces its sibling modules with ../ paths, so
// `go install` refuses it; this wrapper runs the same entry point from the server module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
  (cd "$src" && { [[ -f go.mod ]] || go mod init volspike-etcd-build >&2; } \
    && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2 && go mod tidy >&2 \
    && timed etcd go build -ldflags "-s -w" -o "$BIN/etcd.tmp" .)
  mv "$BIN/etcd.tmp" "$BIN/etcd"
}

gobin_install() {  # gobin_install BINARY PKG@VERSION
  have "$1" && return
  mkdir -p "$BIN"
  GOBIN="$DIR/bin.tmp" timed "$1" go install -ldflags "-s -w" "$2" >&2
  mv "$DIR/bin.tmp/$1" "$BIN/$1" && rmdir "$DIR/bin.tmp"
}

apiserver() { kube_build kube-apiserver; }
controllers() { kube_build kube-controller-manager kube-scheduler; }
etcd() { etcd_build; }
kwok() { gobin_install kwok "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"; }
controller_gen() { gobin_install controller-gen "sigs.k8s.io/controller-tools/cmd/controller-gen@$CONTROLLER_TOOLS_VERSION"; }

essential() {
  have kube-apiserver || locked kubernetes apiserver
  have etcd || locked etcd etcd
  have controller-gen || locked controller-gen controller_gen
}

case "${1:-all}" in
  essential) essential ;;
  all)
    essential
    have kube-controller-manager kube-scheduler || locked kubernetes controllers
    have kwok || locked kwok kwok
    ;;
  *) echo "usage: $0 essential|all" >&2; exit 2 ;;
esac
echo "$BIN"
