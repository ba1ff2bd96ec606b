"""Training data from a split held in memory: each rank's shard, shuffled and batched per epoch.

The interim data source behind `fit`'s factories (`TrainData`, `ValidData`);
a streaming reader with the same signatures replaces it.
"""

from __future__ import annotations

import torch

from components.data.batch import Batch
from components.data.prepared import Split


def shard(split: Split, rank: int, world: int) -> Batch:
    """Rank's share of the images; every rank gets the same count, so collective ops stay in step."""
    per_rank = len(split.images) // world
    labels = None if split.labels is None else torch.from_numpy(split.labels[rank::world][:per_rank])
    return Batch(torch.from_numpy(split.images[rank::world][:per_rank]), labels=labels)


def batches(data: Batch, batch_size: int, generator: torch.Generator | None = None):
    order = torch.randperm(len(data), generator=generator) if generator is not None else torch.arange(len(data))
    for start in range(0, len(data), batch_size):
        yield data.select(order[start:start + batch_size])


def train_batches(split: Split, rank: int = 0, world: int = 1, seed: int = 0):
    """(epoch, batch_size) -> this rank's shuffled batches; dynamic binarization drawn afresh each epoch."""
    data = shard(split, rank, world)
    stochastic = bool(split.meta.get("stochastic_binarization"))

    def epoch_batches(epoch: int, batch_size: int):
        shuffle = torch.Generator().manual_seed(seed * 100_003 + epoch * 101 + rank)
        for x in batches(data, batch_size, shuffle):
            if stochastic:
                x.images = torch.bernoulli(x.images, generator=shuffle)
            yield x
    return epoch_batches


def eval_batches(split: Split, batch_size: int, rank: int = 0, world: int = 1):
    """() -> this rank's batches, in order."""
    data = shard(split, rank, world)
    return lambda: batches(data, batch_size)
