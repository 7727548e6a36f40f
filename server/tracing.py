"""Tracer provider from the standard ``OTEL_*`` variables, passed in explicitly."""

from __future__ import annotations

import os

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

SERVICE_NAME = "volspike-server"


def otlp_configured() -> bool:
    """Export only when an endpoint (or the otlp exporter) is asked for explicitly, so a
    server with no collector does not log connection errors forever."""
    env = os.environ
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or env.get("OTEL_TRACES_EXPORTER", "").lower() == "otlp"
    )


def make_tracer_provider(
    service_name: str = SERVICE_NAME, exporter: SpanExporter | None = None
) -> TracerProvider:
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)  # sampler from OTEL_TRACES_SAMPLER
    if exporter is None and otlp_configured():
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()  # endpoint, headers, timeout from OTEL_* variables
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider
