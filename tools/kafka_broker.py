"""Apache Kafka 4.x (KRaft) from Maven Central jars, as plain processes: one node, or a cluster.

    python -m tools.kafka_broker up   [--port 9092] [--data-dir .kafka/broker]
    python -m tools.kafka_broker up   --brokers 3 [--port 9092] [--data-dir .kafka/cluster]
    python -m tools.kafka_broker down [--data-dir .kafka/broker | .kafka/cluster]

``up`` resolves the broker's classpath with Maven once (jars cached in ``.kafka/m2``),
formats the storage on first use, starts ``kafka.Kafka``, waits until it answers and
creates the project's topics. ``down`` stops every node it started by the PID it wrote.
Tests, CI and ``make demo`` start the single node this way.

``--brokers 3``: three KRaft nodes on 127.0.0.1, each broker and controller (a 3-voter
controller quorum), one cluster id, node i on ports port+2(i-1) (clients) and
controller-port+2(i-1) (quorum), data in <data-dir>/node-i, heap capped at 384 MB each.
Topics are replicated 3 times with min.insync.replicas=2 (so are the offsets and
transaction logs), unclean leader election stays off: a write acknowledged with acks=all
is on two nodes, and one node may die without losing it or stopping the stream.
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
SINGLE_HEAP = "768m"
CLUSTER_HEAP = "384m"  # per node: three of them share a small machine
CLUSTER_RF = 3
CLUSTER_MIN_ISR = 2


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


def write_config(
    data: Path,
    port: int,
    controller_port: int,
    node_id: int = 1,
    voters: str | None = None,
) -> Path:
    """``server.properties`` of one combined broker+controller node. ``voters``
    (``1@host:port,2@...``): the controller quorum of a cluster; None: this node alone."""
    data.mkdir(parents=True, exist_ok=True)
    props = data / "server.properties"
    cluster = voters is not None
    rf, min_isr = (CLUSTER_RF, CLUSTER_MIN_ISR) if cluster else (1, 1)
    # a cluster: the controller fences a dead node (and moves its partitions' leadership)
    # after 4 s without a heartbeat, not Kafka's default 9 s
    liveness = ["broker.heartbeat.interval.ms=1000", "broker.session.timeout.ms=4000"]
    props.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                f"node.id={node_id}",
                f"controller.quorum.voters={voters or f'{node_id}@127.0.0.1:{controller_port}'}",
                f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name=PLAINTEXT",
                f"log.dirs={data / 'logs'}",
                "num.partitions=4",
                f"default.replication.factor={rf}",
                f"min.insync.replicas={min_isr}",
                "unclean.leader.election.enable=false",
                f"offsets.topic.replication.factor={rf}",
                "offsets.topic.num.partitions=4",
                f"transaction.state.log.replication.factor={rf}",
                f"transaction.state.log.min.isr={min_isr}",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=false",
                # replayed ticks carry their own (possibly old) event times: never expire them
                "log.retention.ms=-1",
                *(liveness if cluster else []),
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


def java(cp: str, data: Path, *args: str, heap: str = SINGLE_HEAP) -> list[str]:
    return [
        "java",
        f"-Xms{min(256, int(heap.rstrip('m')))}m",
        f"-Xmx{heap}",
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
    format_storage(cp, data, props, new_cluster_id())
    proc = start_node(data, cp)
    wait_ready(f"127.0.0.1:{port}", [proc])
    ensure_topics(f"127.0.0.1:{port}", topics)
    print(f"kafka up on 127.0.0.1:{port} (pid {proc.pid}, data {data})")
    return proc.pid


def new_cluster_id() -> str:
    """A random id as Kafka writes one (URL-safe base64 of 16 bytes). Never one that starts
    with '-' (1 in 64 would): the storage tool would read it as an option and refuse to
    format (Kafka's own Uuid.randomUuid draws again for the same reason)."""
    while True:
        cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster.startswith("-"):
            return cluster


def format_storage(cp: str, data: Path, props: Path, cluster: str) -> None:
    """Format a node's log dir once (a formatted one keeps its cluster id and data)."""
    if not (data / "logs" / "meta.properties").exists():
        subprocess.run(
            java(cp, data, "kafka.tools.StorageTool", "format", "-t", cluster, "-c", str(props)),
            check=True,
            stdout=subprocess.DEVNULL,
        )


def start_node(data: Path, cp: str | None = None, heap: str = SINGLE_HEAP) -> subprocess.Popen:
    """Start the node configured in ``data`` (its server.properties); PID in broker.pid."""
    log = (data / "stdout.log").open("ab")
    proc = subprocess.Popen(
        java(cp or classpath(), data, "kafka.Kafka", str(data / "server.properties"), heap=heap),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    (data / "broker.pid").write_text(f"{proc.pid}\n")
    return proc


def cluster_nodes(data: Path) -> list[Path]:
    """The node directories of a cluster in ``data`` (node-1, node-2, ...), in order."""
    return sorted(data.glob("node-*"), key=lambda p: int(p.name.split("-")[1]))


def cluster_up(
    ports: list[int],
    controller_ports: list[int],
    data: Path,
    topics: dict[str, int],
    heap: str = CLUSTER_HEAP,
) -> str:
    """A KRaft cluster of ``len(ports)`` combined broker+controller nodes on 127.0.0.1, one
    cluster id, node i (1-based) in ``data/node-i``. Returns the bootstrap list once every
    node is registered and the topics exist (replicated CLUSTER_RF times)."""
    if len(ports) != len(controller_ports) or len(set(ports) | set(controller_ports)) != 2 * len(
        ports
    ):
        sys.exit(f"kafka cluster: ports must be distinct: {ports} {controller_ports}")
    data.mkdir(parents=True, exist_ok=True)
    voters = ",".join(f"{i}@127.0.0.1:{c}" for i, c in enumerate(controller_ports, 1))
    bootstrap = ",".join(f"127.0.0.1:{p}" for p in ports)
    cp = classpath()
    id_file = data / "cluster.id"  # one id for every node, kept across restarts
    if not id_file.exists():
        id_file.write_text(new_cluster_id() + "\n")
    cluster = id_file.read_text().strip()
    procs: list[subprocess.Popen] = []
    for i, (port, cport) in enumerate(zip(ports, controller_ports, strict=True), 1):
        node = data / f"node-{i}"
        if running(node / "broker.pid"):
            print(
                f"kafka node {i} already running (pid {(node / 'broker.pid').read_text().strip()})"
            )
            continue
        props = write_config(node, port, cport, node_id=i, voters=voters)
        format_storage(cp, node, props, cluster)
        procs.append(start_node(node, cp, heap))
    wait_ready(bootstrap, procs, brokers=len(ports))
    ensure_topics(bootstrap, topics)
    pids = [int((n / "broker.pid").read_text()) for n in cluster_nodes(data)]
    print(f"kafka cluster up on {bootstrap} (cluster {cluster}, pids {pids}, data {data})")
    return bootstrap


def wait_ready(
    bootstrap: str, procs: list[subprocess.Popen], timeout: float = 90.0, brokers: int = 1
) -> None:
    """Until ``brokers`` brokers are registered (each of ``procs`` must stay alive)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                sys.exit(f"kafka exited with {proc.returncode}; see its data dir's stdout.log")
        try:
            md = admin.list_topics(timeout=2)
            if len(md.brokers) >= brokers:
                return
        except Exception:
            pass
        time.sleep(0.3)
    sys.exit(f"kafka did not answer on {bootstrap} with {brokers} broker(s) within {timeout:.0f} s")


def replication_for(bootstrap: str) -> tuple[int, dict[str, str]]:
    """Replication factor and topic config for new topics: CLUSTER_RF replicas with
    min.insync.replicas=CLUSTER_MIN_ISR on a cluster, 1 on a single node."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    brokers = len(admin.list_topics(timeout=10).brokers)
    if brokers >= CLUSTER_RF:
        return CLUSTER_RF, {"min.insync.replicas": str(CLUSTER_MIN_ISR)}
    return 1, {}


def ensure_topics(bootstrap: str, topics: dict[str, int]) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=10).topics)
    rf, config = replication_for(bootstrap)
    new = [NewTopic(t, n, rf, config=config) for t, n in topics.items() if t not in existing]
    for topic, fut in (admin.create_topics(new) if new else {}).items():
        try:
            fut.result(30)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
        _ = topic


def wait_in_sync(bootstrap: str, timeout: float = 60.0) -> float:
    """Wait until every partition of every topic has all its replicas in sync; returns the
    seconds it took (raises TimeoutError naming the partitions still behind)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    t0 = time.monotonic()
    behind: list[str] = ["(no answer)"]
    while time.monotonic() - t0 < timeout:
        try:
            md = admin.list_topics(timeout=5)
            behind = [
                f"{t}/{p}"
                for t, tm in md.topics.items()
                for p, pm in tm.partitions.items()
                if set(pm.isrs) != set(pm.replicas)
            ]
            if not behind:
                return time.monotonic() - t0
        except Exception:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"partitions not in sync after {timeout:.0f} s: {behind[:10]}")


def down(data: Path, timeout: float = 60.0) -> None:
    """Stop the node in ``data``, or every node of the cluster in ``data/node-*``, by PID:
    SIGTERM to all at once, SIGKILL to any still there after ``timeout``."""
    pid_files = [data / "broker.pid", *(n / "broker.pid" for n in cluster_nodes(data))]
    pids = []
    for pid_file in pid_files:
        if running(pid_file):
            pids.append(int(pid_file.read_text()))
            os.kill(pids[-1], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_pid_alive(p) for p in pids):
        time.sleep(0.2)
    for pid in pids:
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    for pid_file in pid_files:
        pid_file.unlink(missing_ok=True)
    print(f"kafka stopped (pids {pids})" if pids else "kafka not running")


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
    p.add_argument("--brokers", type=int, default=1, help="1 (default) or a cluster of N")
    p.add_argument(
        "--data-dir", type=Path, help="default .kafka/broker (one node), .kafka/cluster (N)"
    )
    args = p.parse_args()
    data = args.data_dir or KAFKA_HOME / ("broker" if args.brokers == 1 else "cluster")
    if args.action == "down":
        down(data)
    elif args.brokers == 1:
        up(args.port, args.controller_port, data, TOPICS)
    else:
        n = range(args.brokers)
        ports = [args.port + 2 * i for i in n]
        cluster_up(ports, [args.controller_port + 2 * i for i in n], data, TOPICS)


if __name__ == "__main__":
    main()
