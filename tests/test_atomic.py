"""Outputs are swapped in whole (components/atomic.py): at no moment is there no output, a killed
build leaves the old output and a build folder DVC does not see, and outputs get the user's umask."""

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from components.atomic import BUILD_PREFIX, atomic_directory, write_text_atomically

REPO = Path(__file__).resolve().parents[1]


def build(target: Path, text: str) -> None:
    with atomic_directory(target) as folder:
        (folder / "value.txt").write_text(text)


def test_a_reader_never_finds_the_output_missing_while_it_is_replaced(tmp_path):
    target = tmp_path / "out"
    build(target, "0")
    missing, stop = [], threading.Event()

    def read() -> None:
        while not stop.is_set():
            if not (target / "value.txt").exists():
                missing.append(1)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for number in range(1, 300):
            build(target, str(number))
    finally:
        stop.set()
        reader.join()
    assert not missing, f"the output was missing {len(missing)} times"
    assert (target / "value.txt").read_text() == "299"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]   # no old output or build folder left


def test_a_failed_build_leaves_the_previous_output(tmp_path):
    target = tmp_path / "out"
    build(target, "old")
    with pytest.raises(RuntimeError), atomic_directory(target) as folder:
        (folder / "value.txt").write_text("half")
        raise RuntimeError("the stage failed")
    assert (target / "value.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_killed_build_leaves_the_old_output_and_a_build_folder_the_next_build_removes(tmp_path):
    target = tmp_path / "out"
    build(target, "old")
    killed = ("import os, signal, sys\nfrom pathlib import Path\nfrom components.atomic import atomic_directory\n"
              "with atomic_directory(Path(sys.argv[1])) as folder:\n"
              "    (folder / 'value.txt').write_text('half')\n"
              "    os.kill(os.getpid(), signal.SIGKILL)\n")
    done = subprocess.run([sys.executable, "-c", killed, str(target)], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == -signal.SIGKILL
    assert (target / "value.txt").read_text() == "old"
    stale = [p.name for p in tmp_path.iterdir() if p.name.startswith(BUILD_PREFIX)]
    assert len(stale) == 1
    build(target, "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (target / "value.txt").read_text() == "new"


def test_outputs_get_the_users_umask_not_the_temporary_files_private_modes(tmp_path):
    previous = os.umask(0o022)
    try:
        build(tmp_path / "out", "x")
        write_text_atomically(tmp_path / "metrics.json", "{}")
    finally:
        os.umask(previous)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "metrics.json").stat().st_mode & 0o777 == 0o644


def test_dvc_does_not_see_a_build_folder_inside_a_tracked_output(tmp_path):
    """A killed evaluate leaves reports/<key>/.genzoo-build-figures.*: promote's dependency on reports/ must
    not change with it."""
    (tmp_path / ".dvcignore").write_text((REPO / ".dvcignore").read_text())
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "metrics.json").write_text("{}")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    dvc = str(Path(sys.executable).parent / "dvc")
    for command in (["init", "--no-scm", "-q"], ["stage", "add", "-q", "-n", "use", "-d", "reports", "true"],
                    ["repro", "-q"]):
        subprocess.run([dvc, *command], cwd=tmp_path, env=env, check=True, capture_output=True)
    stale = tmp_path / "reports" / f"{BUILD_PREFIX}figures.abc123"
    stale.mkdir()
    (stale / "grid.png").write_bytes(b"half a picture")
    status = subprocess.run([dvc, "status", "--json"], cwd=tmp_path, env=env, check=True, capture_output=True,
                            text=True)
    assert status.stdout.strip() == "{}", status.stdout
    (tmp_path / "reports" / "metrics.json").write_text('{"changed": 1}')   # while a real change is seen
    status = subprocess.run([dvc, "status", "--json"], cwd=tmp_path, env=env, check=True, capture_output=True,
                            text=True)
    assert "use" in status.stdout
