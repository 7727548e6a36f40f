"""``python -m consumer``: wiring only (Kafka clients, gRPC stub, metrics, tracing)."""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
from pathlib import Path

from confluent_kafka import Consumer, Producer
from prometheus_client import CollectorRegistry, start_http_server

from compiled_models.manifest_schema_gen import MANIFEST_MAX_BYTES
from config.settings import main_settings
from consumer.channel import PollingThread, ServerAddressError, open_channel, target
from consumer.config import ConsumerSettings
from consumer.metrics import ConsumerMetrics
from consumer.outputs import DeliveryFailures, producer_config
from consumer.pipeline import Pipeline
from market.features import FeatureState, PyFeatureState
from proto.volatility.v1 import predictor_pb2_grpc as pb_grpc
from telemetry.tracing import make_tracer_provider

logger = logging.getLogger("consumer")


def kafka_clients(s: ConsumerSettings) -> tuple[Consumer, Producer, DeliveryFailures]:
    consumer = Consumer(
        {
            "bootstrap.servers": s.bootstrap,
            "group.id": s.group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,  # a crashed member's partitions move on within seconds
            "heartbeat.interval.ms": 1000,
            "fetch.wait.max.ms": 10,
            "queued.max.messages.kbytes": 65536,
        }
    )
    failures = DeliveryFailures()
    producer = Producer(
        {
            "bootstrap.servers": s.bootstrap,
            # acks=all: an output counts as delivered (and its input offset may be committed)
            # only once every in-sync replica has it (min.insync.replicas=2 of 3 on a cluster,
            # tools/kafka_broker.py); idempotence: ordered, no duplicates from producer retries.
            # Both hold on a single node too.
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 500000,
            **producer_config(failures),  # failed deliveries only: no callback per record
        }
    )
    return consumer, producer, failures


def main() -> None:
    s, _ = main_settings("consumer", argparse.ArgumentParser(description=__doc__))
    try:
        target(s.server)  # a malformed --server: say what is wrong, before anything starts
    except ServerAddressError as e:
        print(f"consumer: --server: {e}", file=sys.stderr)
        sys.exit(2)  # as for any other malformed setting
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"
    )
    if FeatureState is PyFeatureState:
        logger.warning(
            "market/_featurestate is not built (make models): features run in Python, ~10x slower"
        )
    registry = CollectorRegistry()
    metrics = ConsumerMetrics(registry, Path(s.drift_report_metrics))
    start_http_server(s.metrics_port, s.metrics_host, registry=registry)
    provider = make_tracer_provider("volspike-consumer")
    consumer, producer, failures = kafka_clients(s)
    # ModelInfo carries a whole manifest: the receive limit fits the largest one the
    # manifest schema allows, with room for the rest of the answer.
    receive = 4 * MANIFEST_MAX_BYTES
    options = [("grpc.enable_retries", 0), ("grpc.max_receive_message_length", receive)]
    channel = open_channel(s.server, options)  # one server, a list, or dns:///name
    polling = PollingThread(channel)  # grpcio's polling thread kept between calls
    pipeline = Pipeline(
        s,
        consumer,
        producer,
        pb_grpc.PredictorStub(channel),
        metrics,
        provider.get_tracer("volspike.consumer"),
        failures,
    )
    signal.signal(signal.SIGTERM, lambda *_: pipeline.stop())
    signal.signal(signal.SIGINT, lambda *_: pipeline.stop())
    logger.info("consuming %s from %s, Predict at %s", s.ticks_topic, s.bootstrap, s.server)
    tune_gc()
    pipeline.run()
    polling.close()
    channel.close()
    provider.shutdown()
    logger.info("stopped cleanly")


def tune_gc() -> None:
    """Once set up: the imported modules' objects leave the collector's generations
    (``gc.freeze``) and a young collection waits for 20,000 net new containers instead of
    700. Each tick allocates a few short-lived containers; with the defaults, collections
    took 21 % of the consumer's CPU while draining (1.37 of 6.40 s; 0.02 s of 4.86 s with
    this). Cyclic garbage is still collected, a little later (docs/benchmarks.md)."""
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


if __name__ == "__main__":
    main()
