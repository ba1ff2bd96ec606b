import itertools

import pytest
import torch


def pytest_addoption(parser):
    parser.addoption("--reversed", action="store_true",
                     help="run the collected tests in reverse order: a check that no test relies on another's leftovers")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--reversed"):
        items.reverse()


@pytest.fixture
def all_binary_images():
    """Every binary 3x3 image: (512, 1, 3, 3)."""
    grid = torch.tensor(list(itertools.product([0.0, 1.0], repeat=9)))
    return grid.reshape(-1, 1, 3, 3)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory):
    """The tiny pipeline's repository after one `dvc repro`, run once for every test that needs it
    (tiny_pipeline.py): the copy test_pipeline.py changes, and a pristine copy to copy again."""
    from tiny_pipeline import first_repro

    return first_repro(tmp_path_factory.mktemp("tiny-pipeline"))


@pytest.fixture
def one_thread():
    """Tiny networks: thread hand-offs cost more than the arithmetic (and the CI machine has 2 cores);
    the thread count is restored afterwards. Modules use it with `pytestmark = pytest.mark.usefixtures`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
