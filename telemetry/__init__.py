"""Telemetry helpers shared by the server and the consumer, so neither imports the other."""

from prometheus_client import disable_created_metrics

disable_created_metrics()  # no *_created series: client_golang (the native server) has none
