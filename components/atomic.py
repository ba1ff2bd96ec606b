"""Outputs that appear whole or not at all.

A stage builds its output in a folder beside it and swaps it in when done. Build folders are
named `.genzoo-build-*`, a pattern `.dvcignore` lists, so one left by a killed stage changes no
output's hash; the next build of the same output removes it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

BUILD_PREFIX = ".genzoo-build-"


def umask() -> int:
    """The process's umask, read without changing it where Linux tells it (os.umask sets it to read it)."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        status = Path("/proc/self/status").read_text().splitlines()
        return int(next(line for line in status if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except AttributeError:   # a C library older than glibc 2.28
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    error = ctypes.get_errno()
    if error in (22, 38, 95):   # EINVAL, ENOSYS, EOPNOTSUPP: a file system or kernel without it
        return False
    raise OSError(error, os.strerror(error), str(b))


def _swap_in(build: Path, target: Path) -> None:
    """`build` becomes `target`; the old `target`, if any, is deleted afterwards, never before."""
    if not target.exists() and not target.is_symlink():
        os.replace(build, target)
        return
    if target.is_dir() and not target.is_symlink() and _exchange(build, target):
        shutil.rmtree(build)   # now the old output
        return
    # No atomic exchange here: the old output steps aside under a build name (DVC ignores it, the
    # next build removes it) for the moment between the two renames.
    aside = Path(tempfile.mkdtemp(prefix=f"{BUILD_PREFIX}{target.name}.", dir=target.parent))
    os.replace(target, aside / "old")
    os.replace(build, target)
    shutil.rmtree(aside)


def remove_stale_builds(target: Path) -> None:
    """Build folders of `target` that a killed stage left behind."""
    for stale in target.parent.glob(f"{BUILD_PREFIX}{target.name}.*"):
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield an empty build folder beside `target`; it replaces `target` only on success.

    A stage that fails (or is killed) midway leaves its previous output, or nothing, never a
    half-written folder; readers see the old folder or the new one at every moment.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_builds(target)
    build = Path(tempfile.mkdtemp(prefix=f"{BUILD_PREFIX}{target.name}.", dir=target.parent))
    try:
        yield build
        build.chmod(0o777 & ~umask())   # mkdtemp's folder is the owner's only; an output is not
        _swap_in(build, target)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise


def write_text_atomically(path: Path, text: str) -> None:
    """Write a file through a temporary sibling so readers never see half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f"{BUILD_PREFIX}{path.name}."
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, prefix=prefix) as handle:
        handle.write(text)
    try:
        os.chmod(handle.name, 0o666 & ~umask())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
