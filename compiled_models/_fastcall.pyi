"""Types of the C extension built from _fastcall.c by `make models` (build_fastcall.py)."""

import numpy as np
from typing_extensions import Buffer

# x and out: any buffer ("y*", "w*"); numpy declares __buffer__ only for Python >= 3.12.
def call(
    fn_address: int, rows: int, x: Buffer | np.ndarray, out: Buffer | np.ndarray, /
) -> int: ...
