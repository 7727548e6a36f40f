"""Single-node Apache Kafka 4.x (KRaft) from Maven Central jars, as a plain process.

    python -m tools.kafka_broker up   [--port 9092] [--data-dir .kafka/broker]
    python -m tools.kafka_broker down [--data-dir .kafka/broker]

``up`` resolves the broker's classpath with Maven once (jars cached in ``.kafka/m2``),
formats the storage on first use, starts ``kafka.Kafka``, waits until it answers and
creates the project's topics. ``down`` stops it by the PID it wrote. Tests, CI and
``make demo`` all start Kafka this way.
"""

from __future__ import annotations

import argparse
import base64
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KAFKA_HOME = ROOT / ".kafka"
CLASSPATH_FILE = KAFKA_HOME / "classpath.txt"
TOPICS = {"ticks": 4, "predictions": 4, "ticks.dlq": 1}


def classpath() -> str:
    pom = ROOT / "kafka" / "pom.xml"
    if not CLASSPATH_FILE.exists() or CLASSPATH_FILE.stat().st_mtime < pom.stat().st_mtime:
        KAFKA_HOME.mkdir(exist_ok=True)
        subprocess.run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(pom),
                f"-Dmaven.repo.local={KAFKA_HOME / 'm2'}",
                "dependency:build-classpath",
                f"-Dmdep.outputFile={CLASSPATH_FILE}",
            ],
            check=True,
        )
    return CLASSPATH_FILE.read_text().strip()


def write_config(data: Path, port: int, controller_port: int) -> Path:
    data.mkdir(parents=True, exist_ok=True)
    props = data / "server.properties"
    props.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
                f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name=PLAINTEXT",
                f"log.dirs={data / 'logs'}",
                "num.partitions=4",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=4",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=false",
                # replayed ticks carry their own (possibly old) event times: never expire them
                "log.retention.ms=-1",
                "",
            ]
        )
    )
    (data / "log4j2.properties").write_text(
        "\n".join(
            [
                "status = warn",
                "appender.file.type = File",
                "appender.file.name = FILE",
                f"appender.file.fileName = {data / 'server.log'}",
                "appender.file.layout.type = PatternLayout",
                "appender.file.layout.pattern = [%d] %p %m (%c)%n",
                "rootLogger.level = INFO",
                "rootLogger.appenderRef.file.ref = FILE",
                "",
            ]
        )
    )
    return props


def java(cp: str, data: Path, *args: str) -> list[str]:
    return [
        "java",
        "-Xms256m",
        "-Xmx768m",
        "-XX:+UseG1GC",
        f"-Dlog4j2.configurationFile={data / 'log4j2.properties'}",
        "-cp",
        cp,
        *args,
    ]


def up(port: int, controller_port: int, data: Path, topics: dict[str, int]) -> int:
    pid_file = data / "broker.pid"
    if running(pid_file):
        print(f"kafka already running (pid {pid_file.read_text().strip()})")
        return int(pid_file.read_text())
    cp = classpath()
    props = write_config(data, port, controller_port)
    if not (data / "logs" / "meta.properties").exists():
        cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        subprocess.run(
            java(cp, data, "kafka.tools.StorageTool", "format", "-t", cluster, "-c", str(props)),
            check=True,
            stdout=subprocess.DEVNULL,
        )
    log = (data / "stdout.log").open("ab")
    proc = subprocess.Popen(
        java(cp, data, "kafka.Kafka", str(props)),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    pid_file.write_text(f"{proc.pid}\n")
    wait_ready(f"127.0.0.1:{port}", proc)
    ensure_topics(f"127.0.0.1:{port}", topics)
    print(f"kafka up on 127.0.0.1:{port} (pid {proc.pid}, data {data})")
    return proc.pid


def wait_ready(bootstrap: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"kafka exited with {proc.returncode}; see its data dir's stdout.log")
        try:
            md = admin.list_topics(timeout=2)
            if md.brokers:
                return
        except Exception:
            time.sleep(0.3)
    sys.exit(f"kafka did not answer on {bootstrap} within {timeout:.0f} s")


def ensure_topics(bootstrap: str, topics: dict[str, int]) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=10).topics)
    new = [NewTopic(t, n, 1) for t, n in topics.items() if t not in existing]
    for topic, fut in (admin.create_topics(new) if new else {}).items():
        try:
            fut.result(30)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
        _ = topic


def down(data: Path, timeout: float = 60.0) -> None:
    pid_file = data / "broker.pid"
    if not running(pid_file):
        print("kafka not running")
        pid_file.unlink(missing_ok=True)
        return
    pid = int(pid_file.read_text())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.2)
    if _pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    print(f"kafka stopped (pid {pid})")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def running(pid_file: Path) -> bool:
    """Whether the broker whose PID ``pid_file`` holds is alive."""
    try:
        return _pid_alive(int(pid_file.read_text()))
    except (OSError, ValueError):
        return False


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("action", choices=["up", "down"])
    p.add_argument("--port", type=int, default=9092)
    p.add_argument("--controller-port", type=int, default=9093)
    p.add_argument("--data-dir", type=Path, default=KAFKA_HOME / "broker")
    args = p.parse_args()
    if args.action == "up":
        up(args.port, args.controller_port, args.data_dir, TOPICS)
    else:
        down(args.data_dir)


if __name__ == "__main__":
    main()
