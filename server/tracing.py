"""The server's tracing comes from the shared telemetry package."""

from telemetry.tracing import make_tracer_provider, otlp_configured

__all__ = ["make_tracer_provider", "otlp_configured"]
