"""Benchmark: what Ray scaling buys on this machine, and what it costs.

    python benchmarks/scaling.py                       # all three parts, the default 8x8 digits
    python benchmarks/scaling.py --part throughput --model pixelcnn --epochs 4
    python benchmarks/scaling.py --part sweep --trials 4
    python benchmarks/scaling.py --part overhead --repeats 3

* throughput: one model's training images/s with 1 and 2 data-parallel Ray Train
  workers (median over epochs after the first) and the scaling efficiency
  (images/s with 2 workers / twice that with 1).
* sweep: wall time of a `trials`-trial Ray Tune sweep with every trial it can run at
  once vs. one trial after another (`concurrent: 1`), same seeds and budget.
* overhead: Ray's fixed cost per train stage, in a fresh process as DVC runs it:
  imports, `ray.init`, Ray Train's start (fit() until the train function runs),
  one reported checkpoint, `ray.shutdown`; a local Ray per stage vs. joining a
  Ray already running (`ray start --head`, then RAY_ADDRESS), alternately.

Every run is a real `python -m pipelines.train` (or Ray Train) in a temporary
workspace with a fresh MLflow store; CPU only (figures on a GPU need a GPU machine).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def workspace(folder: Path, models: dict, train: dict) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"].update(train)
    params["models"] = models
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    if not (folder / "components").exists():
        (folder / "components").symlink_to(REPO / "components")  # the code MLflow bundles with a model
    if not (folder / "data/prepared/train.parquet").exists():
        subprocess.run([sys.executable, "-m", "pipelines.prepare"], cwd=folder, check=True, capture_output=True,
                       env=environment())
    return folder


def environment(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    return {**env, "PYTHONPATH": str(REPO), **extra}


def train(folder: Path, key: str, **env) -> float:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "pipelines.train", key], cwd=folder, capture_output=True,
                            text=True, env=environment(**env))
    if result.returncode != 0:
        sys.exit(f"{key} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def throughput(folder: Path, model: str, epochs: int) -> None:
    entry = yaml.safe_load((REPO / "params.yaml").read_text())["models"][model]
    rows = []
    for workers in (1, 2):
        key = f"{model}_{workers}w"
        workspace(folder, {key: {**entry, "training": {"epochs": epochs, "patience": epochs,
                                                       "num_workers": workers}}}, {})
        wall = train(folder, key)
        with open(folder / f"reports/{key}/training.csv") as handle:
            speeds = [float(r["images_per_second"]) for r in csv.DictReader(handle)][1:]
        rows.append((workers, statistics.median(speeds), wall))
    base = rows[0][1]
    print(f"\nthroughput: {model}, {epochs} epochs, 8x8 digits, local Ray on {os.cpu_count()} CPUs")
    print("| workers | images/s (median) | scaling efficiency | stage wall time |")
    print("|---|---|---|---|")
    for workers, speed, wall in rows:
        print(f"| {workers} | {speed:,.0f} | {speed / (workers * base):.0%} | {wall:.1f} s |")


def sweep(folder: Path, model: str, trials: int, epochs: int) -> None:
    entry = yaml.safe_load((REPO / "params.yaml").read_text())["models"][model]
    space = {"training.lr": {"loguniform": [0.0003, 0.01]}}
    rows = []
    for concurrent in (None, 1):
        key = f"{model}_sweep_{concurrent or 'all'}"
        # grace_epochs = epochs: ASHA stops nothing, so both runs do the same work.
        spec = {"trials": trials, "grace_epochs": epochs, "space": space,
                **({"concurrent": concurrent} if concurrent else {})}
        workspace(folder, {key: {**entry, "training": {"epochs": epochs, "patience": epochs}, "sweep": spec}}, {})
        rows.append((concurrent, train(folder, key)))
    print(f"\nsweep: {trials} trials of {model}, {epochs} epochs each, 1 worker per trial, "
          f"local Ray on {os.cpu_count()} CPUs")
    print("| trials at once | stage wall time |")
    print("|---|---|")
    for concurrent, wall in rows:
        print(f"| {concurrent or 'as many as CPUs (' + str(os.cpu_count()) + ')'} | {wall:.1f} s |")
    print(f"speed-up of concurrent trials: {rows[1][1] / rows[0][1]:.2f}x")


PROBE = r"""
import json, os, sys, tempfile, time
t0 = time.perf_counter()
from pipelines import ray_session, ray_train   # first: it puts Ray in token mode when a token is given
import dataclasses, ray, torch, ray.train
from components.training import Settings      # already imported by ray_train's workers' loop
t_import = time.perf_counter()
storage = sys.argv[1]

def train_fn(config):
    entered = time.time()
    with tempfile.TemporaryDirectory() as folder:
        torch.save({}, os.path.join(folder, "state.pt"))
        ray.train.report({"entered": entered}, checkpoint=ray.train.Checkpoint.from_directory(folder))

session = ray_session.ray_session(os.environ.get("RAY_ADDRESS"))
session.__enter__()
t_init = time.perf_counter()
# every setting, defaults filled in, as the train stage hands them to Ray (one worker, no GPU)
settings = dataclasses.asdict(Settings.from_dict({"epochs": 1, "batch_size": 1, "lr": 1.0, "patience": 1,
                                                  "use_gpu": False}))
trainer = ray_train.make_trainer({}, settings, storage, f"probe-{time.time()}")
trainer = type(trainer)(train_fn, scaling_config=trainer.scaling_config, run_config=trainer.run_config)
wall_fit, result = time.time(), trainer.fit()
t_fit = time.perf_counter()
session.__exit__(None, None, None)
t_end = time.perf_counter()
entered = result.metrics["entered"]
print(json.dumps({"imports": t_import - t0, "ray.init": t_init - t_import,
                  "Train start (fit until the train function runs)": entered - wall_fit,
                  "report + finish": (t_fit - t_init) - (entered - wall_fit),
                  "shutdown": t_end - t_fit, "total": t_end - t0}))
"""

def start_head(folder: Path) -> tuple[subprocess.Popen, dict]:
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    number = port.getsockname()[1]
    port.close()
    env = environment(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16))
    head = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
                             f"--port={number}", f"--num-cpus={os.cpu_count()}", "--include-dashboard=false",
                             "--node-ip-address=127.0.0.1", f"--temp-dir={folder / 'ray-head'}"],
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(120):
        try:
            socket.create_connection(("127.0.0.1", number), timeout=1).close()
            break
        except OSError:
            time.sleep(0.5)
    time.sleep(3)  # the raylet registers after the GCS answers
    return head, {"RAY_ADDRESS": f"127.0.0.1:{number}", "RAY_AUTH_TOKEN": env["RAY_AUTH_TOKEN"]}


def overhead(folder: Path, repeats: int) -> None:
    """A train stage's Ray costs with a local Ray of its own and joining one already running, alternately,
    so both see the same machine load."""
    def probe(**env) -> dict:
        result = subprocess.run([sys.executable, "-c", PROBE, str(folder / "storage")],
                                cwd=folder, capture_output=True, text=True, env=environment(**env))
        if result.returncode != 0:
            sys.exit(f"overhead probe failed:\n{result.stderr[-3000:]}")
        return json.loads(result.stdout.strip().splitlines()[-1])

    local, joined = [], []
    head, cluster_env = start_head(folder)
    try:
        for _ in range(repeats):
            local.append(probe())
            joined.append(probe(**cluster_env))
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
    print(f"\nRay's fixed cost per train stage (median of {repeats}, fresh process, 1 worker, one checkpoint; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs at the end)")
    print("| phase | local Ray per stage | joining a running Ray (`ray start --head`, RAY_ADDRESS) |")
    print("|---|---|---|")
    for phase in local[0]:
        print(f"| {phase} | {statistics.median(r[phase] for r in local):.1f} s | "
              f"{statistics.median(r[phase] for r in joined):.1f} s |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("throughput", "sweep", "overhead", "all"), default="all")
    parser.add_argument("--model", default="pixelcnn", help="a model key of params.yaml")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    with tempfile.TemporaryDirectory(prefix="genzoo-scaling-") as folder:
        folder = Path(folder)
        if args.part in ("throughput", "all"):
            throughput(folder, args.model, args.epochs)
        if args.part in ("sweep", "all"):
            sweep(folder, args.model, args.trials, args.epochs)
        if args.part in ("overhead", "all"):
            overhead(folder, args.repeats)


if __name__ == "__main__":
    main()
