"""Inspect the dead-letter topic, and re-drive fixed messages into the ticks topic.

    python -m tools.dlq --bootstrap 127.0.0.1:9092 show [--limit 20] [--reason too_large]
    python -m tools.dlq --bootstrap 127.0.0.1:9092 redrive --file fixed.jsonl

``show`` prints one line per dead letter: source partition/offset, its reason kind (the
``reason`` header: too_large, schema_mismatch, ..., the metric's label; ``--reason`` keeps one
kind, and a kind outside proto/contract.toml's closed set is named on stderr), the ``error``
header that says why, and the first bytes of the value (``truncated`` when the consumer cut
an oversized one). ``redrive``
produces each line of a JSON-lines file (one corrected tick per line) to the ticks topic,
keyed by its symbol, and prints how many Kafka acknowledged; the consumer answers them like
any other tick. Nothing is deleted from the dead-letter topic.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path

import orjson
from confluent_kafka import Consumer, Producer

from telemetry import names_gen as contract


def show(bootstrap: str, topic: str, limit: int, kind: str | None) -> int:
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"dlq-viewer-{uuid.uuid4().hex[:8]}",  # never moves anyone's offsets
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([topic])
    shown = empty_polls = 0
    try:
        while shown < limit and empty_polls < 3:
            msgs = c.consume(500, 1.0)
            empty_polls = 0 if msgs else empty_polls + 1
            for m in msgs:
                if m.error() is not None:
                    continue
                # The stubs type headers() as a producer's input (a dict, str values too);
                # a consumed message's are a list of (str, bytes) pairs.
                line = describe(m.headers() or (), m.value(), kind)  # type: ignore[arg-type]
                if line is None:
                    continue
                print(line)
                shown += 1
                if shown >= limit:
                    break
    finally:
        c.close()
    return shown


def describe(headers: list[tuple[str, bytes]], value: bytes | None, kind: str | None) -> str | None:
    """One dead letter's line, or None when ``kind`` is given and its ``reason`` header (the
    closed set, the metric's label) is another: the free-text ``error`` header is never
    matched (it says "message is N bytes", not too_large)."""
    h = {k: v.decode(errors="replace") for k, v in headers}
    if kind and h.get("reason") != kind:
        return None
    text = (value or b"")[:80].decode(errors="replace")
    flag = " [truncated]" if h.get("truncated") == "true" else ""
    return (
        f"{h.get('source_partition')}/{h.get('source_offset')}: "
        f"[{h.get('reason', '?')}] {h.get('error', '')}{flag} | {text!r}"
    )


def redrive(bootstrap: str, topic: str, path: Path) -> int:
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    acked = 0

    def done(err, _msg) -> None:
        nonlocal acked
        if err is None:
            acked += 1
        else:
            print(f"not delivered: {err}", file=sys.stderr)

    lines = [line for line in path.read_bytes().splitlines() if line.strip()]
    for line in lines:
        tick = orjson.loads(line)
        p.produce(
            topic, value=orjson.dumps(tick), key=str(tick.get("symbol", "")), on_delivery=done
        )
        p.poll(0)
    p.flush(30)
    print(f"re-drove {acked} of {len(lines)} ticks into {topic}")
    return acked


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--bootstrap", default="127.0.0.1:9092")
    p.add_argument("--dlq-topic", default="ticks.dlq")
    p.add_argument("--ticks-topic", default="ticks")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("show", help="print dead letters with their reasons")
    s.add_argument("--limit", type=int, default=20)
    s.add_argument(
        "--reason",
        help="only this reason kind (the reason header), e.g. too_large; one of "
        + ", ".join(contract.DEAD_LETTER_REASONS),
    )
    r = sub.add_parser("redrive", help="produce corrected ticks (JSON lines) to the ticks topic")
    r.add_argument("--file", type=Path, required=True)
    args = p.parse_args()
    if args.cmd == "show":
        if args.reason and args.reason not in contract.DEAD_LETTER_REASONS:
            print(f"{args.reason!r} is no dead-letter reason: none will match", file=sys.stderr)
        n = show(args.bootstrap, args.dlq_topic, args.limit, args.reason)
        print(f"{n} dead letter(s) shown")
    else:
        lines = len([x for x in args.file.read_bytes().splitlines() if x.strip()])
        if redrive(args.bootstrap, args.ticks_topic, args.file) != lines:
            sys.exit(1)


if __name__ == "__main__":
    main()
