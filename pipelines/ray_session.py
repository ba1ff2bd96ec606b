"""Ray wiring: join the cluster named by RAY_ADDRESS (or `cluster.address` in params.yaml),
or start a local Ray sized to this machine for this stage and stop it at the end."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import warnings

STAGES_AT_ONCE = "GENZOO_STAGES_AT_ONCE"   # how many stages may train at once: pipelines.repro sets it

# Ray sends a token only in token mode, and reads the mode once per process, when it is first
# imported (a stage may import Ray Tune before it connects): a token given is a token meant.
if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
    os.environ.setdefault("RAY_AUTH_MODE", "token")


class ClusterUnavailable(RuntimeError):
    """No Ray to train on: an address nothing answers at, a refused client, a local Ray that did not start."""


def cluster_address(params: dict | None = None) -> str | None:
    """RAY_ADDRESS wins over params.yaml's `cluster.address`; None means a local Ray for this stage."""
    return os.environ.get("RAY_ADDRESS") or ((params or {}).get("cluster") or {}).get("address") or None


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail within seconds, not after Ray's long connection retries."""
    hostport = address.removeprefix("ray://").split("/")[0]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return  # 'auto' or an unusual form: let Ray resolve it
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as error:
        raise ClusterUnavailable(
            f"RAY_ADDRESS={address}: no Ray cluster answers at {host}:{port} ({error}). "
            "Start one with `ray start --head` or unset RAY_ADDRESS to train locally."
        ) from error


def quiet_ray_logs() -> None:
    """Keep Ray's internal chatter out of the user's terminal; progress lines still show."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("RAY_TRAIN_ENABLE_STATE_TRACKING", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")  # spot-instance feature; logs an error line
    # The controller collects each epoch's report when it polls the workers;
    # a worker reports again only once its previous report was collected, so an epoch lasts at
    # least one poll (2 s by default; 0.2 s still held the digits GAN's 0.14 s epochs to 0.2 s).
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.05")
    for name in ("ray", "ray.train", "ray.tune", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="ray")


@contextlib.contextmanager
def ray_session(address: str | None = None):
    """Ray for one stage: the cluster at `address` (see `cluster_address`), else a local Ray of
    this machine's CPUs, stopped when the block ends."""
    address = address or os.environ.get("RAY_ADDRESS")
    quiet_ray_logs()
    import ray
    from ray.exceptions import AuthenticationError

    if ray.is_initialized():
        yield
        return
    # Workers log at ERROR only: our own progress lines are prints, which still reach the
    # terminal; Ray Train's per-report INFO lines do not.
    worker_logging = ray.LoggingConfig(encoding="TEXT", log_level="ERROR")
    if address:
        _check_reachable(address)
        try:
            ray.init(address=address, logging_level=logging.ERROR, logging_config=worker_logging)
        except (AuthenticationError, ConnectionError) as error:
            raise ClusterUnavailable(
                f"the Ray cluster at {address} answers but refused this client ({error}). Clusters started "
                "with token authentication (the default since Ray 2.59) need the cluster's token: set "
                "RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH); `ray get-auth-token` on the head node prints it."
            ) from error
    else:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.ERROR,
                 logging_config=worker_logging)
    try:
        yield
    finally:
        ray.shutdown()


def gpus_available() -> bool:
    import ray

    return ray.cluster_resources().get("GPU", 0) > 0


def worker_cpus(requested: int | str, workers: int) -> int:
    """The CPUs (and torch threads) of each Ray Train worker: `requested`, or for `auto` the cluster's
    CPUs shared among the workers of the stages that may train at once, at most one node's CPUs.

    `dvc repro` trains one model at a time, so on two cores a single worker gets both; under
    `pipelines.repro --jobs 2` two stages train side by side on one CPU each (README: Training)."""
    if requested != "auto":
        return int(requested)
    import ray

    largest = max((int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n["Alive"]), default=1)
    stages = max(1, int(os.environ.get(STAGES_AT_ONCE) or 1))
    return max(1, min(largest, int(ray.cluster_resources().get("CPU", 1)) // (int(workers) * stages)))


def alive_nodes() -> int:
    import ray

    return sum(1 for node in ray.nodes() if node["Alive"])
