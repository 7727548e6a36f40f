#!/usr/bin/env bash
# Builds the Go tools the observability tests run (Prometheus 3 + promtool, Jaeger v2) once and
# caches them under a versioned path outside the repo; a cached tool is never rebuilt.
# One-time cost on 2 cores: Prometheus ~10 min CPU, Jaeger ~5-7 min CPU.
#   tools/build_go_tools.sh prometheus|jaeger|all   -> prints the bin directory
set -euo pipefail
CACHE="${VOLSPIKE_TOOLS_CACHE:-$HOME/.cache/volspike-tools}"
PROM_VERSION=v0.316.0     # Prometheus 3.16.0 (Go module versions are v0.3XX.Y for 3.XX.Y)
JAEGER_VERSION=v1.76.0    # Jaeger v2 binary (cmd/jaeger) at module version v1.76.0

build_prometheus() {
  local dir="$CACHE/prometheus-$PROM_VERSION"
  if [[ ! -x "$dir/bin/prometheus" || ! -x "$dir/bin/promtool" ]]; then
    mkdir -p "$dir/bin"
    echo "building Prometheus $PROM_VERSION into $dir (one time, ~10 min)" >&2
    GOBIN="$dir/bin.tmp" GOFLAGS=-trimpath go install \
      "github.com/prometheus/prometheus/cmd/prometheus@$PROM_VERSION" \
      "github.com/prometheus/prometheus/cmd/promtool@$PROM_VERSION" >&2
    mv "$dir/bin.tmp/prometheus" "$dir/bin.tmp/promtool" "$dir/bin/" && rmdir "$dir/bin.tmp"
  fi
  echo "$dir/bin"
}

build_jaeger() {
  local dir="$CACHE/jaeger-$JAEGER_VERSION"
  if [[ ! -x "$dir/bin/jaeger" ]]; then
    mkdir -p "$dir/bin" "$dir/src"
    echo "building Jaeger $JAEGER_VERSION into $dir (one time, ~6 min)" >&2
    (cd "$dir/src" && { [[ -f go.mod ]] || go mod init volspike-jaeger-build >&2; } \
      && go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_VERSION" >&2 \
      && go build -trimpath -o "$dir/bin/jaeger.tmp" github.com/jaegertracing/jaeger/cmd/jaeger >&2)
    mv "$dir/bin/jaeger.tmp" "$dir/bin/jaeger"
  fi
  echo "$dir/bin"
}

case "${1:-all}" in
  prometheus) build_prometheus ;;
  jaeger) build_jaeger ;;
  all) build_prometheus; build_jaeger ;;
  *) echo "usage: $0 prometheus|jaeger|all" >&2; exit 2 ;;
esac
