"""A real Kubernetes control plane on 127.0.0.1 for the deployment test: etcd, kube-apiserver
and, when built, kube-controller-manager, kube-scheduler and kwok (nodes and pods without
containers). Binaries come from tools/build_k8s.sh (cached under
~/.cache/volspike-tools/k8s-<version>/bin); certificates, a service-account key and a
kubeconfig are made in the test's tmp dir. Every process is stopped by its PID, in reverse
start order (so the API server goes before etcd)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tools.procs import free_port

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = next(
    line.split("=", 1)[1].strip()
    for line in (ROOT / "tools" / "build_k8s.sh").read_text().splitlines()
    if line.startswith("K8S_VERSION=")
)
CACHE = Path(os.environ.get("VOLSPIKE_TOOLS_CACHE", Path.home() / ".cache" / "volspike-tools"))
BIN = CACHE / f"k8s-{K8S_VERSION}" / "bin"
KUBECTL = os.environ.get("KUBECTL", "/usr/bin/kubectl")
TOKEN = "volspike-test-admin-token"


def built(*names: str) -> bool:
    return all((BIN / n).is_file() and os.access(BIN / n, os.X_OK) for n in names)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@dataclass
class ControlPlane:
    dir: Path
    procs: list[tuple[str, subprocess.Popen]] = field(default_factory=list)
    api_port: int = 0
    kubeconfig: Path = Path()

    # --- files ---------------------------------------------------------------------------

    def _certs(self) -> None:
        d = self.dir
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", "apiserver.key", "-out", "apiserver.crt", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            cwd=d,
        )  # fmt: skip
        _openssl("genrsa", "-out", "sa.key", "2048", cwd=d)
        (d / "tokens.csv").write_text(f'{TOKEN},admin,admin,"system:masters"\n')

    def _write_kubeconfig(self) -> None:
        self.kubeconfig = self.dir / "kubeconfig"
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "test",
                    "cluster": {
                        "server": f"https://127.0.0.1:{self.api_port}",
                        "certificate-authority": str(self.dir / "apiserver.crt"),
                    },
                }
            ],
            "users": [{"name": "admin", "user": {"token": TOKEN}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
            "current-context": "test",
        }
        self.kubeconfig.write_text(json.dumps(cfg))

    # --- processes -----------------------------------------------------------------------

    def _start(self, name: str, *cmd: str) -> subprocess.Popen:
        log = (self.dir / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [str(BIN / name), *cmd], cwd=self.dir, stdout=log, stderr=subprocess.STDOUT
        )
        self.procs.append((name, proc))
        return proc

    def log(self, name: str) -> str:
        path = self.dir / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def _wait(self, what: str, ok, timeout: float, proc: subprocess.Popen, name: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited ({proc.returncode}):\n{self.log(name)}")
            if ok():
                return
            time.sleep(0.25)
        raise TimeoutError(f"{what} not ready after {timeout} s:\n{self.log(name)}")

    def kubectl(
        self, *args: str, check: bool = True, timeout: float = 60, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [KUBECTL, "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=stdin,
        )
        if check and res.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}")
        return res

    def start_etcd_and_apiserver(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._certs()
        client, peer = free_port(), free_port()
        etcd = self._start(
            "etcd",
            "--data-dir", str(self.dir / "etcd-data"),
            "--listen-client-urls", f"http://127.0.0.1:{client}",
            "--advertise-client-urls", f"http://127.0.0.1:{client}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"default=http://127.0.0.1:{peer}",
            "--listen-metrics-urls", "",
            "--quota-backend-bytes", str(256 << 20),
            "--log-level", "warn",
        )  # fmt: skip
        self._wait("etcd", lambda: _tcp_open(client), 30, etcd, "etcd")
        self.api_port = free_port()
        self._write_kubeconfig()
        d = self.dir
        api = self._start(
            "kube-apiserver",
            f"--etcd-servers=http://127.0.0.1:{client}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.api_port}",
            f"--cert-dir={d / 'apiserver-certs'}",
            f"--tls-cert-file={d / 'apiserver.crt'}",
            f"--tls-private-key-file={d / 'apiserver.key'}",
            f"--token-auth-file={d / 'tokens.csv'}",
            "--authorization-mode=AlwaysAllow",
            f"--service-account-key-file={d / 'sa.key'}",
            f"--service-account-signing-key-file={d / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--enable-priority-and-fairness=false",
            "--profiling=false",
            "--endpoint-reconciler-type=none",
        )
        self._wait(
            "kube-apiserver",
            lambda: self.kubectl("get", "--raw", "/readyz", check=False, timeout=5).returncode == 0,
            120,
            api,
            "kube-apiserver",
        )

    def start_controllers(self) -> None:
        d = self.dir
        self._start(
            "kube-controller-manager",
            f"--kubeconfig={self.kubeconfig}",
            "--leader-elect=false",
            "--secure-port=0",
            "--controllers=*,-nodeipam,-route,-service,-cloud-node-lifecycle",
            f"--service-account-private-key-file={d / 'sa.key'}",
            f"--root-ca-file={d / 'apiserver.crt'}",
            "--use-service-account-credentials=false",
            # kwok renews node leases; a long grace keeps a slow CI run from marking nodes
            # (and so their pods) not ready
            "--node-monitor-grace-period=3600s",
            "--concurrent-deployment-syncs=2",
            "--horizontal-pod-autoscaler-sync-period=5s",
        )
        self._start(
            "kube-scheduler",
            f"--kubeconfig={self.kubeconfig}",
            "--leader-elect=false",
            "--secure-port=0",
        )
        stages = self.dir / "kwok-stages.yaml"
        stages.write_text("---\n".join(json.dumps(st) + "\n" for st in KWOK_STAGES))
        self._start(
            "kwok",
            f"--kubeconfig={self.kubeconfig}",
            f"--config={stages}",
            "--node-lease-duration-seconds=40",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--manage-nodes-with-label-selector=",
            f"--server-address=127.0.0.1:{free_port()}",
            "--cidr=10.244.0.1/24",
            "--node-ip=10.244.0.1",
        )

    def stop(self) -> None:
        """SIGTERM by PID in reverse start order (kwok, controllers, API server, etcd)."""
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        self.procs.clear()


def _stage(name: str, kind: str, match: list[dict], nxt: dict) -> dict:
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": name},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": kind},
            "selector": {"matchExpressions": match},
            "next": nxt,
        },
    }


_COND = """- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: %s
"""
# kwok's stages (its lifecycle rules), written here: nodes become Ready, pods on them Running
# and Ready at once (no containers), deleted pods go away.
KWOK_STAGES = [
    _stage(
        "node-initialize",
        "Node",
        [
            {
                "key": '.status.conditions.[] | select( .type == "Ready" ) | .status',
                "operator": "NotIn",
                "values": ["True"],
            }
        ],
        {
            "statusTemplate": "{{ $now := Now }}\nconditions:\n"
            + (_COND % "Ready").replace("status:", "reason: KubeletReady\n  status:")
            + "phase: Running\n"
        },
    ),
    _stage(
        "pod-ready",
        "Pod",
        [
            {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
            {"key": ".status.podIP", "operator": "DoesNotExist"},
        ],
        {
            "statusTemplate": "{{ $now := Now }}\nconditions:\n"
            + "".join(
                _COND % t for t in ("Initialized", "ContainersReady", "Ready", "PodScheduled")
            )
            + """containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: true
  restartCount: 0
  started: true
  state:
    running:
      startedAt: {{ $now | Quote }}
{{ end }}
hostIP: {{ NodeIP | Quote }}
podIP: {{ PodIP | Quote }}
phase: Running
startTime: {{ $now | Quote }}
"""
        },
    ),
    _stage(
        "pod-delete",
        "Pod",
        [{"key": ".metadata.deletionTimestamp", "operator": "Exists"}],
        {"finalizers": {"empty": True}, "delete": True},
    ),
]


def _tcp_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0
