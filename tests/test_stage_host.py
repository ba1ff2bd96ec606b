"""The stage host (pipelines/stage_host.py): a stage forked from it behaves as the same command run on
its own (arguments, folder, environment, streams, exit status, Ctrl-C), a killed command takes its
stage with it, and the command runs the stage itself whenever the host cannot serve it.

The stage here is a probe module written into a fresh folder, served by a real host process; the
pipeline's own stages through the host are tests/test_repro.py's (a concurrent run equal to a
sequential `dvc repro`)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines import stage_host

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not stage_host.available(), reason="the stage host needs fork and pidfds (Linux)")

PROBE = '''
import json, os, sys, time
from pipelines.stage_host import delegate

if __name__ == "__main__":
    delegate("probe")
    try:
        print(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(), "pid": os.getpid(),
                          "var": os.environ.get("PROBE_VAR"), "host": os.environ.get("GENZOO_STAGE_HOST")}),
              flush=True)
        print("a line on stderr", file=sys.stderr, flush=True)
        mode = sys.argv[1]
        if mode == "exit":
            sys.exit(int(sys.argv[2]))
        if mode == "raise":
            raise RuntimeError("the probe failed")
        if mode == "sleep":   # short naps: a signal that lands just before a long nap's syscall waits it out
            for _ in range(1200):
                time.sleep(0.1)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(7)
'''


@pytest.fixture
def host(tmp_path):
    """A host serving the probe stage of tmp_path; yields (folder, socket path, environment)."""
    (tmp_path / "probe.py").write_text(PROBE)
    socket_path = str(tmp_path / "host.sock")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-c", "import sys; from pipelines import stage_host; "
                                "stage_host.serve(sys.argv[1], stages=('probe',), later=())", socket_path],
                               cwd=tmp_path, env=env, start_new_session=True)
    deadline = time.time() + 30
    while not os.path.exists(socket_path):
        assert process.poll() is None and time.time() < deadline, "the host did not start"
        time.sleep(0.05)
    env = {**env, stage_host.ENV: socket_path, "PROBE_VAR": "from the command"}
    assert run_probe(tmp_path, env, "exit", "0").stderr == "a line on stderr\n"   # served: it has loaded the probe
    yield tmp_path, socket_path, env
    process.terminate()
    process.wait(timeout=10)


def run_probe(folder, env, *args, **kwargs):
    return subprocess.run([sys.executable, "-m", "probe", *args], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=60, **kwargs)


def report(result) -> dict:
    return json.loads(result.stdout.splitlines()[0])


def test_a_stage_in_the_host_gets_the_commands_arguments_folder_environment_streams_and_status(host):
    folder, socket_path, env = host
    result = run_probe(folder, env, "exit", "3")
    seen = report(result)
    assert result.returncode == 3
    assert seen["argv"] == ["exit", "3"] and seen["cwd"] == str(folder) and seen["var"] == "from the command"
    assert seen["host"] is None   # what the stage runs itself does not go back to the host
    assert result.stderr == "a line on stderr\n"
    alone = run_probe(folder, {k: v for k, v in env.items() if k != stage_host.ENV}, "exit", "3")
    assert (alone.returncode, alone.stderr, report(alone)["argv"]) == (3, result.stderr, seen["argv"])


def test_a_stage_that_raises_exits_1_with_its_traceback(host):
    folder, _, env = host
    result = run_probe(folder, env, "raise")
    assert result.returncode == 1
    assert "RuntimeError: the probe failed" in result.stderr and "Traceback" in result.stderr


def test_the_stage_runs_in_a_child_of_the_host_not_in_the_command(host):
    folder, _, env = host
    command = subprocess.Popen([sys.executable, "-m", "probe", "sleep"], cwd=folder, env=env,
                               stdout=subprocess.PIPE, text=True)
    seen = json.loads(command.stdout.readline())
    parent = int(Path(f"/proc/{seen['pid']}/stat").read_text().rsplit(")", 1)[1].split()[1])
    assert seen["pid"] != command.pid and parent != command.pid
    command.send_signal(signal.SIGINT)
    assert command.wait(timeout=30) == 7


def test_ctrl_c_reaches_the_stage_once_and_its_status_comes_back(host):
    folder, _, env = host
    command = subprocess.Popen([sys.executable, "-m", "probe", "sleep"], cwd=folder, env=env,
                               stdout=subprocess.PIPE, text=True)
    json.loads(command.stdout.readline())
    command.send_signal(signal.SIGINT)
    assert command.wait(timeout=30) == 7
    assert command.stdout.read() == "interrupted\n"


def test_a_killed_command_takes_its_stage_with_it(host):
    folder, _, env = host
    command = subprocess.Popen([sys.executable, "-m", "probe", "sleep"], cwd=folder, env=env,
                               stdout=subprocess.PIPE, text=True)
    stage = json.loads(command.stdout.readline())["pid"]
    command.kill()
    command.wait()
    deadline = time.time() + 10
    while running(stage):
        assert time.time() < deadline, "the stage outlived its killed command"
        time.sleep(0.05)


def running(pid: int) -> bool:
    """Whether `pid` is a live process (not gone, not a zombie waiting to be reaped)."""
    try:
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1][:3]
    except (FileNotFoundError, ProcessLookupError):   # it vanished, possibly while being read
        return False


def test_a_module_changed_since_the_host_loaded_it_runs_in_the_command(host):
    folder, _, env = host
    probe = folder / "probe.py"
    probe.write_text(PROBE.replace("a line on stderr", "an edited line"))
    os.utime(probe, ns=(time.time_ns(), time.time_ns() + 10**9))
    command = subprocess.Popen([sys.executable, "-m", "probe", "exit", "0"], cwd=folder, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = command.communicate(timeout=60)
    assert json.loads(out.splitlines()[0])["pid"] == command.pid   # not forked: the command ran it
    assert "probe.py changed since it was loaded; running probe here" in err
    assert "an edited line" in err


def test_another_folder_or_no_host_runs_the_stage_in_the_command(host, tmp_path_factory):
    folder, _, env = host
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "probe.py").write_text(PROBE)
    result = run_probe(elsewhere, env, "exit", "0")
    assert result.returncode == 0 and f"it serves {folder}, not {elsewhere}; running probe here" in result.stderr
    gone = run_probe(folder, {**env, stage_host.ENV: str(folder / "no-such.sock")}, "exit", "4")
    assert gone.returncode == 4 and "unreachable" in gone.stderr and report(gone)["var"] == "from the command"
