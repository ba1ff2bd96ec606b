"""A Ray cluster on this machine, started with `ray start --block` and ended with it.

Each node runs in its own process group (Ray's workers die with their raylet), so
stopping ends exactly this cluster, never another Ray on the same machine; each
has its own temp dir and ports, and token authentication with a fresh token.
Used by `pipelines.repro` (one Ray for all the train stages of a run, in a private
temporary folder) and the cluster tests (two nodes).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

RAY = str(Path(sys.executable).parent / "ray")


def end_with_parent() -> None:
    """In a child process (Popen's preexec_fn): receive SIGTERM when the parent dies, even by SIGKILL,
    so a killed runner does not leave a Ray cluster or stages running behind it (Linux; elsewhere a no-op)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LocalCluster:
    address: str
    token: str
    root: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    def client_env(self, base: dict | None = None) -> dict:
        """What a process needs to join: the address and the token (and no other Ray settings)."""
        env = {k: v for k, v in (base if base is not None else os.environ).items() if not k.startswith("RAY_")}
        env.update(RAY_ADDRESS=self.address, RAY_AUTH_TOKEN=self.token, RAY_AUTH_MODE="token")
        return env

    def add_node(self, cpus: int, head: bool = False) -> None:
        name = f"node{len(self.processes)}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=self.token, RAY_USAGE_STATS_ENABLED="0")
        command = [RAY, "start", "--block", f"--num-cpus={cpus}", "--node-ip-address=127.0.0.1",
                   "--disable-usage-stats", f"--dashboard-agent-listen-port={free_port()}",
                   f"--temp-dir={self.root / name}"]
        if head:
            command += ["--head", f"--port={self.address.split(':')[1]}", "--include-dashboard=false"]
        else:
            command += [f"--address={self.address}"]
        log = self.root / f"{name}.log"
        self.processes.append(subprocess.Popen(command, env=env, start_new_session=True, preexec_fn=end_with_parent,
                                               stdout=subprocess.DEVNULL, stderr=open(log, "w")))
        self.wait_for_nodes(len(self.processes), log)

    def wait_for_nodes(self, count: int, log: Path, timeout: float = 120) -> None:
        """Until the cluster has `count` live nodes; fails at once if the `ray start` just launched exits."""
        deadline = time.time() + timeout
        probe = (f"import ray; ray.init(address={self.address!r}, logging_level='ERROR'); "
                 "print(sum(n['Alive'] for n in ray.nodes()))")
        host, port = self.address.split(":")
        while time.time() < deadline:
            process = self.processes[-1]
            if process.poll() is not None:
                raise RuntimeError(f"ray start exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
            except OSError:
                time.sleep(0.5)
                continue
            result = subprocess.run([sys.executable, "-c", probe], env=self.client_env(), capture_output=True,
                                    text=True, timeout=60)
            if result.returncode == 0 and int(result.stdout.strip().splitlines()[-1]) >= count:
                return
            time.sleep(1)
        raise TimeoutError(f"the Ray cluster at {self.address} did not reach {count} nodes:\n"
                           f"{log.read_text()[-3000:]}")

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # whatever did not exit on SIGTERM
            process.wait()


@contextlib.contextmanager
def local_cluster(root: Path, cpus_per_node: list[int]) -> Iterator[LocalCluster]:
    """A head node and `len(cpus_per_node) - 1` more, on free ports, torn down on exit."""
    root.mkdir(parents=True, exist_ok=True)
    cluster = LocalCluster(f"127.0.0.1:{free_port()}", secrets.token_hex(16), root)
    try:
        for index, cpus in enumerate(cpus_per_node):
            cluster.add_node(cpus, head=index == 0)
        yield cluster
    finally:
        cluster.stop()
