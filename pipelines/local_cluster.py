"""A Ray cluster on this machine, started with `ray start --block` and ended with it.

Each node runs in its own process group (Ray's workers die with their raylet), so
stopping ends exactly this cluster, never another Ray on the same machine; each
has its own temp dir and ports, and token authentication with a fresh token.
Used by `pipelines.repro` (one Ray for all the train stages of a run), the
cluster tests (two nodes), and `shared_local_ray`: the one-node Ray that the train
stages of one repository share when no cluster is named, started by the first stage
that needs it and stopped by its keeper process once no stage has used it for a while.

    python -m pipelines.local_cluster <state folder> <repository> <idle seconds>   # the keeper
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

RAY = str(Path(sys.executable).parent / "ray")


class ClusterUnavailable(RuntimeError):
    """No Ray to train on: an address nothing answers at, a refused client, a local Ray that did not start."""


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


# --- the local Ray a repository's train stages share ----------------------------------------------

def shared_root(repository: Path) -> Path:
    """The shared Ray's folder: its state, its keeper's log, the stages' leases, Ray's own temp dir.
    Short (Ray's socket paths must fit in 107 bytes) and one per repository and user."""
    digest = hashlib.sha256(str(repository.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"genzoo-ray-{os.getuid()}-{digest}"


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Stages deciding to join or start, and the keeper deciding to stop, take turns."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)   # state.json holds the Ray's token: this user's only
    with open(root / "lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def alive(pid: int) -> bool:
    """Whether a process of this id exists (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _running(root: Path) -> dict | None:
    """The shared Ray's address and token, if its keeper is alive (call with the lock held)."""
    try:
        state = json.loads((root / "state.json").read_text())
    except (OSError, ValueError):
        return None
    return state if alive(state["keeper"]) else None


def _live_leases(root: Path) -> list[Path]:
    """The stages using the shared Ray now: a lease per stage process, stale ones (killed stages) dropped."""
    live = []
    for lease in (root / "leases").glob("*"):
        if lease.name.isdigit() and alive(int(lease.name)):
            live.append(lease)
        else:
            lease.unlink(missing_ok=True)
    return live


@contextlib.contextmanager
def shared_local_ray(repository: Path, idle: float, timeout: float = 180) -> Iterator[dict]:
    """{address, token} of the one-node Ray this repository's stages share, started if none runs.

    The block holds a lease; the keeper stops the Ray `idle` seconds after the last lease ends,
    or when the repository is gone. Stages of one `dvc repro` so join the Ray the first one
    started instead of starting and stopping their own (benchmarks/scaling.py --part overhead)."""
    root = shared_root(repository)
    lease = root / "leases" / str(os.getpid())
    with _locked(root):
        state = _running(root)
        if state is None:
            (root / "state.json").unlink(missing_ok=True)
            log = root / "keeper.log"
            with open(log, "w") as stderr:
                keeper = subprocess.Popen(
                    [sys.executable, "-m", "pipelines.local_cluster", str(root), str(repository.resolve()),
                     str(idle)], cwd=Path(__file__).resolve().parents[1], start_new_session=True,
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
            deadline = time.time() + timeout
            while (state := _running(root)) is None:
                if keeper.poll() is not None or time.time() > deadline:
                    keeper.kill()
                    raise ClusterUnavailable(f"the local Ray did not start (its keeper's log, {log}):\n"
                                             f"{log.read_text()[-3000:]}")
                time.sleep(0.2)
        lease.parent.mkdir(exist_ok=True)
        lease.touch()
    try:
        yield state
    finally:
        lease.unlink(missing_ok=True)


def keep(root: Path, repository: Path, idle: float) -> None:
    """The keeper: start a one-node Ray with every CPU, publish it, stop it when idle."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # run the cleanup below
    shutil.rmtree(root / "node0", ignore_errors=True)    # Ray sessions of an earlier keeper
    with local_cluster(root, [os.cpu_count() or 1]) as cluster:
        try:
            published = root / "state.json.new"
            published.write_text(json.dumps({"address": cluster.address, "token": cluster.token,
                                             "keeper": os.getpid()}))
            published.replace(root / "state.json")
            quiet_since = time.monotonic()
            while cluster.processes[0].poll() is None and repository.exists():
                time.sleep(0.5)
                with _locked(root):
                    if _live_leases(root):
                        quiet_since = time.monotonic()
                    elif time.monotonic() - quiet_since >= idle:
                        (root / "state.json").unlink(missing_ok=True)  # under the lock: no stage joins from now on
                        break
        finally:   # any other exit: withdrawn before the Ray stops
            with _locked(root):
                with contextlib.suppress(OSError, ValueError):
                    if json.loads((root / "state.json").read_text())["keeper"] == os.getpid():
                        (root / "state.json").unlink()


if __name__ == "__main__":
    keep(Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]))
