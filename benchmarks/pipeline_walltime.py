"""Benchmark: wall time of a whole default `dvc repro`, stage by stage.

    python benchmarks/pipeline_walltime.py

Runs in a temporary copy of the repository (what git would commit), with a
fresh MLflow store, so nothing is reused from earlier runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="genzoo-bench-") as folder:
        copy = Path(folder)
        names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.split()
        for name in names:
            if (REPO / name).is_file() and name != "dvc.lock":
                (copy / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / name, copy / name)
        subprocess.run(["git", "init", "-q"], cwd=copy, check=True)
        env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
        started = time.perf_counter()
        stages, current, mark = [], None, started
        process = subprocess.Popen(["dvc", "repro"], cwd=copy, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        for line in process.stdout:
            if line.startswith("Running stage"):
                now = time.perf_counter()
                if current:
                    stages.append((current, now - mark))
                current, mark = line.split("'")[1], now
                print(f"  {now - started:6.1f}s  {current}", flush=True)
        process.wait()
        total = time.perf_counter() - started
        if current:
            stages.append((current, time.perf_counter() - mark))
        if process.returncode:
            sys.exit(f"dvc repro failed with exit code {process.returncode}")
    print(f"\nwhole default dvc repro: {total:.1f} s on {os.cpu_count()} CPU cores")
    for stage, seconds in stages:
        print(f"  {stage:22} {seconds:6.1f} s")
    print("command: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
