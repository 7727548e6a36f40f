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
