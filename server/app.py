"""Construction apart from running: ``create_server`` builds and binds, returns the port."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.sdk.trace import TracerProvider

from proto.inference import grpc_predict_v2_pb2 as v2
from proto.volatility.v1 import predictor_pb2 as pb
from server.config import Settings, active_artifact
from server.kserve import InferenceService
from server.metrics import ServerMetrics
from server.predictor import PredictorService
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
    server: grpc.aio.Server
    port: int
    registry: ModelRegistry
    health: health.aio.HealthServicer
    metrics: ServerMetrics
    settings: Settings

    async def set_serving(self, serving: bool) -> None:
        status = SERVING if serving else NOT_SERVING
        for name in ("", *SERVICES):
            await self.health.set(name, status)
        self.metrics.serving.set(1 if serving else 0)

    async def load_configured(self) -> bool:
        """Activate the artifact the config names (off the event loop); False on failure,
        in which case whatever was serving keeps serving."""
        try:
            name = active_artifact(self.settings.model_config)
            active = self.registry.active
            if active is not None and active.name == name:
                return True
            await asyncio.to_thread(self.registry.activate, name)
        except Exception:
            logger.exception("model switch from %s failed", self.settings.model_config)
            return False
        await self.set_serving(True)
        return True


def create_server(
    settings: Settings, metrics: ServerMetrics, tracer_provider: TracerProvider
) -> App:
    """Build the server with every service registered and bind ``settings.port``
    (0 picks a free port). Health starts NOT_SERVING until a model is warm."""
    tracer = tracer_provider.get_tracer("volspike.server")
    registry = ModelRegistry(settings.models_dir, metrics)
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            ("grpc.so_reuseport", 1),
        ]
    )
    predictor = PredictorService(registry, metrics, tracer, settings)
    kserve = InferenceService(registry, metrics, tracer, settings)
    server.add_generic_rpc_handlers(
        (
            generic_handler(predictor, pb.DESCRIPTOR.services_by_name["Predictor"]),
            generic_handler(kserve, v2.DESCRIPTOR.services_by_name["GRPCInferenceService"]),
        )
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(f"{settings.host}:{settings.port}")
    if port == 0:
        raise OSError(f"could not bind {settings.host}:{settings.port}")
    return App(server, port, registry, health_servicer, metrics, settings)
