"""Build ``compiled_models/_fastcall`` (see _fastcall.c) for the running interpreter."""

from __future__ import annotations

import subprocess
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    out = HERE / f"_fastcall{sysconfig.get_config_var('EXT_SUFFIX')}"
    include = sysconfig.get_paths()["include"]
    cmd = [
        "gcc",
        "-O2",
        "-shared",
        "-fPIC",
        f"-I{include}",
        str(HERE / "_fastcall.c"),
        "-o",
        str(out),
    ]
    subprocess.run(cmd, check=True)
    print(f"built {out.name}")


if __name__ == "__main__":
    main()
