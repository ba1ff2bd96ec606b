"""The Ray Train adapter starts only the actors a run needs (each one is a fresh Python process)."""

import sys

import ray
import ray._private.state
import ray.cloudpickle
import ray.train
from ray.train import RunConfig, ScalingConfig

from pipelines.ray_session import ray_session
from pipelines.ray_train import trainer_class


def rank_and_config(config):
    return {"rank": ray.train.get_context().get_world_rank(), "seen": config["value"]}


ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import tests/


def test_a_run_on_a_local_ray_starts_no_dataset_manager_and_no_placement_group_cleaner(tmp_path):
    with ray_session(None):
        result = trainer_class()(rank_and_config, train_loop_config={"value": 7},
                                 scaling_config=ScalingConfig(num_workers=1),
                                 run_config=RunConfig(name="lean", storage_path=str(tmp_path))).fit()
        started = sorted(actor["ActorClassName"] for actor in ray._private.state.actors().values())
    assert result.return_value == {"rank": 0, "seen": 7}
    assert started == ["RayTrainWorker", "SynchronizationActor", "TrainController", "_AutoscalingCoordinatorActor"]
