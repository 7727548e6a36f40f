#!/usr/bin/env bash
# Builds the Go tools the observability tests run (Prometheus 3 + promtool, Jaeger v2) once and
# caches them under a versioned path outside the repo; a cached tool is never rebuilt.
# One-time cost on 2 cores: Prometheus ~10 min CPU, Jaeger ~5-7 min CPU, Sloth ~3 min CPU.
# Each build holds a lock (flock on $CACHE/<tool>-<version>.lock): two runs at once (make
# test-fast and make test) never build into the same directory; the second waits, then finds
# the tool cached. A cached tool is found without taking the lock.
#   tools/build_go_tools.sh prometheus|jaeger|sloth|all   -> prints the bin directory
set -euo pipefail
CACHE="${VOLSPIKE_TOOLS_CACHE:-$HOME/.cache/volspike-tools}"
PROM_VERSION=v0.316.0     # Prometheus 3.16.0 (Go module versions are v0.3XX.Y for 3.XX.Y)
JAEGER_VERSION=v1.76.0    # Jaeger v2 binary (cmd/jaeger) at module version v1.76.0
SLOTH_VERSION=v0.16.0     # Sloth: validates the SLO spec's Sloth export and generates its rules

# locked DIR FN: runs FN DIR holding DIR.lock (util-linux flock), waiting for another holder
locked() {
  local dir=$1 fn=$2
  command -v flock >/dev/null || { echo "flock (util-linux) is needed" >&2; exit 1; }
  mkdir -p "$CACHE"
  (
    if ! flock -n 9; then
      echo "waiting for another build into $dir ($dir.lock)" >&2
      flock 9
    fi
    "$fn" "$dir"
  ) 9>"$dir.lock"
}

prometheus_cached() { [[ -x "$1/bin/prometheus" && -x "$1/bin/promtool" ]]; }

prometheus_build() {
  local dir=$1
  prometheus_cached "$dir" && return  # built by the run we waited for
  mkdir -p "$dir/bin"
  echo "building Prometheus $PROM_VERSION into $dir (one time, ~10 min)" >&2
  GOBIN="$dir/bin.tmp" GOFLAGS=-trimpath go install \
    "github.com/prometheus/prometheus/cmd/prometheus@$PROM_VERSION" \
    "github.com/prometheus/prometheus/cmd/promtool@$PROM_VERSION" >&2
  mv "$dir/bin.tmp/prometheus" "$dir/bin.tmp/promtool" "$dir/bin/" && rmdir "$dir/bin.tmp"
}

build_prometheus() {
  local dir="$CACHE/prometheus-$PROM_VERSION"
  prometheus_cached "$dir" || locked "$dir" prometheus_build
  echo "$dir/bin"
}

jaeger_cached() { [[ -x "$1/bin/jaeger" ]]; }

jaeger_build() {
  local dir=$1
  jaeger_cached "$dir" && return  # built by the run we waited for
  mkdir -p "$dir/bin" "$dir/src"
  echo "building Jaeger $JAEGER_VERSION into $dir (one time, ~6 min)" >&2
  (cd "$dir/src" && { [[ -f go.mod ]] || go mod init volspike-jaeger-build >&2; } \
    && go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_VERSION" >&2 \
    && go build -trimpath -o "$dir/bin/jaeger.tmp" github.com/jaegertracing/jaeger/cmd/jaeger >&2)
  mv "$dir/bin/jaeger.tmp" "$dir/bin/jaeger"
}

build_jaeger() {
  local dir="$CACHE/jaeger-$JAEGER_VERSION"
  jaeger_cached "$dir" || locked "$dir" jaeger_build
  echo "$dir/bin"
}

sloth_cached() { [[ -x "$1/bin/sloth" ]]; }

sloth_build() {
  local dir=$1
  sloth_cached "$dir" && return  # built by the run we waited for
  mkdir -p "$dir/bin"
  echo "building Sloth $SLOTH_VERSION into $dir (one time, ~3 min)" >&2
  GOBIN="$dir/bin.tmp" GOFLAGS=-trimpath go install \
    "github.com/slok/sloth/cmd/sloth@$SLOTH_VERSION" >&2
  mv "$dir/bin.tmp/sloth" "$dir/bin/" && rmdir "$dir/bin.tmp"
}

build_sloth() {
  local dir="$CACHE/sloth-$SLOTH_VERSION"
  sloth_cached "$dir" || locked "$dir" sloth_build
  echo "$dir/bin"
}

case "${1:-all}" in
  prometheus) build_prometheus ;;
  jaeger) build_jaeger ;;
  sloth) build_sloth ;;
  all) build_prometheus; build_jaeger; build_sloth ;;
  *) echo "usage: $0 prometheus|jaeger|sloth|all" >&2; exit 2 ;;
esac
