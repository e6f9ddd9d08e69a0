"""Fixtures shared by the test modules."""
import pytest
import torch


@pytest.fixture(scope="module")
def single_thread():
    """One intra-op torch thread for a module: its tensors are small, and on a shared 2-core machine two OpenMP
    threads that wait for each other make the tests several times slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
