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


def server_config(pid: int) -> Path | None:
    """The model config the running server reads: its ``--model-config`` argument, else
    ``VOLSPIKE_MODEL_CONFIG``, else the default. None when /proc cannot tell."""
    proc = Path(f"/proc/{pid}")
    try:
        argv = [a.decode() for a in (proc / "cmdline").read_bytes().split(b"\0")]
        cwd = (proc / "cwd").resolve()
        environ = (proc / "environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for i, arg in enumerate(argv):
        if arg in ("--model-config", "-model-config") and i + 1 < len(argv):
            return (cwd / argv[i + 1]).resolve()
        if arg.startswith(("--model-config=", "-model-config=")):
            return (cwd / arg.split("=", 1)[1]).resolve()
    for kv in environ:
        if kv.startswith(b"VOLSPIKE_MODEL_CONFIG="):
            return (cwd / kv.split(b"=", 1)[1].decode()).resolve()
    return (ROOT / "config" / "model.toml").resolve()


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
    if not args.model_config.is_file():
        sys.exit(f"rollback: {args.model_config} does not exist (`make serve` creates it)")
    pid: int | None
    try:
        pid = int(args.pid_file.read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        pid = None
    if pid is not None:
        reads = server_config(pid)
        if reads is not None and reads != args.model_config.resolve():
            sys.exit(
                f"rollback: the server (pid {pid}) reads {reads}, not {args.model_config}; "
                f"nothing changed. Run again with MODEL_CONFIG={reads}"
            )
    old = set_artifact(args.model_config, args.artifact)
    print(f"{args.model_config}: artifact {old} -> {args.artifact}")
    if pid is None:
        print(
            f"no running server found via {args.pid_file}; it will pick the change up "
            "from the file when it starts (a running one also watches the file)"
        )
        return
    os.kill(pid, signal.SIGHUP)
    print(f"sent SIGHUP to server pid {pid}")


if __name__ == "__main__":
    main()
