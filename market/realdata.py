"""Real E-mini S&P 500 futures trades shipped inside the ``mlfinpy==0.1.2`` wheel.

The wheel is downloaded with ``pip download --no-deps`` (never installed: it pins an old
numpy) and the CSV is read straight out of the zip and cached as parquet.
"""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

WHEEL_SPEC = "mlfinpy==0.1.2"
CSV_MEMBER = "mlfinpy/dataset/data/tick_data.csv"
SYMBOL = "ES"
SOURCE = "mlfinpy==0.1.2 tick_data.csv (E-mini S&P 500 futures trades, 2013-09-01..03)"
DEFAULT_CACHE = Path(__file__).resolve().parent.parent / "data" / "es_ticks.parquet"
# The CSV's timestamps are exchange-local (US Central); we keep them as naive UTC-like
# milliseconds because only differences matter to the features.


def _download_csv() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, WHEEL_SPEC]
        subprocess.run(cmd, check=True)
        (wheel,) = Path(tmp).glob("mlfinpy-*.whl")
        with zipfile.ZipFile(wheel) as zf:
            return zf.read(CSV_MEMBER)


def parse_csv(raw: bytes) -> pd.DataFrame:
    """The wheel's CSV (DateTime, Price, Volume) in the project's tick schema."""
    df = pd.read_csv(io.BytesIO(raw))
    t = pd.to_datetime(df["DateTime"]).to_numpy().astype("datetime64[ms]").astype(np.int64)
    return pd.DataFrame(
        {
            "symbol": SYMBOL,
            "event_time_ms": t,
            "price": df["Price"].to_numpy(np.float64),
            "size": df["Volume"].to_numpy(np.float64),
            "bid": np.nan,
            "ask": np.nan,
        }
    )


def fetch(cache: Path = DEFAULT_CACHE) -> Path:
    """Download and cache the real ticks once; returns the parquet path."""
    if cache.exists():
        return cache
    cache.parent.mkdir(parents=True, exist_ok=True)
    df = parse_csv(_download_csv())
    tmp = cache.with_suffix(".tmp")
    df.to_parquet(tmp, index=False)
    tmp.replace(cache)
    logger.info("cached %d real ticks at %s", len(df), cache)
    return cache


def load(cache: Path = DEFAULT_CACHE) -> pd.DataFrame:
    """All 500,000 real ticks in time order, fetching them first if needed."""
    return pd.read_parquet(fetch(cache))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    path = fetch()
    print(f"{len(pd.read_parquet(path))} ticks at {path}")
