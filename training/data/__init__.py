"""Data pipeline: vocabulary, HCRN/DualVGR question files, HDF5 video features, and whole-batch loading.

One job per module:

    paths        config keys -> file paths, the file-exists check, DataError
    vocabulary   the vocabulary file
    features     which videos have features (VideoTable), the stores that read them (HDF5 or in memory), and
                 host-to-device copies without a sync
    placement    where the features are held (GPU, host RAM or streamed) from their size and the free memory
    questions    question splits, question-length cap, policy for questions whose video has no features
    batches      the batch format, BatchDataset, the loaders and a batch's copy to the device
    bundle       DataBundle and ``load_data``, which builds it from the config

The names other modules use are importable from ``training.data`` itself.
"""
from training.data.batches import BatchDataset, batch_to_device, build_loader
from training.data.bundle import DataBundle, load_data
from training.data.features import (APPEARANCE_DATASET, FEATURE_LOAD_CHUNK, MOTION_DATASET, H5Features,
                                    InMemoryFeatures, VideoTable, build_video_table,
                                    read_extraction_settings, to_device_async)
from preprocess.datasets.files import data_dir, dataset_path, dataset_spec, resolve_path
from training.data.paths import DataError, require_file
from training.data.placement import (FEATURE_MEMORY_SHARE, choose_feature_placement, features_bytes,
                                     host_memory_available)
from training.data.questions import (MISSING_FEATURE_POLICIES, SPLIT_KEYS, SPLITS, QuestionSplit,
                                     embedding_vocabulary, load_split, missing_feature_policy)
from training.data.vocabulary import inverse_vocab, load_vocab

__all__ = [
    "APPEARANCE_DATASET", "BatchDataset", "DataBundle", "DataError", "FEATURE_LOAD_CHUNK", "FEATURE_MEMORY_SHARE",
    "H5Features", "InMemoryFeatures", "MISSING_FEATURE_POLICIES", "MOTION_DATASET", "QuestionSplit", "SPLITS",
    "SPLIT_KEYS", "VideoTable", "batch_to_device", "build_loader", "build_video_table", "choose_feature_placement",
    "data_dir", "dataset_path", "dataset_spec", "embedding_vocabulary", "features_bytes", "host_memory_available",
    "inverse_vocab", "load_data", "load_split", "load_vocab", "missing_feature_policy", "read_extraction_settings",
    "require_file",
    "resolve_path", "to_device_async",
]
