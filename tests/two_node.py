"""A real two-node Ray cluster on one machine: head and worker in two network namespaces.

The namespaces are joined by a veth pair (10.200.N.1 <-> 10.200.N.2), so the nodes reach each
other only over that link, as two hosts would (see ../shared/notes/ray.md). Every process of
a node runs inside its namespace, so ``ip netns pids`` names all of them: teardown kills
exactly those (never the suite's own local Ray) and removes the namespaces and temp dirs,
also when a test failed or timed out.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
HEAD_PORT = 6379
DASHBOARD_PORT = 8265


def netns_available() -> str | None:
    """None when network namespaces can be made here, else why not."""
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    probe = f"rfprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True)


@dataclass
class Node:
    netns: str
    ip: str
    temp_dir: str

    def pids(self) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", self.netns], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def pids_named(self, name: str) -> list[int]:
        found = []
        for pid in self.pids():
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == name:
                    found.append(pid)
            except OSError:
                pass
        return found


@dataclass
class TwoNodeCluster:
    """``with TwoNodeCluster() as c:`` starts both nodes; ``c.exec([...])`` runs in the head's namespace."""

    cpus_per_node: int = 2
    start_timeout_s: float = 90.0
    tag: str = field(default_factory=lambda: f"{os.getpid() % 100000}")
    head: Node = field(init=False)
    worker: Node = field(init=False)

    def __post_init__(self) -> None:
        subnet = 10 + os.getpid() % 240  # two suites at once (a CI clone and a local run) keep apart
        root = tempfile.mkdtemp(prefix="rf2n")  # short: Ray's socket paths must stay under 107 bytes
        self.root = Path(root)
        self.head = Node(f"rfh{self.tag}", f"10.200.{subnet}.1", str(self.root / "h"))
        self.worker = Node(f"rfw{self.tag}", f"10.200.{subnet}.2", str(self.root / "w"))
        self.veth = (f"rfvh{self.tag}", f"rfvw{self.tag}")

    # ---- lifecycle ---------------------------------------------------------------------
    def __enter__(self) -> "TwoNodeCluster":
        try:
            self._make_network()
            self._start(self.head, ["--head", f"--port={HEAD_PORT}", "--include-dashboard=true",
                                    f"--dashboard-host={self.head.ip}", f"--dashboard-port={DASHBOARD_PORT}"],
                        {"node_head": 1})
            self._start(self.worker, [f"--address={self.head.ip}:{HEAD_PORT}"], {"node_worker": 1})
            self.wait_for_nodes(2)
            self.roles = self.node_ids()  # kept: a node that dies later no longer lists itself
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _make_network(self) -> None:
        a, b = self.veth
        _sh("ip", "netns", "add", self.head.netns)
        _sh("ip", "netns", "add", self.worker.netns)
        _sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        for node, dev in ((self.head, a), (self.worker, b)):
            _sh("ip", "link", "set", dev, "netns", node.netns)
            _sh("ip", "-n", node.netns, "addr", "add", f"{node.ip}/24", "dev", dev)
            _sh("ip", "-n", node.netns, "link", "set", dev, "up")
            _sh("ip", "-n", node.netns, "link", "set", "lo", "up")

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env["RAY_AUTH_MODE"] = "disabled"  # the same on every node, driver and `ray job` CLI
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        return env

    def _start(self, node: Node, args: list[str], resources: dict[str, int]) -> None:
        cmd = [str(VENV_BIN / "ray"), "start", *args, f"--node-ip-address={node.ip}",
               f"--num-cpus={self.cpus_per_node}", "--num-gpus=0", f"--resources={json.dumps(resources)}",
               f"--temp-dir={node.temp_dir}", "--disable-usage-stats"]
        done = subprocess.run(["ip", "netns", "exec", node.netns, *cmd], env=self.env(), capture_output=True,
                              text=True, timeout=self.start_timeout_s)
        if done.returncode != 0:
            raise RuntimeError(f"ray start failed in {node.netns}: {done.stdout[-2000:]}{done.stderr[-2000:]}")

    def close(self) -> None:
        """Kill every process in both namespaces, remove them, the veth and the temp dirs."""
        for node in (self.worker, self.head):
            for _ in range(3):
                pids = node.pids()
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.3)
            subprocess.run(["ip", "netns", "del", node.netns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.veth[0]], capture_output=True)  # gone with its netns, normally
        shutil.rmtree(self.root, ignore_errors=True)

    # ---- use ---------------------------------------------------------------------------
    @property
    def address(self) -> str:
        return f"{self.head.ip}:{HEAD_PORT}"

    @property
    def dashboard(self) -> str:
        return f"http://{self.head.ip}:{DASHBOARD_PORT}"

    def exec(self, cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
        """Run ``cmd`` in the head's namespace (a driver, the `ray job` CLI)."""
        return subprocess.run(["ip", "netns", "exec", self.head.netns, *cmd], env=self.env(),
                              capture_output=True, text=True, **kwargs)

    def popen(self, cmd: list[str]) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.head.netns, *cmd], env=self.env(),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def alive_nodes(self) -> list[dict]:
        probe = ("import json, ray; ray.init(address='%s', logging_level='ERROR'); "
                 "print(json.dumps([{'id': n['NodeID'], 'ip': n['NodeManagerAddress']} "
                 "for n in ray.nodes() if n['Alive']]))" % self.address)
        done = self.exec([sys.executable, "-c", probe], timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"cannot list the cluster's nodes: {done.stderr[-2000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    def wait_for_nodes(self, count: int) -> list[dict]:
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            nodes = self.alive_nodes()
            if len(nodes) >= count or time.monotonic() > deadline:
                if len(nodes) < count:
                    raise RuntimeError(f"{len(nodes)} of {count} Ray nodes came up: {nodes}")
                return nodes
            time.sleep(1.0)

    def node_ids(self) -> dict[str, str]:
        """Ray node id -> 'head' / 'worker' (by the namespace address the node registered with)."""
        role = {self.head.ip: "head", self.worker.ip: "worker"}
        return {n["id"]: role.get(n["ip"], n["ip"]) for n in self.alive_nodes()}
