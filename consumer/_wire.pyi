from market.ticks import Tick

def decode(raw: bytes | None, now_ms: int, max_future_ms: int, /) -> Tick | None: ...
def configure(
    tick_type: type[Tick],
    min_time_ms: int,
    max_message_bytes: int,
    min_price: float,
    max_price: float,
    max_size: float,
    /,
) -> None: ...
def read_plain(
    msgs: list,
    i: int,
    now_ms: int,
    max_future_ms: int,
    old_ms: int,
    warm_until: dict,
    acks: dict,
    states: dict,
    flood: int,
    x: object,
    meta: list,
    warming: list,
    order: bytearray,
    backfill: set,
    backfill_header: tuple[str, bytes],
    /,
) -> int: ...
def acknowledge(groups: list[list], acks: dict, failed: set, /) -> None: ...
