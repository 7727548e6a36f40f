"""``python -m server``: wiring only. With ``--workers N`` a supervisor starts N worker
processes sharing the gRPC port (SO_REUSEPORT) and forwards SIGTERM/SIGHUP to them."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server

from config.settings import main_settings
from server.app import App, create_server
from server.config import Settings
from server.metrics import ServerMetrics
from server.tracing import make_tracer_provider

logger = logging.getLogger("server")


def parse_args(argv: list[str] | None = None) -> tuple[Settings, argparse.Namespace]:
    """Every setting of config/settings.toml the Python server reads, as a flag; exit 2
    naming a bad one; ``--print-settings`` prints them and exits."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--worker-index", type=int, default=-1, help=argparse.SUPPRESS)
    return main_settings("python", p, argv)


def serve(settings: Settings, worker_index: int) -> None:
    # Signals first: a SIGHUP that arrives while the model loads must mean "reload", not
    # the default "terminate" (it killed a worker during a rollback test).
    stop = threading.Event()
    reload_now = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: reload_now.set())
    config_mtime = _mtime(settings.model_config)  # before the load: a later edit is seen
    registry = CollectorRegistry()
    metrics = ServerMetrics(registry)
    provider = make_tracer_provider()
    app = create_server(settings, metrics, provider)
    start_http_server(
        settings.metrics_port + max(worker_index, 0), settings.host, registry=registry
    )
    if worker_index < 0:  # one process, both ports ours: only now does the PID file name it
        write_pid(settings)  # (a second server on taken ports wrote its dead PID there)
    app.set_serving(False)
    # Load before accepting: workers share the port, so a worker that listened before its
    # model was warm would take connections only to answer UNAVAILABLE while its siblings
    # already report SERVING. If the load fails, serve anyway so health says NOT_SERVING.
    loaded = app.load_configured()
    app.server.start()
    logger.info("worker %d listening on %s:%d", worker_index, settings.host, app.port)
    if not loaded:
        logger.error("no model could be loaded; serving health NOT_SERVING")
    watcher = threading.Thread(
        target=watch_config,
        args=(app, reload_now, stop, config_mtime),
        daemon=True,
        name="config-watcher",
    )
    watcher.start()
    while not stop.wait(1.0):  # wake regularly so signals are handled promptly
        pass
    logger.info(
        "draining: NOT_SERVING, no new calls, up to %.0f s for in-flight ones",
        settings.grace_seconds,
    )
    app.health.enter_graceful_shutdown()
    app.metrics.serving.set(0)
    app.server.stop(settings.grace_seconds).wait()
    provider.shutdown()
    logger.info("stopped")


def watch_config(app: App, reload_now: threading.Event, stop: threading.Event, last: float) -> None:
    """Reload on SIGHUP or when the model config file changes (``last``: its mtime when
    the serving model was read)."""
    path = app.settings.model_config
    while not stop.is_set():
        reload_now.wait(app.settings.reload_poll_seconds)
        now = _mtime(path)
        if reload_now.is_set() or now != last:
            reload_now.clear()
            last = now
            app.load_configured()


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return -1


def supervise(settings: Settings) -> int:
    """Run ``settings.workers`` worker processes and relay signals to them. A worker that
    dies on its own (e.g. its metrics port is taken) stops the others: a half-sized server
    must not keep running unnoticed."""
    args = [a for a in sys.argv[1:] if a]
    # Workers start with SIGHUP ignored (inherited) until serve() installs its reload
    # handler: one relayed while a worker is still importing must not kill it. The change
    # it announced is in the config file, which the worker reads when it loads.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    children = [
        subprocess.Popen([sys.executable, "-m", "server", *args, "--worker-index", str(i)])
        for i in range(settings.workers)
    ]
    stopping = threading.Event()

    def relay(signum, _frame):
        if signum != signal.SIGHUP:
            stopping.set()
        for c in children:
            if c.poll() is None:
                c.send_signal(signum)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, relay)
    while any(c.poll() is None for c in children):
        dead = [c for c in children if c.poll() is not None]
        if dead and not stopping.is_set():
            logger.error(
                "worker pid %d exited with %d; stopping the others", dead[0].pid, dead[0].returncode
            )
            relay(signal.SIGTERM, None)
        time.sleep(0.2)
    return max(c.returncode for c in children)


def main() -> None:
    settings, args = parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"
    )
    if args.worker_index < 0 and settings.workers > 1:
        write_pid(settings)  # the supervisor: its workers bind
        sys.exit(supervise(settings))
    serve(settings, args.worker_index)


def write_pid(settings: Settings) -> None:
    if settings.pid_file:
        settings.pid_file.parent.mkdir(parents=True, exist_ok=True)
        settings.pid_file.write_text(f"{os.getpid()}\n")


if __name__ == "__main__":
    main()
