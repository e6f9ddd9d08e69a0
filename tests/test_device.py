"""Device selection: auto, explicit devices, torchrun's local rank, clear errors."""
import pytest
import torch

from utils.device import resolve_device


def test_auto_and_cpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")


def test_cuda_uses_local_rank_or_names_the_problem():
    if torch.cuda.is_available():
        assert resolve_device("cuda", local_rank=0) == torch.device("cuda", 0)
    else:
        with pytest.raises(ValueError, match="'cuda:1'.*CUDA is not available"):
            resolve_device("cuda:1")


def test_not_a_device():
    with pytest.raises(ValueError, match="'gpu0' is not a device"):
        resolve_device("gpu0")
