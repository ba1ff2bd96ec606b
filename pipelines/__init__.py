"""The DVC stages: thin steps wiring components to Ray, MLflow and DVC (see dvc.yaml).

Each stage is a short-lived process that has imported torch, MLflow and Ray. At exit the
interpreter's teardown ran the cyclic garbage collector over all of their objects, 1.5 s per
stage on two cores (38 stages in the default pipeline); a stage process leaves that memory to the
operating system instead. Finalizers and atexit hooks still run (this one is registered first, so
it runs after every other)."""

import atexit
import gc


def _no_collection_at_exit() -> None:
    gc.disable()
    gc.freeze()


atexit.register(_no_collection_at_exit)
