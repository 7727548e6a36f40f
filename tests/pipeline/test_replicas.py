"""Two server replicas behind one consumer (--server a,b): one is SIGKILLed mid-stream; every
tick is still answered with the model's probability, by the survivor."""

from __future__ import annotations

import signal
import time

from tests.conftest import ServerProcess
from tests.pipeline.conftest import ConsumerProcess, Topics, replay
from tests.pipeline.test_pipeline import check_complete
from tests.server.test_replicas import predicts


def test_a_replica_killed_mid_stream_loses_nothing_and_answers_stay_right(kafka, tmp_path):
    reps = [ServerProcess(tmp_path / f"r{i}").start() for i in range(2)]
    topics = Topics.fresh(kafka)
    c = ConsumerProcess(kafka, ",".join(r.address for r in reps), topics, tmp_path).start()
    try:
        n = replay(kafka, topics.ticks, "--source", "synthetic", "--count", "60000",
                   "--keep-time", "--seed", "12")  # fmt: skip
        deadline = time.monotonic() + 120
        while c.metric("volspike_consumer_predictions_produced_total") < 20_000:
            assert time.monotonic() < deadline, c.log[-3000:]
            time.sleep(0.05)
        both = [predicts(r) for r in reps]
        assert min(both) > 0, both  # both replicas were answering before the kill
        retries0 = c.metric("volspike_consumer_predict_retries_total")
        reps[0].proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        reps[0].proc.wait(10)
        before = predicts(reps[1])
        got = check_complete(kafka, topics, n)  # none lost, every answer the model's
        took = time.monotonic() - killed
        assert predicts(reps[1]) > before  # the survivor took the rest
        retries = c.metric("volspike_consumer_predict_retries_total") - retries0
        dups = sum(len(v) for v in got.values()) - len(got)
        print(f"after the kill: {retries:.0f} retried calls, {dups} duplicate answers, "
              f"the rest answered in {took:.1f} s")  # fmt: skip
        assert dups == 0  # a retried call is one batch answered once: no duplicates
    finally:
        assert c.stop() == 0
        for r in reps:
            r.stop()
