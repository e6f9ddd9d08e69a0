"""Helpers of the dataset-layout tests: a tiny GloVe, the question preprocessing of every split and a fast CPU
feature extraction (random-init ResNet-101 on 32x32 frames, 2 clips of 4 frames)."""
from pathlib import Path

import h5py
import numpy as np

from preprocess.glove import save_glove
from preprocess.preprocess_features import main as extract_main
from preprocess.preprocess_questions import preprocess_split
from preprocess.question_file import load_vocab
from utils.safe_pickle import load_pickle

GLOVE_TOKENS = ["the", "what", "circle", "red", "left", "move"]
DIM = 4


def write_glove(path: Path) -> np.ndarray:
    """A GloVe pickle of GLOVE_TOKENS; returns their (len, DIM) vectors."""
    vectors = np.random.default_rng(1).standard_normal((len(GLOVE_TOKENS), DIM)).astype(np.float32)
    save_glove(GLOVE_TOKENS, vectors, path)
    return vectors


def preprocess_all(dataset: str, raw: Path, out: Path, glove: Path, task=None, **kwargs) -> tuple[dict, dict]:
    """Run train, val and test; return (vocab, {split: the question file's raw dict})."""
    for mode in ("train", "val", "test"):
        preprocess_split(dataset, raw, mode, out, glove_pt=glove, task=task, **kwargs)
    prefix = f"{dataset}_{task}" if task else dataset
    vocab = load_vocab(out / f"{prefix}_vocab.json")
    return vocab, {mode: load_pickle(out / f"{prefix}_{mode}_questions.pt") for mode in ("train", "val", "test")}


def extract(dataset: str, raw: Path, out: Path, *extra: str) -> dict:
    """Appearance features of every video of the layout; returns the file's arrays."""
    args = ["--dataset", dataset, "--dataset_dir", str(raw), "--model", "resnet101", "--random_init",
            "--no_bn_recalibration", "--num_clips", "2", "--num_frames", "4", "--image_height", "32",
            "--image_width", "32", "--device", "cpu", "--num_workers", "0", "--out", str(out), *extra]
    assert extract_main(args) == 0
    with h5py.File(out, "r") as f:
        return {name: f[name][:] for name in f} | {"attrs": dict(f.attrs)}


def decode(ids, vocab_table: dict) -> list[str]:
    """Token ids -> tokens, padding (0) dropped."""
    words = {index: token for token, index in vocab_table.items()}
    return [words[int(i)] for i in ids if i != 0]


def assert_glove_rows(glove: np.ndarray, table: dict, vectors: np.ndarray) -> None:
    """One row per entry of ``table``: the token's vector, or zeros where the tiny GloVe lacks it."""
    assert glove.shape == (len(table), DIM) and glove.dtype == np.float32
    for token, index in table.items():
        expected = vectors[GLOVE_TOKENS.index(token)] if token in GLOVE_TOKENS else np.zeros(DIM)
        assert np.array_equal(glove[index], expected), token
