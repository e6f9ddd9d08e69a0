"""MSRVTT-QA: the synthetic official layout (preprocess/synthetic/msrvtt_qa.py) read by preprocess/datasets'
msrvtt_qa module end to end: its videos listed from TrainValVideo/ and TestVideo/, its questions through
preprocess_questions' command line (types by first word, answers, video ids), its features extracted."""
import json

import pytest

from layout_fixtures import decode, extract, write_glove
from preprocess.datasets import get_dataset, list_videos
from preprocess.preprocess_questions import main as questions_main
from preprocess.question_file import load_vocab
from preprocess.synthetic import write_synthetic
from preprocess.text import QUESTION_TYPES, tokenize_question
from utils.safe_pickle import load_pickle

pytestmark = pytest.mark.usefixtures("single_thread")
SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    root = tmp_path_factory.mktemp("msrvtt")
    counts = write_synthetic("msrvtt", root / "raw", num_videos=8, seed=2)
    write_glove(root / "glove.pkl")
    assert questions_main(["--dataset", "msrvtt", "--dataset_dir", str(root / "raw"), "--glove_pt",
                           str(root / "glove.pkl"), "--output_dir", str(root / "out")]) in (None, 0)
    raw = {split: json.loads((root / "raw" / f"{split}_qa.json").read_text()) for split in SPLITS}
    return root, counts, raw


def test_the_layout_is_msrvtt_qa_s(layout):
    """Video ids 0.. in split order, train/val videos in TrainValVideo/, test videos in TestVideo/; question ids
    0.. over the files; every entry has the official keys (category_id among them)."""
    root, counts, raw = layout
    assert counts == {split: len(raw[split]) for split in SPLITS} and all(counts.values())
    ids = [q["id"] for split in SPLITS for q in raw[split]]
    assert ids == list(range(len(ids)))
    for split in SPLITS:
        folder = "TestVideo" if split == "test" else "TrainValVideo"
        for q in raw[split]:
            assert set(q) == {"answer", "category_id", "id", "question", "video_id"}
            assert 0 <= q["category_id"] < 20 and (root / "raw" / folder / f"video{q['video_id']}.mp4").is_file()
    videos = [sorted({q["video_id"] for q in raw[split]}) for split in SPLITS]
    assert [v for split in videos for v in split] == list(range(8))


def test_the_dataset_module_lists_every_video_in_its_folder(layout):
    root, _, raw = layout
    entries = list_videos("msrvtt-qa", root / "raw")
    test_videos = {q["video_id"] for q in raw["test"]}
    assert [e.video_id for e in entries] == list(range(8))
    for entry in entries:
        assert entry.path.parent.name == ("TestVideo" if entry.video_id in test_videos else "TrainValVideo")
        assert entry.path.is_file()


def test_question_files_follow_the_raw_json(layout):
    root, _, raw = layout
    spec = get_dataset("msrvtt-qa")
    vocab = load_vocab(root / "out" / "msrvtt-qa_vocab.json")
    for split in SPLITS:
        arrays = load_pickle(root / "out" / f"msrvtt-qa_{split}_questions.pt")
        entries = raw[split]
        assert arrays["questions"].shape[0] == len(entries)
        assert arrays["video_ids"].tolist() == [q["video_id"] for q in entries]
        # typed by the first word (the data pipeline reads it from the question tokens): one of the five types
        assert {q["question"].split()[0] for q in entries} <= set(QUESTION_TYPES) == set(spec.category_names[:5])
        unknown = 0 if split == "train" else 1
        answers = vocab["answer_token_to_idx"]
        assert arrays["answers"].tolist() == [answers.get(q["answer"], unknown) for q in entries]
        for row, q in enumerate(entries):
            assert decode(arrays["questions"][row], vocab["question_token_to_idx"]) == [
                t if t in vocab["question_token_to_idx"] else "<UNK>" for t in tokenize_question(q["question"])]


def test_features_of_every_video(layout, tmp_path):
    root, _, _ = layout
    features = extract("msrvtt", root / "raw", tmp_path / "app.h5")
    assert features["ids"].tolist() == list(range(8)) and features["resnet_features"].shape[:2] == (8, 2)
