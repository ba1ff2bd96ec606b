"""A stage host: one process that has imported the stages' libraries once and forks each stage from there.

    python -m pipelines.stage_host <socket>      # started and stopped by pipelines.repro

Each stage of the default pipeline is a fresh Python that imports torch, MLflow, matplotlib and
genzoo's components before it does anything: about 5 CPU-seconds, as much as the work of most
evaluations, 38 times a run. `pipelines.repro` starts this host beside its first stages and puts its
socket in the stages' environment (`GENZOO_STAGE_HOST`). A stage command (`python -m
pipelines.evaluate gan`, run by `dvc repro` as always) then calls `delegate()` first thing: it hands
the host its arguments, working directory, environment and standard streams, the host forks a child
that runs the stage module as `__main__` with them, and the command exits with the child's status.
Signals the command gets (Ctrl-C through DVC) go on to the child. Outputs are those of the same
command run on its own; only the imports are shared.

The command runs the stage itself, as before, when no host is named, when the host cannot be
reached, when it runs in another folder than the host, or when a module the host loaded has changed
on disk since. Ray is not preloaded: it fixes its settings (RAY_AUTH_MODE) at import, and train
stages get theirs from the runner. Linux only (fork, pidfds); elsewhere the runner starts no host.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys

ENV = "GENZOO_STAGE_HOST"
STAGES = ("pipelines.prepare", "pipelines.train_classifier", "pipelines.train", "pipelines.evaluate",
          "pipelines.promote")
# What the stages import later, inside functions (measured: the modules a forked stage added): MLflow's
# SQL stores and tracing, GitPython for the run's source version, scikit-learn and SciPy for metrics,
# and torch._dynamo, which the first optimizer of a process imports (1.4 s).
LATER = ("mlflow.store.tracking.sqlalchemy_workspace_store", "mlflow.store.model_registry.sqlalchemy_store",
         "sqlalchemy.dialects.sqlite", "alembic.command", "mlflow.tracing.export", "mlflow.tracing.processor.otel",
         "opentelemetry.sdk.metrics", "git", "matplotlib.backends.backend_agg",
         "pyarrow.dataset", "pyarrow.pandas_compat", "components.metrics.clustering", "sklearn.decomposition",
         "sklearn.linear_model", "sklearn.metrics", "sklearn.neighbors", "sklearn.pipeline",
         "sklearn.preprocessing", "torch._dynamo")


def available() -> bool:
    """Whether this system can run a host: Linux (fork, descriptors passed over sockets) with pidfds
    (kernel 5.3 or later, and allowed by the container's seccomp profile)."""
    if sys.platform != "linux":
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True


def delegate(module: str) -> None:
    """Run this stage in the host named by GENZOO_STAGE_HOST and exit with its status; return (and let
    the caller run the stage) when there is no usable host."""
    path = os.environ.get(ENV)
    if not path:   # also in a forked stage: the host takes the variable out of its environment
        return
    request = json.dumps({"module": module, "argv": sys.argv[1:], "cwd": os.getcwd(),
                          "env": dict(os.environ)}).encode()
    child, pending = None, []

    def forward(signum, _frame):   # a Ctrl-C (through DVC) or a SIGTERM is the stage's to handle
        if child is None:
            pending.append(signum)
            return
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(path)
        socket.send_fds(conn, [struct.pack("!Q", len(request))], [0, 1, 2])
        conn.sendall(request)
        reply = conn.makefile("r")
        answer = reply.readline().strip().split(maxsplit=1)
    except OSError as error:
        answer = ["unreachable", f"{path} unreachable ({error})"]
    if not answer or answer[0] != "pid":
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print(f"stage host: {' '.join(answer[1:]) or 'no answer'}; running {module} here", file=sys.stderr,
              flush=True)
        if pending:
            raise KeyboardInterrupt
        return
    child = int(answer[1])
    for signum in pending:
        forward(signum, None)
    line = reply.readline().split()
    # The host reports the child's exit status; without it the host itself died.
    sys.exit(int(line[1]) if line[:1] == ["exit"] else 1)


def _recv_request(conn: socket.socket) -> tuple[dict, list[int]]:
    header, fds, _flags, _addr = socket.recv_fds(conn, 8, 3)
    if len(header) != 8 or len(fds) != 3:
        raise ValueError("malformed request")
    size, = struct.unpack("!Q", header)
    data = bytearray()
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ValueError("truncated request")
        data += chunk
    return json.loads(data), fds


def _loaded_files(root: str) -> dict[str, int]:
    """The files of the modules loaded from `root` (genzoo's own), with their modification times."""
    files = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and os.path.isabs(path) and os.path.realpath(path).startswith(root + os.sep):
            files[path] = os.stat(path).st_mtime_ns
    return files


def _refusal(request: dict, root: str, stages: tuple[str, ...], files: dict[str, int]) -> str | None:
    if os.path.realpath(request["cwd"]) != root:
        return f"it serves {root}, not {request['cwd']}"
    if request["module"] not in stages:
        return f"{request['module']} is not a stage"
    for path, mtime in files.items():
        try:
            if os.stat(path).st_mtime_ns != mtime:
                return f"{os.path.relpath(path, root)} changed since it was loaded"
        except FileNotFoundError:
            return f"{os.path.relpath(path, root)} was removed since it was loaded"
    return None


def _run_stage(request: dict, fds: list[int]) -> int:
    """In the forked child: become the stage's process and run it; its exit status."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update({k: v for k, v in request["env"].items() if k != ENV})   # its own commands run as usual
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=os.isatty(stream.fileno()) or stream is sys.stderr)
    sys.argv = [request["module"], *request["argv"]]
    sys.modules.pop(request["module"], None)   # preloaded as a module; it runs afresh as __main__
    import runpy

    try:
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            code = stop.code or 0
        else:
            print(stop.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        code = 128 + signal.SIGINT
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    return code


def serve(path: str, stages: tuple[str, ...] = STAGES, later: tuple[str, ...] = LATER) -> None:
    """Load `stages` and `later`, then run each stage module asked for at `path` in a child, until SIGTERM."""
    import atexit
    import gc
    import importlib
    import selectors
    import threading

    from pipelines.local_cluster import end_with_parent

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)   # stages that arrive while the modules load wait in the backlog
    for module in stages + later:
        importlib.import_module(module)
    if threading.active_count() > 1:   # a fork would copy their locks but not the threads
        raise SystemExit(f"stage host: the preloaded modules started threads "
                         f"({', '.join(t.name for t in threading.enumerate())}); stages run on their own")
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():   # CUDA cannot be used again in a forked child
        raise SystemExit("stage host: a preloaded module initialized CUDA; stages run on their own")
    root = os.path.realpath(os.getcwd())
    files = _loaded_files(root)
    gc.freeze()   # the preloaded objects stay out of every child's collections (and its copied pages)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    children: dict[int, tuple[int, socket.socket]] = {}   # pidfd -> (pid, the command's connection)
    while True:
        for key, _ in selector.select():
            if key.fileobj is listener:
                conn, _ = listener.accept()
                try:
                    request, fds = _recv_request(conn)
                except (OSError, ValueError) as error:
                    conn.close()
                    print(f"stage host: bad request: {error}", file=sys.stderr, flush=True)
                    continue
                refusal = _refusal(request, root, stages, files)
                if refusal:
                    conn.sendall(f"refuse {refusal}\n".encode())
                    conn.close()
                    for fd in fds:
                        os.close(fd)
                    continue
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    selector.close()
                    listener.close()
                    conn.close()
                    for pidfd, (_pid, other) in children.items():
                        os.close(pidfd)
                        other.close()
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                    end_with_parent()   # a host that dies (killed) takes its stages along: no orphan outputs
                    code = _run_stage(request, fds)
                    # What an interpreter does at exit: wait for its threads, then run the exit hooks.
                    threading._shutdown()
                    atexit._run_exitfuncs()
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(code)
                for fd in fds:
                    os.close(fd)
                conn.sendall(f"pid {pid}\n".encode())
                pidfd = os.pidfd_open(pid)
                children[pidfd] = (pid, conn)
                selector.register(pidfd, selectors.EVENT_READ)
                # The command sends nothing more: its connection reads end-of-file only once it is gone,
                # killed (a SIGKILL is not forwarded), and its stage goes with it, as it would unforked.
                selector.register(conn, selectors.EVENT_READ, pidfd)
            elif key.data is not None:   # a command's connection: the command is gone
                pidfd = key.data
                if children.get(pidfd, (0, None))[1] is key.fileobj:   # and its stage still runs
                    selector.unregister(key.fileobj)
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)   # a pidfd: never a reused pid
            else:
                pidfd = key.fd
                pid, conn = children.pop(pidfd)
                selector.unregister(pidfd)
                if conn.fileno() in selector.get_map():
                    selector.unregister(conn)
                _, status = os.waitpid(pid, 0)
                code = os.waitstatus_to_exitcode(status)
                try:
                    conn.sendall(f"exit {code if code >= 0 else 128 - code}\n".encode())
                except OSError:
                    pass   # the command is gone (killed); its stage has ended all the same
                conn.close()
                os.close(pidfd)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        serve(sys.argv[1])
    except (KeyboardInterrupt, SystemExit):
        pass
