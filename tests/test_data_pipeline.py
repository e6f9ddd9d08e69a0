"""Data pipeline: HDF5 id mapping, skipped videos, whole-batch loading, in-memory features, workers, bad files."""
import json
import pickle

import h5py
import numpy as np
import pytest
import torch

from train_fixtures import QUESTION_TOKENS, write_config, write_tiny_dataset
from training.data import BatchDataset, DataError, InMemoryFeatures, build_loader, load_data
from training.metrics import TYPE_NAMES
from training.samplers import VideoGroupedBatchSampler
from training.run_schema import load_config
from utils.safe_pickle import UnsafePickleError

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    data = write_tiny_dataset(root / "data")
    return data, write_config(root / "cfg.yml", data, root / "results")


def _raw_split(data, split):
    with open(data.question_path(split), "rb") as f:
        return pickle.load(f)  # the test's own file


def test_questions_of_invalid_or_missing_videos_are_skipped(tiny):
    data, cfg_path = tiny
    bundle = load_data(load_config(cfg_path))
    train = bundle.splits["train"]
    raw = _raw_split(data, "train")
    usable = np.isin(raw["video_ids"], list(data.colour))
    assert len(train) == usable.sum() == 40
    assert train.skipped_invalid == 4 and train.skipped_missing == 4  # 1 invalid + 1 missing video, 4 questions each
    assert np.array_equal(train.answers, raw["answers"][usable])
    assert bundle.signature.num_clips == 4 and bundle.signature.frames_per_clip == 4
    first_words = [QUESTION_TOKENS[t] for t in raw["questions"][usable][:, 0]]
    assert [TYPE_NAMES[t] for t in train.types] == first_words


@pytest.mark.parametrize("in_memory", [False, True])
def test_batch_holds_each_questions_own_video_features(tiny, in_memory):
    data, cfg_path = tiny
    bundle = load_data(load_config(cfg_path, [f"dataset.features_in_memory={in_memory}"]))
    split = bundle.splits["val"]
    indices = np.array([7, 0, 3, 12, 5])
    batch = bundle.dataset("val")[indices]
    n_videos = len(np.unique(split.video_ids[indices]))
    assert batch["appearance"].shape == (n_videos, 4, 4, 16) and batch["motion"].shape == (n_videos, 4, 16)
    for row, q in enumerate(indices):
        vid = int(split.video_ids[q])
        video = int(batch["video_index"][row])
        assert np.allclose(batch["appearance"][video].numpy(), data.appearance[vid])
        assert np.allclose(batch["motion"][video].numpy(), data.motion[vid])
    longest = int(split.lengths[indices].max())
    assert batch["question"].shape == (5, longest)
    assert torch.equal(batch["question"], torch.from_numpy(split.questions[indices, :longest]))
    assert torch.equal(batch["answer"], torch.from_numpy(split.answers[indices]))
    assert torch.equal(batch["question_index"], torch.from_numpy(indices))


def test_float16_in_memory_features_halve_memory(tiny):
    data, cfg_path = tiny
    bundle = load_data(load_config(cfg_path))
    table = bundle.features.table
    full = InMemoryFeatures.load(data.appearance_path, data.motion_path, table, torch.float32, torch.device("cpu"),
                                 show_progress=False)
    half = InMemoryFeatures.load(data.appearance_path, data.motion_path, table, torch.float16, torch.device("cpu"),
                                 show_progress=False)
    assert half.appearance.nbytes * 2 == full.appearance.nbytes and half.motion.dtype == torch.float16
    keys = np.array([0, 5, 2])
    a32, m32 = full.read(keys)
    a16, m16 = half.read(keys)
    assert a16.dtype == torch.float32
    assert torch.allclose(a32, a16, atol=2e-3) and torch.allclose(m32, m16, atol=2e-3)


def test_worker_loader_matches_in_process_and_opens_files_only_in_workers(tiny):
    _, cfg_path = tiny
    cfg = load_config(cfg_path)
    bundle = load_data(cfg)
    dataset = bundle.dataset("train")
    sampler = VideoGroupedBatchSampler(bundle.splits["train"].video_key, 8, questions_per_video=2, seed=1)
    sampler.set_epoch(3)
    in_process = list(build_loader(dataset, sampler, 0, torch.device("cpu")))
    bundle_workers = load_data(cfg)
    workers = build_loader(bundle_workers.dataset("train"), sampler, 2, torch.device("cpu"))
    assert isinstance(workers, torch.utils.data.DataLoader)
    fetched = list(workers)
    assert len(fetched) == len(in_process) == len(sampler)
    for a, b in zip(in_process, fetched):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert bundle_workers.features._handles is None  # the main process never opened the HDF5 files


def test_missing_file_names_path_and_key(tiny):
    _, cfg_path = tiny
    cfg = load_config(cfg_path, ["dataset.vocab_json=nope_vocab.json"])
    with pytest.raises(DataError, match=r"nope_vocab\.json.*dataset\.vocab_json"):
        load_data(cfg)


def test_question_file_outside_vocabulary_names_file_and_key(tiny, tmp_path):
    data, cfg_path = tiny
    raw = _raw_split(data, "val")
    raw["questions"][0, 0] = len(QUESTION_TOKENS) + 3
    bad = tmp_path / "bad_val.pt"
    bad.write_bytes(pickle.dumps(raw))
    cfg = load_config(cfg_path, [f"dataset.val_question_pt={bad}"])
    with pytest.raises(DataError, match=r"bad_val\.pt.*dataset\.val_question_pt.*token ids"):
        load_data(cfg, splits=("val",))


def test_question_file_that_could_run_code_is_refused(tiny, tmp_path):
    _, cfg_path = tiny
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"questions": json.JSONDecoder}))  # names a class: not plain data
    cfg = load_config(cfg_path, [f"dataset.test_question_pt={evil}"])
    with pytest.raises(UnsafePickleError, match="evil.pt"):
        load_data(cfg, splits=("test",))


def test_features_of_differing_clip_counts_are_rejected(tiny, tmp_path):
    _, cfg_path = tiny
    bad = tmp_path / "motion.h5"
    with h5py.File(bad, "w") as f:
        f.create_dataset("resnext_features", data=np.zeros((3, 5, 16), dtype=np.float32))
        f.create_dataset("ids", data=np.array([100, 103, 106]))
    cfg = load_config(cfg_path, [f"dataset.motion_feat={bad}"])
    with pytest.raises(DataError, match="clip counts differ"):
        load_data(cfg)


def test_batch_dataset_reads_unique_videos_once(tiny):
    _, cfg_path = tiny
    bundle = load_data(load_config(cfg_path))
    split = bundle.splits["train"]
    same_video = np.flatnonzero(split.video_key == split.video_key[0])
    batch = BatchDataset(split, bundle.features)[same_video]
    assert batch["appearance"].shape[0] == 1 and torch.equal(batch["video_index"], torch.zeros(len(same_video),
                                                                                                dtype=torch.int64))


# --- hostile data files -----------------------------------------------------------------------------------------

def test_glove_matrix_with_nan_names_file_row_and_token(tiny, tmp_path):
    from training.trainer import build_student
    data, cfg_path = tiny
    raw = _raw_split(data, "train")
    raw["glove"][3, 1] = np.nan
    bad = tmp_path / "nan_train.pt"
    bad.write_bytes(pickle.dumps(raw))
    cfg = load_config(cfg_path, [f"dataset.train_question_pt={bad}", "model.glove=true"])
    bundle = load_data(cfg, splits=("train",))
    with pytest.raises(DataError, match=rf"nan_train\.pt.*row 3 of the GloVe matrix \(question token "
                                        rf"'{QUESTION_TOKENS[3]}'\) holds NaN or inf"):
        build_student(cfg, bundle)
    assert build_student(load_config(cfg_path, [f"dataset.train_question_pt={bad}", "model.glove=false"]), bundle)


def test_runaway_question_lengths_are_capped_at_load(tiny, tmp_path, caplog):
    data, cfg_path = tiny
    raw = _raw_split(data, "val")
    width = 5_000
    questions = np.zeros((len(raw["answers"]), width), dtype=raw["questions"].dtype)
    questions[:, :raw["questions"].shape[1]] = raw["questions"]
    questions[0, :] = raw["questions"][0, 0]  # one question of 5,000 tokens
    lengths = raw["questions_len"].copy()
    lengths[0] = width
    long_file = tmp_path / "long_val.pt"
    long_file.write_bytes(pickle.dumps(dict(raw, questions=questions, questions_len=lengths)))
    cfg = load_config(cfg_path, [f"dataset.val_question_pt={long_file}", "dataset.max_question_length=16"])
    split = load_data(cfg, splits=("val",)).splits["val"]
    assert split.questions.shape[1] == 16 and split.lengths.max() == 16
    assert "1 questions longer than 16 tokens keep their first 16" in caplog.text
    with pytest.raises(DataError, match="dataset.max_question_length"):
        load_data(load_config(cfg_path, ["dataset.max_question_length=0"]), splits=("val",))


def _copy_features(data, tmp_path, name="appearance.h5"):
    copy = tmp_path / name
    copy.write_bytes(data.appearance_path.read_bytes())
    return copy


def test_feature_file_marked_unfinished_by_the_extractor_says_so(tiny, tmp_path):
    data, cfg_path = tiny
    unfinished = _copy_features(data, tmp_path)
    with h5py.File(unfinished, "r+") as f:
        f.attrs["complete"] = False
    cfg = load_config(cfg_path, [f"dataset.appearance_feat={unfinished}"])
    with pytest.raises(DataError, match=r"appearance.h5 \(config key 'dataset.appearance_feat'\): being written by a "
                                        r"running extraction \(or left unfinished: rerun the extraction"):
        load_data(cfg, splits=("val",))


def test_feature_file_locked_by_a_writer_says_so(tiny, tmp_path):
    import subprocess
    import sys
    data, cfg_path = tiny
    locked = _copy_features(data, tmp_path)
    writer = subprocess.Popen([sys.executable, "-c", "import sys, h5py; f = h5py.File(sys.argv[1], 'r+'); "
                               "print('open', flush=True); sys.stdin.read()", str(locked)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "open"
        cfg = load_config(cfg_path, [f"dataset.appearance_feat={locked}"])
        with pytest.raises(DataError, match=r"appearance.h5 .*being written by a running extraction"):
            load_data(cfg, splits=("val",))
    finally:
        writer.communicate("", timeout=60)


def test_feature_ids_that_are_not_integers_are_refused(tiny, tmp_path):
    data, cfg_path = tiny
    floats = _copy_features(data, tmp_path)
    with h5py.File(floats, "r+") as f:
        ids = f["ids"][()]
        del f["ids"]
        f.create_dataset("ids", data=ids + 0.5)
    cfg = load_config(cfg_path, [f"dataset.appearance_feat={floats}"])
    with pytest.raises(DataError, match=r"appearance.h5 \(config key 'dataset.appearance_feat'\): 'ids' must hold "
                                        r"integer video ids, found float64"):
        load_data(cfg, splits=("val",))
