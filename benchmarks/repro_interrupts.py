"""Benchmark: Ctrl-C at random moments of `python -m pipelines.repro`, on a pipeline of fast probe stages.

    python benchmarks/repro_interrupts.py --rounds 50

Each round gives the pipeline a new input (every stage must rerun), starts the runner with
`--jobs 2`, sends it SIGINT after a random delay, and then checks what DVC says:
- every stage `dvc status` calls up to date holds the output of this round's input, written whole
  (a stage recorded as done without having run would hold the last round's);
- every stage the runner was running and had not reported done is either shown as changed or, if it
  finished in the same instant, holds this round's whole output;
- a second run completes the rest: exit 0, `dvc status` clean, every output this round's.
Prints one line per round and the counts. tests/test_repro.py runs a few rounds of it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = ("a", "b", "c", "d", "e", "f")
DEPENDS = {"a": [], "b": [], "c": ["a"], "d": ["a", "b"], "e": ["c"], "f": ["d", "e"]}
PROBE = '''import sys, time
from pathlib import Path
name = sys.argv[1]
data = Path("input.txt").read_text().strip()
for _ in range(8):          # about 0.4 s of work, interruptible anywhere
    time.sleep(0.05)
Path("out").mkdir(exist_ok=True)
Path(f"out/{name}.txt").write_text(f"{data} complete")
'''


def environment() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI" and not k.startswith("RAY_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(REPO)
    env["DVC_NO_ANALYTICS"] = "1"
    return env


def make_probe_repo(folder: Path) -> Path:
    """A DVC repository whose stages are the probe, with the project's params.yaml (the runner checks it)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "params.yaml", folder / "params.yaml")
    (folder / "probe.py").write_text(PROBE)
    (folder / "input.txt").write_text("0\n")
    stages = {name: {"cmd": f"python probe.py {name}",
                     "deps": ["probe.py", "input.txt", *(f"out/{d}.txt" for d in DEPENDS[name])],
                     "outs": [{f"out/{name}.txt": {"cache": False}}]} for name in STAGES}
    (folder / "dvc.yaml").write_text(json.dumps({"stages": stages}, indent=1))
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=folder, env=environment(), check=True)
    return folder


def status(folder: Path) -> set[str]:
    """The stages `dvc status` reports as changed."""
    done = subprocess.run(["dvc", "status", "--json"], cwd=folder, env=environment(), capture_output=True,
                          text=True, check=True)
    return set(json.loads(done.stdout or "{}"))


def output(folder: Path, name: str) -> str | None:
    path = folder / "out" / f"{name}.txt"
    return path.read_text() if path.exists() else None


def run_round(folder: Path, number: int, delay: float, after_first_stage: bool = False) -> dict:
    """One round: new input, the runner interrupted after `delay` s (counted from its first stage's start
    with `after_first_stage`), the checks, a completing rerun."""
    (folder / "input.txt").write_text(f"{number}\n")
    expected = f"{number} complete"
    runner = subprocess.Popen([sys.executable, "-m", "pipelines.repro", "--jobs", "2"], cwd=folder, env=environment(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    if after_first_stage:
        for line in runner.stdout:
            seen.append(line)
            if line.startswith("repro: running "):
                break
    time.sleep(delay)
    runner.send_signal(signal.SIGINT)
    rest, _ = runner.communicate(timeout=120)
    log = "".join(seen) + rest
    started = {line.split()[-1] for line in log.splitlines() if line.startswith("repro: running ")}
    finished = {line.split()[1] for line in log.splitlines() if line.startswith("repro: ") and " done in " in line}
    changed = status(folder)
    wrong = [name for name in STAGES if name not in changed and output(folder, name) != expected]
    interrupted = started - finished
    unfinished_but_done = [name for name in interrupted if name not in changed and output(folder, name) != expected]
    rerun = subprocess.run([sys.executable, "-m", "pipelines.repro", "--jobs", "2"], cwd=folder, env=environment(),
                           capture_output=True, text=True, timeout=300)
    after = status(folder)
    complete = rerun.returncode == 0 and not after and all(output(folder, n) == expected for n in STAGES)
    return {"round": number, "delay": round(delay, 2), "exit": runner.returncode, "interrupted": sorted(interrupted),
            "shown_not_done": sorted(interrupted & changed), "done_without_output": wrong + unfinished_but_done,
            "rerun_completes": complete, "rerun_log": "" if complete else rerun.stdout[-2000:] + rerun.stderr[-2000:]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--max-delay", type=float, default=12.0, help="seconds; a whole run takes about this")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as scratch:
        folder = make_probe_repo(Path(scratch) / "probe")
        subprocess.run([sys.executable, "-m", "pipelines.repro"], cwd=folder, env=environment(), check=True,
                       capture_output=True)
        results = []
        for number in range(1, args.rounds + 1):
            result = run_round(folder, number, rng.uniform(0.0, args.max_delay))
            results.append(result)
            print(json.dumps({k: v for k, v in result.items() if k != "rerun_log" or v}), flush=True)
    bad = [r for r in results if r["done_without_output"] or not r["rerun_completes"]]
    print(f"{len(results)} interrupts: {sum(r['exit'] == 130 for r in results)} interrupted a run, "
          f"{sum(len(r['interrupted']) for r in results)} stages interrupted, "
          f"{sum(len(r['shown_not_done']) for r in results)} of them shown as not done by dvc status; "
          f"{sum(len(r['done_without_output']) for r in results)} recorded as done without this round's output; "
          f"{sum(r['rerun_completes'] for r in results)} reruns completed")
    print(f"command: python benchmarks/repro_interrupts.py --rounds {args.rounds} --max-delay {args.max_delay} "
          f"--seed {args.seed}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
