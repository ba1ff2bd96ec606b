import itertools

import pytest
import torch


@pytest.fixture
def all_binary_images():
    """Every binary 3x3 image: (512, 1, 3, 3)."""
    grid = torch.tensor(list(itertools.product([0.0, 1.0], repeat=9)))
    return grid.reshape(-1, 1, 3, 3)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
