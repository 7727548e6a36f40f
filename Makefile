# Every install step lives here: `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)

DATA := data/es_ticks.parquet
MODEL_SOURCES := $(wildcard compiled_models/*.py compiled_models/*.c market/*.py drift/bins.py)
DEMO_SECONDS ?= 60
GRPC_PORT ?= 50051
METRICS_PORT ?= 8000
WORKERS ?= 1
# The live model config: a copy of config/model.toml (the tracked default) made when missing,
# so `make rollback` never edits a tracked file.
MODEL_CONFIG ?= .run/model.toml
PID_FILE ?= .run/server.pid
ARTIFACT ?=
CONSUMER_METRICS_PORT ?= 8001
KAFKA_PORT ?= 9092
# every broker of `make kafka-up BROKERS=N` (ports KAFKA_PORT+0/2/4...), so replay and consume
# reach the cluster while any one broker is down
KAFKA_BOOTSTRAP ?= $(shell i=0; while [ $$i -lt $(BROKERS) ]; do printf '%s127.0.0.1:%d' "$$sep" $$(($(KAFKA_PORT) + 2 * i)); sep=,; i=$$((i + 1)); done)
KAFKA_CONTROLLER_PORT ?= 9093
BROKERS ?= 1
ifeq ($(shell echo '$(BROKERS) $(KAFKA_PORT)' | grep -Ex '[1-9][0-9]* [1-9][0-9]*'),)
$(error BROKERS ($(BROKERS)) and KAFKA_PORT ($(KAFKA_PORT)) must be positive integers)
endif
KAFKA_DATA ?= $(if $(filter 1,$(BROKERS)),.kafka/broker,.kafka/cluster)
DEMO_RATE ?= 2000
SOURCE ?= synthetic
SPEED ?= 0
COUNT ?=
RATE ?=
PROTOS := proto/volatility/v1/predictor.proto proto/inference/grpc_predict_v2.proto
# SERVER=native: the Go front end (server/native), what the targets below run by default;
# SERVER=python: the Python reference server (`python -m server`, WORKERS processes).
SERVER ?= native
GO ?= go
NATIVE := server/native/volspike-server
GENERATED_GO := server/native/internal/contract/contract_gen.go server/native/internal/rpc/services_gen.go
# every Go file of the module (main, internal/*, gen/*): a change to any of them rebuilds
NATIVE_SOURCES := $(shell find server/native -name '*.go') $(GENERATED_GO) server/native/internal/config/settings_gen.go server/native/go.mod server/native/go.sum
PROTOC_GEN_GO := .tools/bin/protoc-gen-go
GO_PROTO_OPTS := --plugin=protoc-gen-go=$(PROTOC_GEN_GO) --go_opt=module=volspike/server/native/gen \
  --go_opt=Mproto/volatility/v1/predictor.proto=volspike/server/native/gen/volatilitypb \
  --go_opt=Mproto/inference/grpc_predict_v2.proto=volspike/server/native/gen/inferencepb

.PHONY: venv data models native settings test test-fast lint proto proto-check go-tools observability rule-mutations dashboard-snapshot drift serve rollback refit-threshold demo bench-model bench-server bench-pipeline loadtest kafka-up kafka-down replay consume clean

venv: $(VENV)/.installed
# The package (pyproject.toml, editable) with runtime, dev and bench requirements, each pinned.
$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-bench.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements-dev.txt -r requirements-bench.txt
	$(VENV)/bin/pip install -q --no-deps -e .
	touch $@

data: $(DATA)
$(DATA): | $(VENV)/.installed
	$(PY) -m market.realdata

models: compiled_models/.built compiled_models/.fastcall
compiled_models/.fastcall: compiled_models/_fastcall.c market/_featurestate.c consumer/_wire.c consumer/_intake.h consumer/_acks.h compiled_models/build_fastcall.py $(VENV)/.installed
	$(PY) -m compiled_models.build_fastcall
	touch $@

compiled_models/.built: $(VENV)/.installed $(DATA) $(MODEL_SOURCES) compiled_models/.fastcall
	$(PY) -m compiled_models.build
	touch $@

lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	@test -z "$$(gofmt -l server/native)" || { gofmt -l server/native; echo "gofmt: run gofmt -w server/native"; exit 1; }
	cd server/native && $(GO) vet ./...

# The native server: the same contract, metrics and model config, one process on every core.
native: $(NATIVE)
$(NATIVE): $(NATIVE_SOURCES)
	cd server/native && $(GO) build -buildvcs=false -trimpath -o volspike-server .

# Every setting (config/settings.toml) generates the Python settings classes, the native
# server's Settings and docs/server.md's settings table; `make test` fails when they are stale.
SETTINGS_GEN := config/settings_gen.py server/native/internal/config/settings_gen.go
settings: $(SETTINGS_GEN)
$(SETTINGS_GEN) &: config/settings.toml tools/gen_settings.py | $(VENV)/.installed
	$(PY) -m tools.gen_settings

# The contract (errors, metric families, limits: proto/contract.toml) and the services'
# handler interfaces (from the .proto descriptors) are generated for both servers and checked
# in; `make test` fails when they are stale, and a .proto method without a Go handler fails
# this build.
$(GENERATED_GO) server/contract_gen.py &: proto/contract.toml tools/gen_contract.py tools/gen_schema.py proto/volatility/v1/predictor_pb2.py proto/inference/grpc_predict_v2_pb2.py | $(VENV)/.installed
	$(PY) -m tools.gen_schema

$(PROTOC_GEN_GO):
	GOBIN=$(CURDIR)/.tools/bin $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12

# Stubs are checked in; proto-check fails when they drift from the .proto files.
proto: $(VENV)/.installed $(PROTOC_GEN_GO)
	$(PY) -m grpc_tools.protoc -I . --python_out=. --grpc_python_out=. --pyi_out=. $(PROTOS)
	$(PY) -m grpc_tools.protoc -I . $(GO_PROTO_OPTS) --go_out=server/native/gen $(PROTOS)

proto-check: $(VENV)/.installed $(PROTOC_GEN_GO)
	@tmp=$$(mktemp -d); mkdir $$tmp/gen; \
	$(PY) -m grpc_tools.protoc -I . --python_out=$$tmp --grpc_python_out=$$tmp --pyi_out=$$tmp $(PROTOS); \
	$(PY) -m grpc_tools.protoc -I . $(GO_PROTO_OPTS) --go_out=$$tmp/gen $(PROTOS); \
	for f in $$(cd $$tmp && find proto -name '*_pb2*'); do \
	  diff -q $$tmp/$$f $$f >/dev/null || { echo "stale stub $$f: run make proto"; rm -rf $$tmp; exit 1; }; \
	done; \
	for f in $$(cd $$tmp/gen && find . -name '*.pb.go'); do \
	  diff -q $$tmp/gen/$$f server/native/gen/$$f >/dev/null || { echo "stale stub server/native/gen/$$f: run make proto"; rm -rf $$tmp; exit 1; }; \
	done; rm -rf $$tmp; echo "proto stubs up to date"

# Prometheus 3.16 + promtool and Jaeger v2, built once from the Go module proxy and cached
# outside the repo (~/.cache/volspike-tools/<tool>-<version>): ~10 min of CPU the first time.
go-tools:
	tools/build_go_tools.sh all

# Rules and dashboard are generated from observability/slo.toml; the tests fail when they are stale.
observability: $(VENV)/.installed
	$(PY) -m observability.generate

# Mutation test of the generated rules: each single change to a number, window, `for`, le bound
# or matcher must fail a promtool test (tools/mutate_rules.py; also run by make test).
rule-mutations: $(VENV)/.installed go-tools
	$(PY) -m tools.mutate_rules

# The drift report's own environment: Evidently is ~1 GB and needs pandas < 3.
DRIFT_VENV := .venv-drift
$(DRIFT_VENV)/.installed: requirements-drift.txt
	$(PYTHON) -m venv $(DRIFT_VENV)
	$(DRIFT_VENV)/bin/pip install -q --upgrade pip
	$(DRIFT_VENV)/bin/pip install -q -r requirements-drift.txt
	touch $@

# make drift [DRIFT_ARGS="--artifact xgb-v1 --live .run/live-sample"]: exit 1 above the gate.
# It reads the live model config the server serves from (and `make rollback` edits).
DRIFT_ARGS ?=
drift: models $(DRIFT_VENV)/.installed
	$(DRIFT_VENV)/bin/python -m drift.report --model-config $(MODEL_CONFIG) $(DRIFT_ARGS)

# The unit-level tests (no server, Kafka or Prometheus process) and the two servers' differential
# (`-m "not slow"`; tests/server/test_differential.py is marked fast_tier, ~6 s).
test-fast: models native lint
	$(PY) -m pytest -q -m "not slow"

test: models native lint proto-check go-tools $(DRIFT_VENV)/.installed
	cd server/native && $(GO) test ./...
	$(PY) -m observability.generate --check
	$(PY) -m tools.gen_schema --check
	$(PY) -m tools.gen_settings --check
	$(PY) -m pytest -q

SERVE_ARGS = --port $(GRPC_PORT) --metrics-port $(METRICS_PORT) --model-config $(MODEL_CONFIG) --pid-file $(PID_FILE)
serve: models $(if $(filter native,$(SERVER)),native)
	@mkdir -p $(dir $(PID_FILE)) $(dir $(MODEL_CONFIG))
	@test -e $(MODEL_CONFIG) || { cp config/model.toml $(MODEL_CONFIG); echo "$(MODEL_CONFIG): copied from config/model.toml"; }
	@echo "model config: $(MODEL_CONFIG) ($$(grep '^artifact' $(MODEL_CONFIG)))"
ifeq ($(SERVER),native)
	$(NATIVE) $(SERVE_ARGS)
else
	$(PY) -m server $(SERVE_ARGS) --workers $(WORKERS)
endif

# Order-only: an emergency rollback never reinstalls the virtualenv.
rollback: | $(VENV)/.installed
	$(PY) -m server.rollback --artifact "$(ARTIFACT)" --model-config $(MODEL_CONFIG) --pid-file $(PID_FILE) \
	  --address 127.0.0.1:$(GRPC_PORT) --metrics-port $(METRICS_PORT)

# Refit the served artifact's decision threshold on its scores of the last REFIT_WINDOW_S
# seconds of the predictions topic (flagging REFIT_RATE of them) into the live model config;
# both servers apply it on reload. Run it on a schedule (docs/runbook.md). Unset, both are
# the defaults the build replays (6 h, the alert rate of compiled_models/train.py).
REFIT_WINDOW_S ?=
REFIT_RATE ?=
refit-threshold: | $(VENV)/.installed
	$(PY) -m server.refit_threshold --bootstrap 127.0.0.1:$(KAFKA_PORT) --model-config $(MODEL_CONFIG) \
	  $(if $(REFIT_WINDOW_S),--window-s $(REFIT_WINDOW_S)) $(if $(REFIT_RATE),--rate $(REFIT_RATE)) \
	  --address 127.0.0.1:$(GRPC_PORT)

PROMETHEUS_PORT ?= 9090
DEMO_ARGS = --server $(SERVER) --port $(GRPC_PORT) --metrics-port $(METRICS_PORT) \
  --consumer-metrics-port $(CONSUMER_METRICS_PORT) --kafka-port $(KAFKA_PORT) --prometheus-port $(PROMETHEUS_PORT)
demo: models native
	$(PY) -m tools.demo $(DEMO_ARGS) --seconds $(DEMO_SECONDS) --rate $(DEMO_RATE)

# A demo with one rollback half-way, rendered from the live Prometheus into docs/dashboard.png.
SNAPSHOT ?= docs/dashboard.png
dashboard-snapshot: models native go-tools
	$(PY) -m tools.demo $(DEMO_ARGS) --seconds 150 --rate 2000 --rollback-at 75 --snapshot $(SNAPSHOT)

# Kafka (KRaft) from Maven Central jars; stopped by PID. One node by default; BROKERS=3: three
# broker+controller nodes on KAFKA_PORT+0/2/4 (quorum on KAFKA_CONTROLLER_PORT+0/2/4), data in
# .kafka/cluster, topics replicated 3 times with min.insync.replicas=2 (docs/pipeline.md).
# Stop it with `make kafka-down BROKERS=3`.
kafka-up: $(VENV)/.installed
	$(PY) -m tools.kafka_broker up --brokers $(BROKERS) --port $(KAFKA_PORT) --controller-port $(KAFKA_CONTROLLER_PORT) --data-dir $(KAFKA_DATA)

kafka-down: $(VENV)/.installed
	$(PY) -m tools.kafka_broker down --data-dir $(KAFKA_DATA)

# make replay SOURCE=real SPEED=10 | SOURCE=synthetic COUNT=1000000 RATE=5000
replay: $(VENV)/.installed
	$(PY) -m tools.replay --bootstrap $(KAFKA_BOOTSTRAP) --source $(SOURCE) --speed $(SPEED) \
	  $(if $(COUNT),--count $(COUNT)) $(if $(RATE),--rate $(RATE))

# make consume [CONSUMER_SERVER=127.0.0.1:50051,127.0.0.1:50061 | dns:///name:port]: replicas,
# balanced per call (round_robin, health-checked; consumer/channel.py)
CONSUMER_SERVER ?= 127.0.0.1:$(GRPC_PORT)
consume: $(VENV)/.installed compiled_models/.fastcall
	$(PY) -m consumer --bootstrap $(KAFKA_BOOTSTRAP) --server $(CONSUMER_SERVER) \
	  --metrics-port $(CONSUMER_METRICS_PORT)

# make bench-pipeline [BENCH_PIPELINE_ARGS="--rates 2000,5000,10000,20000,50000,max,drain --repeats 1"]
# (default: issue 24's goals, three rounds each, ~7 min)
BENCH_PIPELINE_ARGS ?= --rates 20000,50000,drain --repeats 3
bench-pipeline: models native
	$(PY) -m tools.bench_pipeline --server $(SERVER) $(BENCH_PIPELINE_ARGS)

# make loadtest [LOADTEST_HOST=...] [SLO_P95_MS=...] [SLO_MIN_RPS=...] [SLO_MAX_ERROR_RATIO=...]
LOADTEST_HOST ?= 127.0.0.1:$(GRPC_PORT)
LOADTEST_USERS ?= 8
LOADTEST_SECONDS ?= 30
LOADTEST_SCENARIO ?= mix
SLO_P95_MS ?=
SLO_MIN_RPS ?=
SLO_MAX_ERROR_RATIO ?=
loadtest: models native
	$(PY) -m loadtest.gate --server $(SERVER) --host $(LOADTEST_HOST) --users $(LOADTEST_USERS) \
	  --duration $(LOADTEST_SECONDS) --scenario $(LOADTEST_SCENARIO) --metrics-port $(METRICS_PORT) \
	  $(if $(SLO_P95_MS),--slo-p95-ms $(SLO_P95_MS)) $(if $(SLO_MIN_RPS),--slo-min-rps $(SLO_MIN_RPS)) \
	  $(if $(SLO_MAX_ERROR_RATIO),--slo-max-error-ratio $(SLO_MAX_ERROR_RATIO))

bench-model: models
	$(PY) -m compiled_models.bench

# Benchmark-only tools, kept out of the test environment: ghz (Go) and MLServer (own venv).
GHZ := .tools/bin/ghz
$(GHZ):
	GOBIN=$(CURDIR)/.tools/bin go install github.com/bojand/ghz/cmd/ghz@v0.93.0

.venv-mlserver/.installed: requirements-mlserver.txt
	$(PYTHON) -m venv .venv-mlserver
	.venv-mlserver/bin/pip install -q -r requirements-mlserver.txt
	touch $@

bench-server: models $(GHZ) .venv-mlserver/.installed
	$(PY) -m tools.bench_server

clean:
	rm -rf compiled_models/*/ compiled_models/.built compiled_models/.fastcall compiled_models/_fastcall*.so

# Kubernetes (docs/deploy.md): manifests rendered from typed API structs (deploy/gen) into
# deploy/rendered; tests/test_deploy.py fails when they are stale. test-k8s applies them to a
# real kube-apiserver + etcd (+ controllers and kwok nodes) on 127.0.0.1, built once and cached
# under ~/.cache/volspike-tools/k8s-<version>/ by tools/build_k8s.sh.
.PHONY: deploy deploy-check k8s-tools test-k8s
deploy:
	cd deploy/gen && $(GO) run . -root $(CURDIR)

deploy-check:
	@test -z "$$(gofmt -l deploy/gen)" || { gofmt -l deploy/gen; echo "gofmt: run gofmt -w deploy/gen"; exit 1; }
	cd deploy/gen && $(GO) vet ./... && $(GO) run . -root $(CURDIR) -check

k8s-tools:
	tools/build_k8s.sh all

test-k8s: $(VENV)/.installed k8s-tools
	VOLSPIKE_K8S_TEST=1 $(PY) -m pytest -q -s tests/k8s
