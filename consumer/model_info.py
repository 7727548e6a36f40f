"""ModelInfo off the loop, and the schema check it serves.

Packed rows carry no names: an artifact listing other features than this consumer computes
(same width, another order) would score the wrong columns. So a batch is published only
once ModelInfo has confirmed its artifact's feature list: asked once per artifact and again
every SCHEMA_RECHECK_S (a server keeps one schema per process, but a restarted one may serve
a rebuilt artifact of the same name). ModelInfo is asked on a small background thread: while
an answer is awaited only the batch that needs it waits (at the head of the in-flight queue);
the loop goes on consuming, sending, delivering and committing. Fails closed: while ModelInfo
fails, the batch waits (asked again with backoff) up to schema_wait_s from the first
failure, then its ticks are dead letters (schema_unconfirmed) until ModelInfo answers again;
never published unchecked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

import grpc

from consumer.batcher import Batch
from consumer.config import ConsumerSettings
from consumer.metrics import ConsumerMetrics
from consumer.outputs import Outputs
from market.features import FEATURE_NAMES
from proto.volatility.v1 import predictor_pb2 as pb
from proto.volatility.v1 import predictor_pb2_grpc as pb_grpc
from telemetry import names_gen as contract

logger = logging.getLogger("consumer.pipeline")  # one name for the consumer's log lines

SCHEMA_RECHECK_S = 60.0
"""How long an artifact's checked feature list is trusted before ModelInfo is asked again."""
FAILED_RECHECK_S = 5.0
"""After a failed ModelInfo, how long callers go on without it before it is asked again."""
INFO_DEADLINE_S = 0.5
"""A healthy server answers ModelInfo in about a millisecond."""
MAX_ARTIFACTS = 16
"""Artifacts whose ModelInfo and retry times are remembered at once: a server naming a new
artifact in every answer must not grow the consumer without bound."""


class _Pending:
    def __repr__(self) -> str:
        return "PENDING"


PENDING = _Pending()
"""An answer of ModelInfo is on its way."""


def remember(d: dict, artifact: str, value) -> None:
    """Per-artifact memory, the newest MAX_ARTIFACTS only."""
    d.pop(artifact, None)
    d[artifact] = value
    while len(d) > MAX_ARTIFACTS:
        del d[next(iter(d))]


class ModelInfos:
    """ModelInfo answers by artifact, asked on one background thread, never on the loop."""

    def __init__(self, stub: pb_grpc.PredictorStub) -> None:
        self.stub = stub
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="model-info")
        # artifact -> (its ModelInfo, None after a failed call; when to ask again)
        self.known: dict[str, tuple[pb.ModelInfoResponse | None, float]] = {}
        self.asking: dict[str, tuple[Future, float]] = {}  # artifact -> (answer, asked at)

    def lookup(self, artifact: str) -> pb.ModelInfoResponse | _Pending | None:
        """The artifact's ModelInfo (None: the last call failed, FAILED_RECHECK_S ago at
        most); asked again once SCHEMA_RECHECK_S old. PENDING while an answer is awaited."""
        if artifact not in self.asking:
            info, until = self.known.get(artifact, (None, 0.0))
            if time.monotonic() < until:
                return info
            self.ask(artifact)
        return self.collect(artifact)

    def fresh(self, artifact: str) -> pb.ModelInfoResponse | None:
        """What ``lookup`` last found, without asking."""
        return self.known.get(artifact, (None, 0.0))[0]

    def ask(self, artifact: str) -> None:
        """Ask now, cached or not (unless an answer is already awaited)."""
        if artifact not in self.asking:
            fut = self.pool.submit(self._call, artifact)
            self.asking[artifact] = (fut, time.monotonic())

    def collect(self, artifact: str) -> pb.ModelInfoResponse | _Pending | None:
        """The awaited answer once it is in (None: the call failed)."""
        fut, asked = self.asking[artifact]
        if not fut.done():
            return PENDING
        del self.asking[artifact]
        try:
            info = fut.result()
        except grpc.RpcError as exc:
            logger.warning(
                "ModelInfo for %s failed (%s); asking again in 5 s", artifact[:64], exc.code()
            )
            remember(self.known, artifact, (None, asked + FAILED_RECHECK_S))
            return None
        remember(self.known, artifact, (info, asked + SCHEMA_RECHECK_S))
        return info

    def wait(self, artifact: str) -> None:
        """Until the awaited answer is in (at most the call's deadline)."""
        wait([self.asking[artifact][0]])

    def _call(self, artifact: str) -> pb.ModelInfoResponse:
        return self.stub.ModelInfo(pb.ModelInfoRequest(model=artifact), timeout=INFO_DEADLINE_S)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


@dataclass
class _Confirming:
    """A batch waiting for ModelInfo to answer after it failed."""

    until: float  # schema_wait_s after the artifact's first failure
    next_ask: float
    delay: float  # the backoff after the next failed ask


class SchemaCheck:
    def __init__(
        self,
        settings: ConsumerSettings,
        infos: ModelInfos,
        outputs: Outputs,
        metrics: ConsumerMetrics,
        sleep: Callable[[float], None],
        aborting: Callable[[], bool],
    ) -> None:
        """``sleep``: waits while the loop's housekeeping goes on (used when waiting is
        asked for: draining); ``aborting``: stop waiting."""
        self.s, self.infos, self.outputs, self.metrics = settings, infos, outputs, metrics
        self.sleep, self.aborting = sleep, aborting
        self.unconfirmed: dict[str, float] = {}  # artifact -> since when ModelInfo fails

    def passes(self, b: Batch, artifact: str, wait: bool = False) -> bool | None:
        """True: publish the batch; False: its scored ticks are dead letters now; None:
        it waits for ModelInfo (never with ``wait``: then it is waited for here)."""
        while True:
            verdict = self._verdict(b, artifact)
            if verdict is not None or not wait:
                return verdict
            if artifact in self.infos.asking:
                self.infos.wait(artifact)
            elif isinstance(b.schema, _Confirming):
                self.sleep(max(b.schema.next_ask - time.monotonic(), 0.0))

    def _verdict(self, b: Batch, artifact: str) -> bool | None:
        confirming = b.schema
        if confirming is None:  # the cache, or one ask
            info = self.infos.lookup(artifact)
            if info is None:
                self.metrics.errors.labels("schema_check").inc()
                return self._start_confirming(b, artifact)
        else:
            assert isinstance(confirming, _Confirming)
            info = self._confirm(artifact, confirming)
            if info is None:
                return self._refuse_unconfirmed(b, artifact)
        if info is PENDING:
            return None
        assert isinstance(info, pb.ModelInfoResponse)
        b.schema = None
        self.unconfirmed.pop(artifact, None)
        names = tuple(info.feature_names)
        if not schema_differs(names):
            return True
        self.outputs.dead_letter_batch(
            b, schema_reason(artifact, names), contract.REASON_SCHEMA_MISMATCH
        )
        return False

    def _start_confirming(self, b: Batch, artifact: str) -> bool | None:
        """ModelInfo failed: the batch waits (asked again with backoff) until schema_wait_s
        after the artifact's first failure."""
        now = time.monotonic()
        if artifact not in self.unconfirmed:
            remember(self.unconfirmed, artifact, now)
        until = self.unconfirmed[artifact] + self.s.schema_wait_s
        self._unless_aborting(artifact)
        if now >= until:
            return self._refuse_unconfirmed(b, artifact)
        b.schema = _Confirming(until, now + min(0.1, until - now), 0.2)
        return None

    def _confirm(self, artifact: str, c: _Confirming) -> pb.ModelInfoResponse | _Pending | None:
        """Its answer (None: failed for good), or PENDING while the batch may wait on."""
        if artifact not in self.infos.asking:
            self._unless_aborting(artifact)
            if time.monotonic() < c.next_ask:
                return PENDING
            self.infos.ask(artifact)
        info = self.infos.collect(artifact)
        if info is not None:
            return info  # the answer, or PENDING
        now = time.monotonic()
        self._unless_aborting(artifact)
        if now >= c.until:
            return None
        c.next_ask = now + min(c.delay, c.until - now)
        c.delay = min(c.delay * 2, 2.0)
        return PENDING

    def _unless_aborting(self, artifact: str) -> None:
        """A second stop signal while a batch waits for ModelInfo: stop without an answer and
        without a dead letter, so its ticks stay uncommitted and are read again after the
        restart (as an aborted Predict retry does). Dead-lettering them would drop ticks a
        restarted consumer could score (found by a hostile review)."""
        if self.aborting():
            raise RuntimeError(
                f"aborted while ModelInfo confirms artifact {artifact[:64]!r}: "
                "its ticks stay uncommitted"
            )

    def _refuse_unconfirmed(self, b: Batch, artifact: str) -> bool:
        b.schema = None
        reason = (
            f"ModelInfo could not confirm the feature list of artifact {artifact[:64]!r} "
            f"within {self.s.schema_wait_s:g} s; answers are never published unchecked"
        )
        self.outputs.dead_letter_batch(b, reason, contract.REASON_SCHEMA_UNCONFIRMED)
        return False


def schema_differs(names: tuple[str, ...]) -> bool:
    """The artifact lists other features (names or order) than this consumer computes."""
    return names != FEATURE_NAMES


def schema_reason(artifact: str, names: tuple[str, ...]) -> str:
    return (
        f"artifact {artifact} lists features {[n[:64] for n in names[:16]]}"
        f"{' and more' if len(names) > 16 else ''}; this consumer computes "
        f"{list(FEATURE_NAMES)}"
    )
