"""Build the C extensions for the running interpreter: ``compiled_models/_fastcall`` (see
_fastcall.c) and ``market/_featurestate`` (the streaming features, see _featurestate.c;
-ffp-contract=off keeps its arithmetic bit-identical to the Python reference) and
``consumer/_wire`` (the fast paths of the tick decoder and the answer encoder, see _wire.c)."""

from __future__ import annotations

import subprocess
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent


def build(source: Path, *flags: str, libs: tuple[str, ...] = ()) -> None:
    out = source.with_name(source.stem + sysconfig.get_config_var("EXT_SUFFIX"))
    include = sysconfig.get_paths()["include"]
    cmd = ["gcc", "-O2", *flags, "-shared", "-fPIC", f"-I{include}", str(source), *libs]
    cmd += ["-o", str(out)]
    subprocess.run(cmd, check=True)
    print(f"built {out.relative_to(HERE.parent)}")


def main() -> None:
    build(HERE / "_fastcall.c")
    build(HERE.parent / "market" / "_featurestate.c", "-ffp-contract=off", libs=("-lm",))
    build(HERE.parent / "consumer" / "_wire.c", libs=("-lm",))


if __name__ == "__main__":
    main()
