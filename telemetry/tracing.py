"""Tracer provider from the standard ``OTEL_*`` variables, passed in explicitly."""

from __future__ import annotations

import os

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler, TraceIdRatioBased

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


DEFAULT_ROOT_RATIO = 0.01


def default_sampler() -> Sampler | None:
    """``OTEL_TRACES_SAMPLER`` when set; otherwise a caller's sampled trace is always
    continued and 1 % of root calls start one. Recording every call costs ~15 % of
    one-row throughput (docs/benchmarks.md); 1 % of thousands of calls/s still gives
    exemplars every second."""
    if os.environ.get("OTEL_TRACES_SAMPLER"):
        return None  # the SDK reads OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG
    return ParentBased(TraceIdRatioBased(DEFAULT_ROOT_RATIO))


def make_tracer_provider(
    service_name: str = SERVICE_NAME, exporter: SpanExporter | None = None
) -> TracerProvider:
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource, sampler=default_sampler())
    if exporter is None and otlp_configured():
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()  # endpoint, headers, timeout from OTEL_* variables
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider
