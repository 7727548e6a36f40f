"""The consumer on the real broker against a server it cannot trust (version-skewed or buggy:
a real gRPC server in this process that answers wrongly on purpose). Each case crashed the
consumer at its first scored batch, at every restart, or published answers unchecked:

- a short answer (one probability fewer than rows, or no labels): zip(strict=True) escaped
  run(); now each batch is asked again, then its ticks are dead letters ``bad_answer``;
- a manifest whose drift field is not bins (``["x"]``): AttributeError out of the drift
  code; now drift is skipped and every tick is answered;
- ModelInfo failing (a manifest the server cannot send: invalid UTF-8, over 4 MB) while the
  model lists the features in another order: the check was skipped and the reordered
  answers published; now the batch waits schema_wait_s, then ``schema_unconfirmed``.

In every case: the consumer process stays up, every offset gets exactly one kind of answer
(a prediction or a dead letter with its reason) and the commit covers them all.
(Mutations, each seen failing: zip(strict=True) without the length check; the drift call
without its try; returning "schema fine" when ModelInfo fails.)"""

from __future__ import annotations

import json
import time
from concurrent import futures

import grpc
import pytest

from market.features import FEATURE_NAMES
from proto.volatility.v1 import predictor_pb2 as pb
from proto.volatility.v1 import predictor_pb2_grpc as pb_grpc
from tests.conftest import free_port
from tests.pipeline.conftest import ConsumerProcess, end_offsets
from tests.pipeline.test_hostile import good_ticks, produce
from tools.kafka_io import Topics, read_until

N = 1_500


class Skewed(pb_grpc.PredictorServicer):
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.predicts = self.infos = 0

    def Predict(self, request, context):
        self.predicts += 1
        n = len(request.packed.float32_le) // (4 * len(FEATURE_NAMES))
        probs, labels = [0.25] * n, [False] * n
        if self.mode == "short":
            probs = probs[:-1]
        if self.mode == "no-labels":
            labels = []
        return pb.PredictResponse(
            probabilities=probs, labels=labels, artifact="skewed-v1", decision_threshold=0.5
        )

    def ModelInfo(self, request, context):
        self.infos += 1
        if self.mode == "info-fails":
            context.abort(grpc.StatusCode.INTERNAL, "cannot marshal the manifest")
        names = list(FEATURE_NAMES)[::-1] if self.mode == "info-fails" else list(FEATURE_NAMES)
        manifest = {"feature_names": names}
        if self.mode == "drift-list":
            manifest["drift"] = ["x"]
        return pb.ModelInfoResponse(
            artifact="skewed-v1", feature_names=names, manifest_json=json.dumps(manifest)
        )


def answers(kafka: str, topics: Topics) -> dict[int, str]:
    """offset -> "pred" or the dead letter's reason, once every offset has one."""
    got: dict[int, str] = {}

    def on_pred(m) -> None:
        got.setdefault(json.loads(m.value())["source_offset"], "pred")

    def on_dead(m) -> None:
        h = {k: v.decode() for k, v in m.headers() or ()}
        got.setdefault(int(h["source_offset"]), h["reason"])

    deadline = time.monotonic() + 90
    while len(got) < N and time.monotonic() < deadline:
        read_until(kafka, topics.predictions, lambda: len(got) >= N, on_pred, 5)
        read_until(kafka, topics.dlq, lambda: len(got) >= N, on_dead, 5)
    return got


@pytest.mark.parametrize(
    ("mode", "scored_as"),
    [
        ("short", "bad_answer"),
        ("no-labels", "bad_answer"),
        ("drift-list", "pred"),
        ("info-fails", "schema_unconfirmed"),
    ],
)
def test_the_consumer_survives_an_untrusted_server(kafka, tmp_path, mode, scored_as):
    server = grpc.server(futures.ThreadPoolExecutor(4))
    skewed = Skewed(mode)
    pb_grpc.add_PredictorServicer_to_server(skewed, server)
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    topics = Topics.fresh(kafka, partitions=1)
    produce(kafka, topics.ticks, good_ticks(N, 21, int(time.time() * 1000)))
    env = {"VOLSPIKE_CONSUMER_SCHEMA_WAIT_S": "1.0"}
    c = ConsumerProcess(kafka, f"127.0.0.1:{port}", topics, tmp_path, extra_env=env).start()
    try:
        got = answers(kafka, topics)
        assert sorted(got) == list(range(N)), f"{N - len(got)} offsets unanswered\n{c.log}"
        kinds = set(got.values())
        assert kinds == {"pred", scored_as}, kinds  # warming-up ticks are answered too
        assert skewed.predicts > 0
        assert c.proc is not None and c.proc.poll() is None, c.log  # still running
        assert "Traceback" not in c.log, c.log
        assert c.stop() == 0
        committed, high = end_offsets(kafka, topics.ticks, topics.group, 1)
        assert committed == high == [N]
    finally:
        c.stop()
        server.stop(0)
