"""Where the features go (dataset.features_in_memory: auto | true | false), decided from memory figures."""
import pytest
import torch

from training.data import DataError, choose_feature_placement, host_memory_available
from utils.config import ConfigError
from training.run_schema import load_config

GiB = 2**30
CPU, CUDA = torch.device("cpu"), torch.device("cuda:0")


@pytest.mark.parametrize("mode, needed, device, gpu_free, host, expected", [
    ("auto", 2 * GiB, CUDA, 80 * GiB, 100 * GiB, CUDA),        # fits half the free GPU memory
    ("auto", 50 * GiB, CUDA, 80 * GiB, 200 * GiB, CPU),        # too big for the GPU, fits half the host RAM
    ("auto", 50 * GiB, CUDA, 80 * GiB, 90 * GiB, None),        # fits neither: stream from HDF5
    ("auto", 2 * GiB, CPU, None, 8 * GiB, CPU),
    ("auto", 5 * GiB, CPU, None, 8 * GiB, None),
    ("auto", 2 * GiB, CPU, None, None, None),                  # host memory unknown: stream
    (True, 5 * GiB, CPU, None, 8 * GiB, CPU),                  # forced: needs only to fit at all
    (True, 50 * GiB, CUDA, 80 * GiB, 100 * GiB, CPU),
    (False, 1, CUDA, 80 * GiB, 100 * GiB, None),
])
def test_placement_follows_the_memory_figures(mode, needed, device, gpu_free, host, expected):
    assert choose_feature_placement(mode, needed, device, gpu_free, host) == expected


def test_auto_shares_host_memory_between_the_ranks_of_a_machine():
    assert choose_feature_placement("auto", 3 * GiB, CPU, None, 16 * GiB, processes_per_host=1) == CPU
    assert choose_feature_placement("auto", 3 * GiB, CPU, None, 16 * GiB, processes_per_host=4) is None


def test_forced_in_memory_that_does_not_fit_names_the_sizes():
    with pytest.raises(DataError, match=r"features_in_memory' is true, but the features need 20\.0 GiB and this "
                                        r"process has 8\.0 GiB of host RAM available"):
        choose_feature_placement(True, 20 * GiB, CPU, None, 8 * GiB)


def test_host_memory_is_measured():
    available = host_memory_available()
    assert available is None or available > 0


def test_config_takes_auto_true_false_only():
    assert load_config(None).dataset.features_in_memory == "auto"
    assert load_config(None, ["dataset.features_in_memory=true"]).dataset.features_in_memory is True
    with pytest.raises(ConfigError, match=r"'dataset.features_in_memory' expects auto \| true \| false, got 1"):
        load_config(None, ["dataset.features_in_memory=1"])


def test_auto_loads_small_features_into_memory_and_logs_the_sizes(tmp_path, single_thread):
    import logging

    from train_fixtures import write_config, write_tiny_dataset
    from training.data import H5Features, InMemoryFeatures, load_data
    from training.log import get_logger

    data = write_tiny_dataset(tmp_path / "data")
    cfg = write_config(tmp_path / "cfg.yml", data, tmp_path / "results")
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger, level = get_logger(), get_logger().level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        auto = load_data(load_config(cfg, ["dataset.features_in_memory=auto"]), show_progress=False)
        streamed = load_data(load_config(cfg, ["dataset.features_in_memory=false"]), show_progress=False)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert isinstance(auto.features, InMemoryFeatures) and auto.features.appearance.device.type == "cpu"
    assert isinstance(streamed.features, H5Features)
    lines = [r.getMessage() for r in records if r.getMessage().startswith("features: ")]
    assert lines[0].startswith("features: cpu memory (dataset.features_in_memory=auto; 18 videos, 22.5 KiB as float32")
    assert "host available" in lines[0] and lines[1].startswith("features: HDF5 files (streamed)")
