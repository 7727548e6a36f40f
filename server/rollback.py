"""``make rollback ARTIFACT=<name>``: point the model config at another artifact and
signal the running server (SIGHUP) to verify, warm and swap it in without a restart."""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
from pathlib import Path

from compiled_models.manifest import MANIFEST_FILE
from server.config import ROOT, active_artifact


def set_artifact(model_config: Path, name: str) -> str:
    """Rewrite the ``artifact = ...`` line (keeping comments); returns the old name."""
    old = active_artifact(model_config)
    text = model_config.read_text()
    new = re.sub(r"(?m)^artifact\s*=.*$", f'artifact = "{name}"', text)
    tmp = model_config.with_suffix(".tmp")
    tmp.write_text(new)
    tmp.replace(model_config)  # atomic: the watcher never reads half a file
    return old


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--artifact", required=True)
    p.add_argument("--model-config", type=Path, default=ROOT / "config" / "model.toml")
    p.add_argument("--models-dir", type=Path, default=ROOT / "compiled_models")
    p.add_argument("--pid-file", type=Path, default=ROOT / ".run" / "server.pid")
    args = p.parse_args()
    available = sorted(d.parent.name for d in args.models_dir.glob(f"*/{MANIFEST_FILE}"))
    if args.artifact not in available:
        sys.exit(f"rollback: unknown artifact {args.artifact!r}; available: {available}")
    old = set_artifact(args.model_config, args.artifact)
    print(f"{args.model_config}: artifact {old} -> {args.artifact}")
    try:
        pid = int(args.pid_file.read_text())
        os.kill(pid, signal.SIGHUP)
        print(f"sent SIGHUP to server pid {pid}")
    except (OSError, ValueError):
        print(
            f"no running server found via {args.pid_file}; it will pick the change up "
            "from the file when it starts (a running one also watches the file)"
        )


if __name__ == "__main__":
    main()
