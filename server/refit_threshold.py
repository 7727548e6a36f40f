"""``make refit-threshold``: refit the served artifact's decision threshold on the scores it
gave over a trailing window of the predictions topic, so that it flags the target share of
rows again, and write it into the model config (``[decision_threshold]``), which both
servers apply on their next reload (file watcher or SIGHUP) without a restart.

The rule is the build's (compiled_models/evaluate.py ``threshold_for_rate``): the lowest
score that flags at most ``--rate`` of the window's scored rows. Run it on a schedule (the
build measures an hourly refit over a 6-hour window: docs/model.md). It refuses, and leaves
the config as it is, when the window holds fewer than ``--min-rows`` scored rows of the
artifact. Exit 0: written (and, with ``--address``, served); 1: refused or not served."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import tomllib
import uuid
from array import array
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
from confluent_kafka import Consumer, KafkaException, TopicPartition

from compiled_models.evaluate import REFIT_MIN_ROWS, REFIT_WINDOW_MS, threshold_for_rate
from compiled_models.manifest import Manifest
from compiled_models.train import ALERT_RATE
from config.model_config import (
    ModelConfig,
    parse_model_config,
    read_model_config,
    replace_model_config,
)
from server.config import ROOT

SECTION = "decision_threshold"


class RefitError(Exception):
    """The refit cannot be made; the message says why."""


@dataclass(frozen=True)
class Window:
    scores: np.ndarray  # float32 probabilities of the artifact, scored rows only
    first_ms: int  # record timestamps of the first and last of them
    last_ms: int
    records: int  # every record read in the window (warm-up, other artifacts included)


def read_window(
    bootstrap: str, topic: str, artifact: str, window_s: float, timeout_s: float = 600.0
) -> Window:
    """The probabilities ``artifact`` gave in the records of ``topic`` stamped within the
    last ``window_s`` seconds, up to the end of every partition as it was at the start.
    Reads about a million records a second here: size the window to the stream (6 h at
    2,000 ticks/s is 43 M records, ~1 min and 170 MB). A redelivered answer (at least once)
    counts twice. Raises ``RefitError`` when a partition cannot be read whole."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"refit-threshold-{uuid.uuid4().hex}",  # reads, never commits
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10)
        parts = meta.topics[topic].partitions if topic in meta.topics else {}
        if not parts or meta.topics[topic].error is not None:
            raise SystemExit(f"refit-threshold: topic {topic!r} not found at {bootstrap}")
        since_ms = int((time.time() - window_s) * 1000)
        starts = consumer.offsets_for_times(
            [TopicPartition(topic, p, since_ms) for p in sorted(parts)], timeout=10
        )
        bad = [tp for tp in starts if tp.error is not None]
        if bad:  # a refit on some partitions only would be biased: none at all
            raise RefitError(f"partition {bad[0].partition} of {topic!r}: {bad[0].error}")
        ends = {}
        for p in parts:
            marks = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if marks is None:
                raise RefitError(f"partition {p} of {topic!r}: no offsets within 10 s")
            ends[p] = marks[1]
        todo = {
            tp.partition: ends[tp.partition] for tp in starts if 0 <= tp.offset < ends[tp.partition]
        }
        consumer.assign([tp for tp in starts if tp.partition in todo])
        scores = array("f")  # 4 bytes a score
        first = last = 0
        records = 0
        deadline = time.monotonic() + timeout_s
        while todo:
            if time.monotonic() > deadline:
                raise RefitError(f"reading {topic!r} took over {timeout_s:g} s")
            for msg in consumer.consume(10_000, timeout=1.0):
                err = msg.error()
                if err is not None:
                    if err.fatal():
                        raise RefitError(f"reading {topic!r}: {err}")
                    continue  # e.g. a broker connection dropped: librdkafka retries
                p, off = msg.partition(), msg.offset()
                if p is None or off is None or p not in todo or off >= todo[p]:
                    continue
                if off + 1 >= todo[p]:
                    del todo[p]
                records += 1
                ts = msg.timestamp()[1]
                if ts < since_ms:
                    continue
                try:
                    rec = orjson.loads(msg.value() or b"")
                    prob = rec["probability"] if rec.get("artifact") == artifact else None
                except (orjson.JSONDecodeError, TypeError, KeyError, AttributeError):
                    continue  # not a prediction record
                if isinstance(prob, float) and 0.0 <= prob <= 1.0:
                    scores.append(prob)
                    first = ts if not first else min(first, ts)
                    last = max(last, ts)
        return Window(np.frombuffer(scores, np.float32), first, last, records)
    finally:
        consumer.close()


_HEADER = re.compile(
    r"""^\s*\[\s*(decision_threshold|"decision_threshold"|'decision_threshold')\s*\]\s*(#.*)?$"""
)
_ANY_HEADER = re.compile(r"^\s*\[")
_COMMENT = re.compile(r"=\s*[^\s#]+\s*(#.*)$")  # a number's line: its trailing comment


def set_threshold(text: str, artifact: str, value: float, where: str) -> str:
    """The config text with ``artifact``'s entry in ``[decision_threshold]`` set to
    ``value`` (the table added at the end when missing); comments, line endings and every
    other line kept. Raises ValueError when the result would not read back as exactly that
    change."""
    old = parse_model_config(text, where)
    eol = "\r" if "\r\n" in text else ""  # lines are split on \n only: \r stays with them
    entry = f"{json.dumps(artifact, ensure_ascii=False)} = {value!r}"
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    bare = [line.removesuffix("\r") for line in lines]
    start = next((i for i, line in enumerate(bare) if _HEADER.match(line)), None)
    if start is None:
        if old.decision_threshold:
            raise ValueError(
                f"{where}: decision_threshold is not one [decision_threshold] table; "
                "write it as one to let the refit edit it"
            )
        lines += [eol, f"[{SECTION}]{eol}", entry + eol]
    else:
        end = next(
            (j for j in range(start + 1, len(bare)) if _ANY_HEADER.match(bare[j])), len(bare)
        )
        keys = [_key(bare[j]) for j in range(start + 1, end)]
        if artifact in keys:
            at = start + 1 + keys.index(artifact)
            comment = _COMMENT.search(bare[at])
            lines[at] = entry + (f"  {comment.group(1)}" if comment else "") + eol
        else:
            lines.insert(start + 1, entry + eol)
    new_text = "\n".join(lines) + "\n"
    new = parse_model_config(new_text, where)
    want = dict(old.decision_threshold) | {artifact: value}
    if _same_but_thresholds(old, new) and dict(new.decision_threshold) == want:
        return new_text
    raise ValueError(f"{where}: could not set {artifact}'s threshold by editing the file")


def _key(line: str) -> str | None:
    """The key of a ``key = number`` line (bare, quoted or literal, escapes read as TOML
    reads them), else None."""
    try:
        doc = tomllib.loads(line)
    except tomllib.TOMLDecodeError:
        return None
    if len(doc) != 1:
        return None
    ((key, value),) = doc.items()
    return None if isinstance(value, dict) else key


def _same_but_thresholds(a: ModelConfig, b: ModelConfig) -> bool:
    return (a.artifact, a.servable, a.model_name) == (b.artifact, b.servable, b.model_name)


def write_threshold(model_config: Path, artifact: str, value: float) -> None:
    """Edit the file atomically; ValueError when it cannot be edited safely or someone
    else (a rollback) changed it meanwhile."""
    before = model_config.read_text()
    text = set_threshold(before, artifact, value, str(model_config))
    replace_model_config(model_config, text, expect=before)


def wait_served(address: str, artifact: str, value: float, timeout: float) -> bool:
    import grpc

    from proto.volatility.v1 import predictor_pb2 as pb
    from proto.volatility.v1 import predictor_pb2_grpc as pb_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as ch:
        stub = pb_grpc.PredictorStub(ch)
        while time.monotonic() < deadline:
            try:
                info = stub.ModelInfo(pb.ModelInfoRequest(model=artifact), timeout=2)
                if info.decision_threshold == np.float32(value):
                    return True
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    return False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bootstrap", default="127.0.0.1:9092")
    p.add_argument("--topic", default="predictions")
    p.add_argument("--model-config", type=Path, default=ROOT / "config" / "model.toml")
    p.add_argument("--models-dir", type=Path, default=ROOT / "compiled_models")
    p.add_argument("--artifact", help="default: the config's active artifact")
    # the defaults are the ones the build replays on every test block (docs/model.md)
    p.add_argument("--window-s", type=float, default=REFIT_WINDOW_MS / 1000)
    p.add_argument("--rate", type=float, default=ALERT_RATE, help="share of rows to flag")
    p.add_argument("--min-rows", type=int, default=REFIT_MIN_ROWS)
    p.add_argument("--address", help="wait until the server at this address serves it")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the server")
    p.add_argument("--read-timeout-s", type=float, default=600.0, help="to read the window")
    p.add_argument("--dry-run", action="store_true", help="print, write nothing")
    args = p.parse_args(argv)
    if not 0.0 < args.rate < 1.0:  # also NaN
        p.error("--rate must be in (0, 1)")
    if not 0.0 < args.window_s < 1e9:
        p.error("--window-s must be a positive number of seconds")
    if args.min_rows < 1:
        p.error("--min-rows must be at least 1")
    try:
        cfg = read_model_config(args.model_config)
        artifact = args.artifact or cfg.artifact
        manifest = Manifest.read(args.models_dir / artifact)
    except (OSError, ValueError) as exc:
        print(f"refit-threshold: {exc}", file=sys.stderr)
        return 1
    in_force = cfg.threshold_of(artifact)
    old = in_force if in_force is not None else manifest.decision_threshold
    try:
        win = read_window(args.bootstrap, args.topic, artifact, args.window_s, args.read_timeout_s)
    except (RefitError, KafkaException) as exc:
        print(f"refit-threshold: {exc}; nothing written", file=sys.stderr)
        return 1
    n = len(win.scores)
    print(
        f"refit-threshold: {n:,} scored rows of {artifact} in the last {args.window_s:g} s "
        f"of {args.topic!r} ({win.records:,} records read)"
    )
    if n < args.min_rows:
        print(
            f"refit-threshold: refused: fewer than {args.min_rows:,} scored rows; "
            f"{artifact}'s threshold stays {old:.6g}",
            file=sys.stderr,
        )
        return 1
    new = float(np.float32(threshold_for_rate(win.scores, args.rate)))
    if not 0.0 < new <= 1.0:
        print(f"refit-threshold: refused: the refit gave {new!r}", file=sys.stderr)
        return 1
    span_h = (win.last_ms - win.first_ms) / 3.6e6
    print(
        f"  over {span_h:.2f} h: threshold {old:.6g} flagged "
        f"{np.mean(win.scores >= np.float32(old)):.4f}; "
        f"refit {new:.6g} flags {np.mean(win.scores >= np.float32(new)):.4f} "
        f"(target {args.rate:g}; manifest {manifest.decision_threshold:.6g})"
    )
    if args.dry_run:
        return 0
    try:
        write_threshold(args.model_config, artifact, new)
    except (ValueError, OSError) as exc:
        print(f"refit-threshold: {exc}; nothing written", file=sys.stderr)
        return 1
    print(f"  written to {args.model_config} [decision_threshold] {artifact}")
    if args.address and not wait_served(args.address, artifact, new, args.timeout):
        print(
            f"refit-threshold: the server at {args.address} did not serve {artifact} at "
            f"{new!r} within {args.timeout:g} s (is it reading {args.model_config}?)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
