# Every install step lives here: `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)

DATA := data/es_ticks.parquet
MODEL_SOURCES := $(wildcard compiled_models/*.py compiled_models/*.c market/*.py)
DEMO_SECONDS ?= 40
GRPC_PORT ?= 50051
METRICS_PORT ?= 8000
WORKERS ?= 1
MODEL_CONFIG ?= config/model.toml
PID_FILE ?= .run/server.pid
ARTIFACT ?=
CONSUMER_METRICS_PORT ?= 8001
KAFKA_PORT ?= 9092
KAFKA_CONTROLLER_PORT ?= 9093
KAFKA_DATA ?= .kafka/broker
DEMO_RATE ?= 5000
SOURCE ?= synthetic
SPEED ?= 0
COUNT ?=
RATE ?=
PROTOS := proto/volatility/v1/predictor.proto proto/inference/grpc_predict_v2.proto

.PHONY: venv data models test lint proto proto-check serve rollback demo bench-model bench-server bench-pipeline loadtest kafka-up kafka-down replay consume clean

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	touch $@

data: $(DATA)
$(DATA): | $(VENV)/.installed
	$(PY) -m market.realdata

models: compiled_models/.built compiled_models/.fastcall
compiled_models/.fastcall: compiled_models/_fastcall.c compiled_models/build_fastcall.py $(VENV)/.installed
	$(PY) -m compiled_models.build_fastcall
	touch $@

compiled_models/.built: $(VENV)/.installed $(DATA) $(MODEL_SOURCES) compiled_models/.fastcall
	$(PY) -m compiled_models.build
	touch $@

lint: $(VENV)/.installed
	$(PY) -m ruff check .

# Stubs are checked in; proto-check fails when they drift from the .proto files.
proto: $(VENV)/.installed
	$(PY) -m grpc_tools.protoc -I . --python_out=. --grpc_python_out=. --pyi_out=. $(PROTOS)

proto-check: $(VENV)/.installed
	@tmp=$$(mktemp -d); \
	$(PY) -m grpc_tools.protoc -I . --python_out=$$tmp --grpc_python_out=$$tmp --pyi_out=$$tmp $(PROTOS); \
	for f in $$(cd $$tmp && find proto -name '*_pb2*'); do \
	  diff -q $$tmp/$$f $$f >/dev/null || { echo "stale stub $$f: run make proto"; rm -rf $$tmp; exit 1; }; \
	done; rm -rf $$tmp; echo "proto stubs up to date"

test: models lint proto-check
	$(PY) -m pytest -q

serve: models
	$(PY) -m server --port $(GRPC_PORT) --metrics-port $(METRICS_PORT) --workers $(WORKERS) \
	  --model-config $(MODEL_CONFIG) --pid-file $(PID_FILE)

rollback: $(VENV)/.installed
	$(PY) -m server.rollback --artifact "$(ARTIFACT)" --model-config $(MODEL_CONFIG) --pid-file $(PID_FILE)

demo: models
	$(PY) -m tools.demo --seconds $(DEMO_SECONDS) --port $(GRPC_PORT) --metrics-port $(METRICS_PORT) \
	  --consumer-metrics-port $(CONSUMER_METRICS_PORT) --kafka-port $(KAFKA_PORT) --rate $(DEMO_RATE)

# Kafka (KRaft, one node) from Maven Central jars; stopped by PID.
kafka-up: $(VENV)/.installed
	$(PY) -m tools.kafka_broker up --port $(KAFKA_PORT) --controller-port $(KAFKA_CONTROLLER_PORT) --data-dir $(KAFKA_DATA)

kafka-down: $(VENV)/.installed
	$(PY) -m tools.kafka_broker down --data-dir $(KAFKA_DATA)

# make replay SOURCE=real SPEED=10 | SOURCE=synthetic COUNT=1000000 RATE=5000
replay: $(VENV)/.installed
	$(PY) -m tools.replay --bootstrap 127.0.0.1:$(KAFKA_PORT) --source $(SOURCE) --speed $(SPEED) \
	  $(if $(COUNT),--count $(COUNT)) $(if $(RATE),--rate $(RATE))

consume: $(VENV)/.installed
	$(PY) -m consumer --bootstrap 127.0.0.1:$(KAFKA_PORT) --server 127.0.0.1:$(GRPC_PORT) \
	  --metrics-port $(CONSUMER_METRICS_PORT)

bench-pipeline: models
	$(PY) -m tools.bench_pipeline

# make loadtest [LOADTEST_HOST=...] [SLO_P95_MS=...] [SLO_MIN_RPS=...] [SLO_MAX_ERROR_RATIO=...]
LOADTEST_HOST ?= 127.0.0.1:$(GRPC_PORT)
LOADTEST_USERS ?= 8
LOADTEST_SECONDS ?= 30
LOADTEST_SCENARIO ?= mix
SLO_P95_MS ?=
SLO_MIN_RPS ?=
SLO_MAX_ERROR_RATIO ?=
loadtest: models
	$(PY) -m loadtest.gate --host $(LOADTEST_HOST) --users $(LOADTEST_USERS) \
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
