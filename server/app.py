"""Construction apart from running: ``create_server`` builds and binds, returns the port.

grpc's thread-pool server, not ``grpc.aio``: measured on one core with ghz, a bare health
check peaks at ~4,000-4,700 calls/s on the thread-pool server and ~2,400-2,600 on
``grpc.aio`` (docs/benchmarks.md), and the native predict releases the GIL, so handler
threads also score large batches in parallel without an event loop to protect.
"""

from __future__ import annotations

import logging
from concurrent import futures
from dataclasses import dataclass

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, duration_pb2, timestamp_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2
from opentelemetry.sdk.trace import TracerProvider

from proto.inference import grpc_predict_v2_pb2 as v2
from proto.volatility.v1 import predictor_pb2 as pb
from server import contract_gen as contract
from server.config import Settings, read_model_config
from server.kserve import InferenceService
from server.metrics import ServerMetrics
from server.predictor import PredictorService
from server.ratelimit import limit_client_triggered_logs
from server.registry import ModelRegistry
from server.rpc import generic_handler

logger = logging.getLogger(__name__)
SERVICES = (
    pb.DESCRIPTOR.services_by_name["Predictor"].full_name,
    v2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
)
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class App:
    server: grpc.Server
    port: int
    registry: ModelRegistry
    health: health.HealthServicer
    metrics: ServerMetrics
    settings: Settings

    def set_serving(self, serving: bool) -> None:
        status = SERVING if serving else NOT_SERVING
        for name in ("", *SERVICES):
            self.health.set(name, status)
        self.metrics.serving.set(1 if serving else 0)

    def load_configured(self) -> bool:
        """Activate the artifact the config names; False on failure, in which case
        whatever was serving keeps serving. Runs off the request threads."""
        try:
            config = read_model_config(self.settings.model_config)
        except Exception:  # half-written or wrong: counted like a failed load
            self.metrics.reloads.labels(contract.RESULT_FAILED).inc()
            logger.exception("model config %s is unreadable", self.settings.model_config)
            return False
        try:
            self.registry.configure(
                config.artifact, config.servable, config.model_name, dict(config.decision_threshold)
            )
        except Exception:
            logger.exception("model switch from %s failed", self.settings.model_config)
            return False
        self.set_serving(True)
        return True


def reflection_pool() -> descriptor_pool.DescriptorPool:
    """Our descriptors with ``json_name`` filled in as protoc writes them (the generated
    Python modules drop it), so grpcurl prints the standard proto3 JSON names
    (``artifactSha256``), exactly as it does against the native server. google.rpc's
    error details are there so grpcurl can print a failed call's ErrorInfo."""
    pool = descriptor_pool.DescriptorPool()
    for fd in (
        timestamp_pb2.DESCRIPTOR,
        duration_pb2.DESCRIPTOR,
        error_details_pb2.DESCRIPTOR,
        pb.DESCRIPTOR,
        v2.DESCRIPTOR,
        health_pb2.DESCRIPTOR,
        reflection_pb2.DESCRIPTOR,
    ):
        proto = descriptor_pb2.FileDescriptorProto()
        fd.CopyToProto(proto)
        _fill_json_names(proto.message_type)
        pool.Add(proto)
    return pool


def _fill_json_names(messages) -> None:
    for m in messages:
        for f in m.field:
            head, *rest = f.name.split("_")
            f.json_name = head + "".join(w[:1].upper() + w[1:] for w in rest)
        _fill_json_names(m.nested_type)


def create_server(
    settings: Settings, metrics: ServerMetrics, tracer_provider: TracerProvider
) -> App:
    """Build the server with every service registered and bind ``settings.port``
    (0 picks a free port). Health starts NOT_SERVING until a model is warm."""
    limit_client_triggered_logs()  # a client must not be able to write a line per call
    tracer = tracer_provider.get_tracer("volspike.server")
    registry = ModelRegistry(settings.models_dir, metrics)
    server = grpc.server(
        futures.ThreadPoolExecutor(settings.threads, thread_name_prefix="rpc"),
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            ("grpc.so_reuseport", 1),
            # replicas: clients reconnect (and re-balance) at least this often
            ("grpc.max_connection_age_ms", int(settings.max_connection_age_seconds * 1000)),
            ("grpc.max_connection_age_grace_ms", int(settings.grace_seconds * 1000)),
        ],
    )
    predictor = PredictorService(registry, metrics, tracer, settings)
    kserve = InferenceService(registry, metrics, tracer, settings)
    server.add_generic_rpc_handlers(
        (
            generic_handler(predictor, pb.DESCRIPTOR.services_by_name["Predictor"]),
            generic_handler(kserve, v2.DESCRIPTOR.services_by_name["GRPCInferenceService"]),
        )
    )
    # Watch streams must not pin handler threads while they wait for changes.
    health_servicer = health.HealthServicer(
        experimental_non_blocking=True,
        experimental_thread_pool=futures.ThreadPoolExecutor(2, thread_name_prefix="health"),
    )
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME), server, pool=reflection_pool()
    )
    port = server.add_insecure_port(f"{settings.host}:{settings.port}")
    if port == 0:
        raise OSError(f"could not bind {settings.host}:{settings.port}")
    return App(server, port, registry, health_servicer, metrics, settings)
