"""Kafka ticks -> features -> batched gRPC Predict -> predictions topic (at-least-once)."""
