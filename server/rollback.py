"""``make rollback ARTIFACT=<name>``: point the model config at another artifact, signal the
running server (SIGHUP) to verify, warm and swap it in without a restart, and wait for its
verdict. Exit 0 when the server serves the artifact; exit 1 naming the server's reason when it
refused it (the old model keeps serving) - and then the config names the old artifact again,
so a restart never starts with an artifact the server refused."""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import time
import urllib.request
from pathlib import Path

import grpc

from compiled_models.manifest import MANIFEST_FILE
from config.model_config import replace_model_config
from config.settings import model_config_of
from proto.volatility.v1 import predictor_pb2 as pb
from proto.volatility.v1 import predictor_pb2_grpc as pb_grpc
from server.config import ROOT, active_artifact


def set_artifact(model_config: Path, name: str) -> str:
    """Rewrite the ``artifact = ...`` line (keeping comments); returns the old name."""
    old = active_artifact(model_config)
    text = model_config.read_text()
    # the first match only: top-level keys come before any table, and [decision_threshold]
    # may hold an entry for an artifact named "artifact"
    new = re.sub(r"(?m)^artifact\s*=.*$", f'artifact = "{name}"', text, count=1)
    replace_model_config(model_config, new, expect=text)
    return old


def server_config(pid: int) -> Path | None:
    """The model config the running server reads (its flag, variable, settings file or the
    default: config/settings.py model_config_of). None when /proc cannot tell."""
    proc = Path(f"/proc/{pid}")
    try:
        argv = [a.decode() for a in (proc / "cmdline").read_bytes().split(b"\0")]
        cwd = (proc / "cwd").resolve()
        environ = dict(
            kv.decode().split("=", 1)
            for kv in (proc / "environ").read_bytes().split(b"\0")
            if b"=" in kv
        )
    except OSError:
        return None
    try:
        return model_config_of(argv, environ, cwd)
    except ValueError:  # its settings file is unreadable now
        return None


def reloads(metrics_url: str) -> float | None:
    """Reloads the server has tried (volspike_model_reloads_total, every result); None when
    its metrics cannot be read."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return None
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("volspike_model_reloads_total{")
    )


def verdict(address: str, artifact: str) -> tuple[str, str]:
    """("served", ""), ("refused", the server's reason) or ("pending", what it serves)."""
    with grpc.insecure_channel(address) as ch:
        stub = pb_grpc.PredictorStub(ch)
        active = stub.ModelInfo(pb.ModelInfoRequest(), timeout=2).artifact
        if active == artifact:
            return "served", ""
        try:
            stub.ModelInfo(pb.ModelInfoRequest(model=artifact), timeout=2)
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.UNAVAILABLE:  # tried and failed: its reason
                return "refused", f"{err.details()} (it keeps serving {active})"
        return "pending", f"it serves {active}"


def serves(address: str, artifact: str) -> bool:
    """Whether the server at ``address`` answers with ``artifact`` now."""
    try:
        return verdict(address, artifact)[0] == "served"
    except grpc.RpcError:
        return False


def wait_verdict(
    address: str, metrics_url: str, artifact: str, before: float | None, timeout: float
) -> tuple[bool, str]:
    """Until the server has tried a reload since ``before`` (its counter moved; without
    metrics, any time) and serves ``artifact`` or gives its reason for refusing it; at most
    ``timeout`` seconds. (Python workers reload one by one: "pending" is asked again.)"""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        now = reloads(metrics_url)
        if before is None or (now is not None and now > before):
            try:
                state, last = verdict(address, artifact)
            except grpc.RpcError as err:
                state, last = "pending", f"ModelInfo failed: {err.code().name}"
            if state != "pending":
                return state == "served", last
        time.sleep(0.1)
    return False, f"no verdict from the server within {timeout:g} s ({last})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--artifact", required=True)
    p.add_argument("--model-config", type=Path, default=ROOT / "config" / "model.toml")
    p.add_argument("--models-dir", type=Path, default=ROOT / "compiled_models")
    p.add_argument("--pid-file", type=Path, default=ROOT / ".run" / "server.pid")
    p.add_argument("--address", default="127.0.0.1:50051", help="the server's gRPC address")
    p.add_argument("--metrics-port", type=int, default=8000, help="the server's metrics port")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the verdict")
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
    metrics_url = f"http://127.0.0.1:{args.metrics_port}/metrics"
    before = reloads(metrics_url)  # before the file changes; None: no server answers there
    # no PID here but a server answering (compose: it reads this file through a mounted
    # folder): it re-reads the file by itself, and its verdict comes as with a signal
    watching = pid is None and before is not None
    # a server already serving the artifact does not reload, so no verdict would come (the
    # runbook's case: a config edited by hand to an artifact it refused, put back)
    already = (pid is not None or watching) and serves(args.address, args.artifact)
    old = set_artifact(args.model_config, args.artifact)  # the server also watches it
    print(f"{args.model_config}: artifact {old} -> {args.artifact}")
    if pid is not None:
        os.kill(pid, signal.SIGHUP)
        sent = f"sent SIGHUP to server pid {pid}"
    elif watching:
        sent = f"no PID in {args.pid_file}; the server at {args.address} re-reads the file"
    else:
        print(
            f"no running server found via {args.pid_file} or {metrics_url}; it will pick the "
            "change up from the file when it starts (a running one also watches the file)"
        )
        return
    if already:  # no switch, so no reload follows and no verdict comes: done
        print(f"{sent}; it already serves {args.artifact}")
        return
    print(f"{sent}; waiting for its verdict")
    served, why = wait_verdict(args.address, metrics_url, args.artifact, before, args.timeout)
    if served:
        print(f"the server serves {args.artifact}")
        return
    if old != args.artifact:
        set_artifact(args.model_config, old)  # a restart must not start with a refused one
    sys.exit(
        f"rollback: the server did not switch to {args.artifact}: {why}. "
        f"{args.model_config} names {old} again; nothing else changed"
    )


if __name__ == "__main__":
    main()
