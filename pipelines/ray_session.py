"""Ray wiring: join the cluster named by RAY_ADDRESS (or `cluster.address` in params.yaml),
or start a local Ray sized to this machine."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import warnings

from components.config import repo_path
from pipelines.local_cluster import ClusterUnavailable, shared_local_ray

_WORKER_LOGGING = None
STAGES_AT_ONCE = "GENZOO_STAGES_AT_ONCE"   # how many stages may train at once: pipelines.repro sets it


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
def ray_session(address: str | None = None, share_local: float = 0):
    """Ray for one stage: the cluster at `address` (see `cluster_address`), else a local one: with
    `share_local` > 0 the one this repository's stages share, kept that many seconds after the last
    stage leaves it (pipelines/local_cluster.py: shared_local_ray), else one of its own."""
    if not (address or os.environ.get("RAY_ADDRESS")) and share_local > 0:
        with shared_local_ray(repo_path("."), share_local) as shared:
            # Token mode must be switched on through Ray's own helper (below, as for any token given):
            # Ray caches its config, so a RAY_AUTH_MODE set after `import ray` goes unseen.
            os.environ.pop("RAY_AUTH_MODE", None)
            os.environ["RAY_AUTH_TOKEN"] = shared["token"]
            with ray_session(shared["address"]):
                start_autoscaling_coordinator()   # a no-op once the first stage has started it
                yield
        return
    import ray
    from ray.exceptions import AuthenticationError

    # Workers log at ERROR only: our own progress lines are prints, which still reach the
    # terminal; Ray Train's per-report INFO lines and the placement-group cleaner's
    # "State API unavailable" warnings (no dashboard here) do not.
    global _WORKER_LOGGING
    _WORKER_LOGGING = ray.LoggingConfig(encoding="TEXT", log_level="ERROR")

    quiet_ray_logs()
    address = address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        yield
        return
    if address:
        _check_reachable(address)
        # Ray sends a token to an explicit address only in token mode; a token given is a token meant.
        if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
            from ray._private.authentication.authentication_token_setup import (
                maybe_enable_token_auth_if_token_available)

            maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
        try:
            ray.init(address=address, logging_level=logging.ERROR, logging_config=_WORKER_LOGGING)
        except (AuthenticationError, ConnectionError) as error:
            raise ClusterUnavailable(
                f"the Ray cluster at {address} answers but refused this client ({error}). Clusters started "
                "with token authentication (the default since Ray 2.59) need the cluster's token: set "
                "RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH); `ray get-auth-token` on the head node prints it."
            ) from error
    else:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.ERROR,
                 logging_config=_WORKER_LOGGING)
        start_autoscaling_coordinator()
    try:
        yield
    finally:
        ray.shutdown()


def start_autoscaling_coordinator() -> None:
    """Start Ray Data's AutoscalingCoordinator actor now, without waiting for it.

    A Ray Train controller registers its workers' resources with this cluster-wide (detached,
    named) actor first thing and waits for the answer, so on a fresh Ray the controller would
    start it then and wait for a new Python process to import Ray Data. Started here, that
    process starts alongside the controller's own. A running cluster has it from its first run."""
    from ray.data._internal.cluster_autoscaler.default_autoscaling_coordinator import (
        get_or_create_autoscaling_coordinator)

    get_or_create_autoscaling_coordinator()


def dashboard_running() -> bool:
    """Whether the connected Ray has a dashboard (and so the State API)."""
    import ray._private.worker

    return bool(ray._private.worker.get_dashboard_url())


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
