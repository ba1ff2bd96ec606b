"""Benchmark: wall time of a whole `dvc repro`, stage by stage, and its metrics.

    python benchmarks/pipeline_walltime.py                     # the default pipeline
    python benchmarks/pipeline_walltime.py --params benchmarks/binarized_mnist_pipeline.yaml
    python benchmarks/pipeline_walltime.py --jobs 2                # through pipelines.repro
    python benchmarks/pipeline_walltime.py --keep /tmp/run         # leave the copy there afterwards

Runs in a temporary copy of the repository (what git would commit), with a
fresh MLflow store, so nothing is reused from earlier runs. `--params` merges a
YAML file over params.yaml (sections merge key by key; `models` is replaced).
"""

from __future__ import annotations

import argparse
import contextlib
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
    parser.add_argument("--jobs", type=int, help="run `python -m pipelines.repro --jobs N` (stages at once, one "
                                                 "shared local Ray) instead of `dvc repro`")
    parser.add_argument("--keep", metavar="FOLDER", help="run in this new folder and leave it there (to look at "
                                                          "or profile the trained pipeline afterwards)")
    args = parser.parse_args()
    if args.keep:
        Path(args.keep).mkdir(parents=True)  # a new folder: an old run's outputs would make DVC skip stages
        folder = contextlib.nullcontext(args.keep)
    else:
        folder = tempfile.TemporaryDirectory(prefix="genzoo-bench-")
    with folder as folder:
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
        command = [sys.executable, "-m", "pipelines.repro", "--jobs", str(args.jobs)] if args.jobs else ["dvc", "repro"]
        process = subprocess.Popen(command, cwd=copy, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        tail: list[str] = []   # what the pipeline printed last: shown when it fails
        for line in process.stdout:
            tail = (tail + [line])[-60:]
            if args.jobs:  # stages overlap: the runner reports each one's own duration
                if line.startswith("repro: ") and " done in " in line:
                    name, seconds = line.removeprefix("repro: ").split(" done in ")
                    stages.append((name, float(seconds.split()[0])))
                    print(f"  {time.perf_counter() - started:6.1f}s  {name} done", flush=True)
                continue
            if line.startswith("Running stage"):
                now = time.perf_counter()
                if current:
                    stages.append((current, now - mark))
                current, mark = line.split("'")[1], now
                print(f"  {now - started:6.1f}s  {current}", flush=True)
        process.wait()
        total = time.perf_counter() - started
        if current and not args.jobs:
            stages.append((current, time.perf_counter() - mark))
        if process.returncode:
            sys.exit("".join(tail) + f"{' '.join(command)} failed with exit code {process.returncode}")
        metrics = subprocess.run(["dvc", "metrics", "show", "--precision", "4"], cwd=copy, env=env,
                                 capture_output=True, text=True).stdout
    print(f"\nwhole {' '.join(command[-3:]) if args.jobs else 'dvc repro'}: {total:.1f} s on {os.cpu_count()} CPU cores")
    for stage, seconds in stages:
        print(f"  {stage:22} {seconds:6.1f} s")
    print(metrics)
    print("command: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
