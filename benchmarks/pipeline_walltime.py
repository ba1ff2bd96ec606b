"""Benchmark: wall time of a whole `dvc repro`, stage by stage, and its metrics.

    python benchmarks/pipeline_walltime.py                     # the default pipeline
    python benchmarks/pipeline_walltime.py --params benchmarks/binarized_mnist_pipeline.yaml

Runs in a temporary copy of the repository (what git would commit), with a
fresh MLflow store, so nothing is reused from earlier runs. `--params` merges a
YAML file over params.yaml (sections merge key by key; `models` is replaced).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def merged_params(overlay_path: str | None) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    overlay = yaml.safe_load(Path(overlay_path).read_text()) if overlay_path else {}
    for section, values in overlay.items():
        if section != "models" and isinstance(values, dict):
            params.setdefault(section, {}).update(values)
        else:
            params[section] = values
    path = params["data"].get("path")
    if path and not Path(path).is_absolute():  # relative to this checkout, not to the temporary copy
        params["data"]["path"] = str((REPO / path).resolve())
    return params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", help="YAML merged over params.yaml")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="genzoo-bench-") as folder:
        copy = Path(folder)
        names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.split()
        for name in names:
            if (REPO / name).is_file() and name != "dvc.lock":
                (copy / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / name, copy / name)
        (copy / "params.yaml").write_text(yaml.safe_dump(merged_params(args.params), sort_keys=False))
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
        metrics = subprocess.run(["dvc", "metrics", "show", "--precision", "4"], cwd=copy, env=env,
                                 capture_output=True, text=True).stdout
    print(f"\nwhole dvc repro: {total:.1f} s on {os.cpu_count()} CPU cores")
    for stage, seconds in stages:
        print(f"  {stage:22} {seconds:6.1f} s")
    print(metrics)
    print("command: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
