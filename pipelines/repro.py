"""`dvc repro` with up to N independent stages at once.

    python -m pipelines.repro --jobs 2 [stage ...]

DVC runs a pipeline's stages one after another. This runner reads the same
DAG (`dvc.yaml`), finds the stages that `dvc status` reports changed and
everything downstream of them, and runs each as `dvc repro --single-item
<stage>` as soon as the stages it depends on have finished, with at most
`--jobs` running. Each is still a DVC stage: DVC decides whether it runs,
records it in dvc.lock under its own repo lock, and releases that lock while
the stage's command runs, so stages really overlap; `dvc status` is clean
afterwards, as after a sequential `dvc repro`.

Training: without RAY_ADDRESS (or `cluster.address`) the runner starts one
local Ray for the whole run and every train stage joins it, instead of each
starting and stopping its own (Ray's fixed cost per stage). It starts while
the stages before training run and stops while the last evaluations run.
With a cluster address the stages train there. Of the stages ready at once,
those of a kind (train, evaluate) that fewer running stages are of go first.

A failing stage stops its dependants (reported as skipped) while independent
stages finish; the exit status is non-zero and names the stage. Ctrl-C (or a
SIGTERM) interrupts the running stages the way it interrupts `dvc repro`,
stops the local Ray, and leaves DVC and MLflow consistent: the next run
reruns what did not finish, and an interrupted training resumes from its
last checkpoint.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from components.schema import checked_params, exit_on_bad_params

if __name__ == "__main__":  # the whole params.yaml, before the imports below (DVC, MLflow) and any stage
    exit_on_bad_params()

from components.errors import ConfigError  # noqa: E402
from pipelines import tracking  # noqa: E402
from pipelines.local_cluster import end_with_parent, local_cluster  # noqa: E402
from pipelines.ray_session import STAGES_AT_ONCE, ClusterUnavailable, cluster_address  # noqa: E402

DVC = str(Path(sys.executable).parent / "dvc")


def plan(targets: list[str]) -> tuple[dict[str, set[str]], set[str]]:
    """The stage graph of `targets` and everything upstream of them (all stages if none), as
    stage -> the stages it depends on, and the stages of it to run: those `dvc status` reports
    changed and everything downstream of them."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(".") as repo:
        graph = repo.index.graph
        by_name = {stage.addressing: stage for stage in graph}
        unknown = [t for t in targets if t not in by_name]
        if unknown:
            raise SystemExit(f"repro: unknown stage(s) {', '.join(unknown)}; stages: {', '.join(sorted(by_name))}")
        keep = set(by_name) if not targets else set().union(
            *({t} | {s.addressing for s in nx.descendants(graph, by_name[t])} for t in targets))
        stages = {name: {s.addressing for s in graph.successors(by_name[name])} & keep for name in keep}
        # One status of the whole pipeline: asked stage by stage, DVC checks each one's upstream again
        # (50 s against 3 s for the default pipeline's 41 stages on a 2-core machine).
        changed = set(repo.status()) & keep
    grew = True
    while grew:
        downstream = {name for name, deps in stages.items() if deps & changed} - changed
        changed |= downstream
        grew = bool(downstream)
    return stages, changed


class BackgroundRay:
    """The run's one local Ray, started beside the first stages (prepare and the classifier need none)
    and stopped once no train stage is left, beside the last evaluations: neither start nor stop
    holds up a stage that does not train.

    One thread starts, holds and stops it: the Ray nodes end with the thread that started them
    (`end_with_parent`), so that thread lives as long as the Ray."""

    def __init__(self):
        self.cluster = None
        self.error: BaseException | None = None
        self.ready, self.stopping = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self.hold, daemon=True)
        self.thread.start()

    def hold(self) -> None:
        try:
            with tempfile.TemporaryDirectory(prefix="genzoo-ray-") as root, \
                    local_cluster(Path(root), [os.cpu_count() or 1]) as self.cluster:
                print(f"repro: one local Ray for every train stage at {self.cluster.address}", flush=True)
                self.ready.set()
                self.stopping.wait()
        except BaseException as error:   # reported by the train stages that needed it
            self.error = error
        finally:
            self.cluster = None
            self.ready.set()

    def env(self, base: dict) -> dict | None:
        """A train stage's environment once the Ray is up; None while it starts. Raises if it did not start."""
        if not self.ready.is_set():
            return None
        if self.cluster is None:
            raise ClusterUnavailable(f"the local Ray did not start: {self.error}")
        return self.cluster.client_env(base)

    def stop(self, wait: bool = False) -> None:
        self.stopping.set()
        if wait:
            self.thread.join()


class Runner:
    def __init__(self, stages: dict[str, set[str]], jobs: int, env: dict, ray: BackgroundRay | None = None):
        self.stages, self.jobs, self.env, self.ray = stages, jobs, env, ray
        self.running: dict[str, subprocess.Popen] = {}
        self.started: dict[str, float] = {}
        self.done: set[str] = set()
        self.failed: dict[str, int] = {}
        self.skipped: dict[str, str] = {}
        self.interrupted = False

    def start(self, name: str, env: dict) -> None:
        print(f"repro: running {name}", flush=True)
        process = subprocess.Popen([DVC, "--wait-for-lock", "repro", "--single-item", name], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                   start_new_session=True, preexec_fn=end_with_parent)
        threading.Thread(target=self.relay, args=(name, process), daemon=True).start()
        self.running[name] = process
        self.started[name] = time.perf_counter()

    @staticmethod
    def relay(name: str, process: subprocess.Popen) -> None:
        """Each stage's output, line by line, prefixed with its name (several run at once)."""
        for line in process.stdout:
            print(f"{name} | {line}", end="", flush=True)

    def blocked_by(self, name: str) -> str | None:
        """The failed stage upstream of `name` (through skipped ones), if any."""
        for dep in sorted(self.stages[name]):
            if dep in self.failed:
                return dep
            if dep in self.skipped:
                return self.skipped[dep]
        return None

    def run(self) -> None:
        pending = set(self.stages)
        while pending or self.running:
            for name, process in list(self.running.items()):
                if process.poll() is not None:
                    del self.running[name]
                    seconds = time.perf_counter() - self.started[name]
                    if process.returncode == 0:
                        self.done.add(name)
                        print(f"repro: {name} done in {seconds:.1f} s", flush=True)
                    else:
                        self.failed[name] = process.returncode
                        print(f"repro: {name} failed (exit {process.returncode})", flush=True)
            if self.interrupted:
                return
            for name in sorted(pending):
                blocker = self.blocked_by(name)
                if blocker:
                    self.skipped[name] = blocker
                    pending.discard(name)
            waiting: set[str] = set()   # train stages whose Ray is still starting
            while len(self.running) < self.jobs:
                # One at a time: each start changes which kind the next free slot should take.
                ready = [name for name in pending - waiting if self.stages[name] <= self.done]
                if not ready:
                    break
                name = min(ready, key=self.priority)
                env = self.env_for(name)
                if env is not None:
                    pending.discard(name)
                    self.start(name, env)
                elif name in self.failed:
                    pending.discard(name)
                else:
                    waiting.add(name)
            if self.ray and not any(name.startswith("train@") for name in (*pending, *self.running)):
                self.ray.stop()
            time.sleep(0.2)

    def priority(self, name: str) -> tuple:
        """Ready stages of a kind fewer of the running stages are of go first, train stages among
        equals. Two evaluations together barely beat one after the other (each keeps more than a core
        busy), while an evaluation beside a training fills the core the training leaves idle while Ray
        Train starts and reports."""
        kind = name.partition("@")[0]
        return sum(running.partition("@")[0] == kind for running in self.running), kind != "train", name

    def env_for(self, name: str) -> dict | None:
        """The stage's environment; None while the Ray a train stage needs is still starting."""
        if not (self.ray and name.startswith("train@")):
            return self.env
        try:
            return self.ray.env(self.env)
        except ClusterUnavailable as error:
            print(f"repro: {name} cannot train: {error}", flush=True)
            self.failed[name] = 1
            return None

    def interrupt(self, *_) -> None:
        """Ctrl-C: each `dvc repro` gets SIGINT, as from a terminal, and cleans up as it does there."""
        self.interrupted = True
        for process in self.running.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)

    def wait_for_running(self, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        for process in self.running.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.repro", description=__doc__.split("\n\n")[0])
    parser.add_argument("stages", nargs="*", help="stages to bring up to date with what they depend on (all if none)")
    parser.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1, help="stages at once (default: CPUs)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")

    try:
        params = checked_params()   # every section: a bad value fails here, not in the stage that reads it
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 1
    stages, to_run = plan(args.stages)
    if not to_run:
        print("repro: every stage is up to date")
        return 0
    stages = {name: deps & to_run for name, deps in stages.items() if name in to_run}
    # Create the MLflow store and experiment once, before stages log to it at the same time.
    tracking.configure()
    env = {**os.environ, STAGES_AT_ONCE: str(args.jobs)}   # train stages size their workers by it
    runner = Runner(stages, args.jobs, env)
    previous = {sig: signal.signal(sig, runner.interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    trains = any(name.startswith("train@") for name in stages)
    try:
        if trains and not cluster_address(params):
            runner.ray = BackgroundRay()
        runner.run()
        runner.wait_for_running()
    finally:
        if runner.ray:
            runner.ray.stop(wait=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    if runner.interrupted:
        print("repro: interrupted; the next run reruns what did not finish", flush=True)
        return 130
    for name, blocker in sorted(runner.skipped.items()):
        print(f"repro: {name} skipped: {blocker} failed", flush=True)
    if runner.failed:
        print(f"repro: failed: {', '.join(sorted(runner.failed))}", flush=True)
        return 1
    print(f"repro: {len(runner.done)} stage(s) up to date", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
