"""SVQA: the synthetic official layout through question preprocessing and feature extraction; categories from the
last program step (DualVGR's numbering), answers <UNK0>/<UNK1>/top answers, question ids = positions, errors."""
import json
from collections import Counter

import numpy as np
import pytest

from layout_fixtures import assert_glove_rows, decode, extract, preprocess_all, write_glove
from preprocess.datasets import DatasetLayoutError, get_dataset, list_videos
from preprocess.preprocess_questions import preprocess_split
from preprocess.synthetic import write_synthetic
from preprocess.text import tokenize_question

pytestmark = pytest.mark.usefixtures("single_thread")
DUALVGR_ORDER = ["count", "exist", "query_color", "query_size", "query_actiontype", "query_direction", "query_shape",
                 "compare_more", "compare_equal", "compare_less", "attribute_compare_color", "attribute_compare_size",
                 "attribute_compare_actiontype", "attribute_compare_direction", "attribute_compare_shape"]


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    root = tmp_path_factory.mktemp("svqa")
    write_synthetic("svqa", root / "raw", num_videos=8)
    vectors = write_glove(root / "glove.pkl")
    vocab, files = preprocess_all("svqa", root / "raw", root / "out", root / "glove.pkl")
    return root, vocab, files, vectors


def test_spec():
    spec = get_dataset("svqa")
    assert spec.category_names == tuple(DUALVGR_ORDER) and spec.category_source == "file"
    assert spec.answer_type == "open_ended" and spec.default_num_clips == 20 and spec.file_prefix == "svqa"


def test_question_files_follow_the_raw_json(layout):
    root, vocab, files, vectors = layout
    train = json.loads((root / "raw" / "train_qa.json").read_text())
    counts = Counter(q["ans"] for q in train)  # DualVGR: most frequent first (ties: first appearance)
    expected = ["<UNK0>", "<UNK1>"] + sorted(counts, key=lambda a: (-counts[a], [q["ans"] for q in train].index(a)))
    assert list(vocab["answer_token_to_idx"]) == expected and list(vocab["answer_token_to_idx"].values()) == list(
        range(len(expected)))
    for split, arrays in files.items():
        raw = json.loads((root / "raw" / f"{split}_qa.json").read_text())
        n = len(raw)
        assert arrays["questions"].shape[0] == n and arrays["questions"].dtype == np.int32
        assert arrays["question_id"].tolist() == list(range(n))          # DualVGR: the position in the file
        assert arrays["video_ids"].tolist() == [q["id"] for q in raw] == arrays["video_names"].tolist()
        categories = [DUALVGR_ORDER.index(q["program"][-1]["function"]) for q in raw]
        assert arrays["question_category"].dtype == np.int64 and arrays["question_category"].tolist() == categories
        answers = vocab["answer_token_to_idx"]
        unknown = 0 if split == "train" else 1
        assert arrays["answers"].tolist() == [answers.get(q["ans"], unknown) for q in raw]
        for row, q in enumerate(raw):
            assert decode(arrays["questions"][row], vocab["question_token_to_idx"]) == [
                t if t in vocab["question_token_to_idx"] else "<UNK>" for t in tokenize_question(q["question"])]
    # every video is asked one question per category, so all 15 last functions appear
    assert sorted(set(files["train"]["question_category"].tolist())) == list(range(15))
    assert_glove_rows(files["train"]["glove"], vocab["question_token_to_idx"], vectors)
    assert files["val"]["glove"] is None


def test_feature_ids_cover_the_question_files(layout, tmp_path):
    root, _, files, _ = layout
    features = extract("svqa", root / "raw", tmp_path / "app.h5")
    assert features["attrs"]["dataset"] == "svqa"
    assert features["valid"].all() and features["resnet_features"].shape == (8, 2, 4, 2048)
    asked = set().union(*(set(arrays["video_ids"].tolist()) for arrays in files.values()))
    assert asked == set(features["ids"].tolist())
    assert [entry.path.parent.name for entry in list_videos("svqa", root / "raw")] == ["useVideo"] * 8


def test_malformed_entries_are_listed_and_skipped(tmp_path, capsys):
    entries = [{"id": 1, "question": "how many shapes are there?", "ans": "2",
                "program": [{"function": "scene"}, {"function": "count"}]},
               {"id": 2, "question": "what is it?", "ans": "red", "program": [{"function": "filter_red"}]},
               {"id": 3, "question": "is it red?", "program": [{"function": "exist"}]}]
    (tmp_path / "train_qa.json").write_text(json.dumps(entries))
    write_glove(tmp_path / "glove.pkl")
    summary = preprocess_split("svqa", tmp_path, "train", tmp_path / "out", glove_pt=tmp_path / "glove.pkl")
    printed = capsys.readouterr().out
    assert summary["questions"] == 1 and summary["skipped"] == 2
    assert "#1 (video id 2): the last program step's function 'filter_red' is not one of the 15 categories" in printed
    assert "#2 (video id 3): missing key 'ans'" in printed
    with pytest.raises(FileNotFoundError, match="question file not found: .*val_qa.json"):
        preprocess_split("svqa", tmp_path, "val", tmp_path / "out")
    with pytest.raises(DatasetLayoutError, match="no \\{train,val,test\\}_qa.json in"):
        list_videos("svqa", tmp_path / "out")


def test_digit_string_ids_are_read_as_dualvgr_reads_them(tmp_path):
    """DualVGR reads the video id with ``int(instance['id'])``: "12" is video 12 there, so it is here (question files
    and the videos to extract); a float, a sign or a word is still refused by name."""
    from preprocess.datasets.svqa import video_id
    program = [{"function": "scene"}, {"function": "count"}]
    entries = [{"id": "12", "question": "how many shapes are there?", "ans": "2", "program": program},
               {"id": " 7 ", "question": "how many cubes are there?", "ans": 3, "program": program},
               {"id": 5, "question": "how many balls are there?", "ans": "1", "program": program}]
    (tmp_path / "train_qa.json").write_text(json.dumps(entries))
    write_glove(tmp_path / "glove.pkl")
    summary = preprocess_split("svqa", tmp_path, "train", tmp_path / "out", glove_pt=tmp_path / "glove.pkl")
    assert summary["questions"] == 3 and summary["skipped"] == 0
    assert [v.video_id for v in list_videos("svqa", tmp_path)] == [5, 7, 12]
    assert [video_id(v) for v in ("12", " 7 ", 5, "007")] == [int(v) for v in ("12", " 7 ", 5, "007")] == [12, 7, 5, 7]
    assert [video_id(v) for v in ("-3", "1.5", 1.0, "twelve", True, "", None, "٣", 2**63)] == [None] * 9
