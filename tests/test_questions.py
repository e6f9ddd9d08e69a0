"""Question preprocessing: tokens, vocabulary, answer mapping, <UNK>, GloVe rows, malformed entries, both layouts."""
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from preprocess.glove import save_glove
from preprocess.preprocess_questions import preprocess_split
from preprocess.question_file import QuestionFileError, load_question_file, load_vocab
from preprocess.text import question_type, tokenize_question
from training.metrics import TYPE_NAMES, question_types

REPO_ROOT = Path(__file__).resolve().parent.parent
DIM = 4

TRAIN = [
    {"answer": "man", "id": 100, "question": "Who is playing a guitar?", "video_id": 3},
    {"answer": "guitar", "id": 101, "question": "what is the man playing?", "video_id": 3},
    {"answer": "dog", "id": 102, "question": "what is chasing the ball?", "video_id": 7},
    {"answer": "guitar", "id": 103, "question": "what does a man's friend play?", "video_id": 7},
    {"answer": 5, "id": 104, "question": "how many dogs?", "video_id": 7},           # non-string answer
    {"id": 105, "question": "where is it?", "video_id": 7},                          # missing answer
    {"answer": "x", "id": 106, "question": "?", "video_id": 7},                      # empty question
    {"answer": "x", "id": 107, "question": "when is it?", "video_id": "7"},          # video_id not an int
    ["not", "an", "object"],
    {"answer": "dog", "id": 108, "question": "where does the dog run?", "video_id": 9},
]
VAL = [
    {"answer": "man", "id": 200, "question": "who plays the banjo?", "video_id": 11},   # banjo, plays: <UNK>
    {"answer": "cat", "id": 201, "question": "what is the man holding?", "video_id": 12},  # cat: outside the set
]
TEST = [{"answer": "dog", "id": 300, "question": "how does the dog run?", "video_id": 13}]

# Hand-derived from TRAIN (valid entries 0, 1, 2, 3, 9): tokens in order of first appearance.
EXPECTED_TOKENS = ["<NULL>", "<UNK>", "who", "is", "playing", "a", "guitar", "what", "the", "man", "chasing", "ball",
                   "does", "'s", "friend", "play", "where", "dog", "run"]
# Answer counts: man 1, guitar 2, dog 2. Top 2: guitar, dog (tie broken by first appearance: guitar first).
EXPECTED_ANSWERS = {"<UNK0>": 0, "<UNK1>": 1, "guitar": 2, "dog": 3}
GLOVE_TOKENS = ["the", "man", "guitar", "dog", "what", "is", "zebra", "who"]


def _write_dataset(folder: Path, with_category: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, entries in (("train", TRAIN), ("val", VAL), ("test", TEST)):
        if with_category:  # MSRVTT-QA entries also carry a category id
            entries = [dict(e, category_id=i % 3) if isinstance(e, dict) else e for i, e in enumerate(entries)]
        (folder / f"{split}_qa.json").write_text(json.dumps(entries))
    return folder


@pytest.fixture
def glove_vectors():
    return np.random.default_rng(0).standard_normal((len(GLOVE_TOKENS), DIM)).astype(np.float32)


@pytest.fixture
def glove_path(tmp_path, glove_vectors):
    path = tmp_path / "glove.pkl"
    save_glove(GLOVE_TOKENS, glove_vectors, path)
    return path


def _encode(question, vocab):
    ids = [vocab.get(t, 1) for t in tokenize_question(question)]
    return ids


@pytest.mark.parametrize("dataset,with_category", [("msvd-qa", False), ("msrvtt", True)])
def test_vocab_question_files_and_glove_rows(tmp_path, glove_path, glove_vectors, capsys, dataset, with_category):
    data_dir = _write_dataset(tmp_path / "raw", with_category)
    out = tmp_path / "out"
    for mode in ("train", "val", "test"):
        preprocess_split(dataset, data_dir, mode, out, glove_pt=glove_path, answer_top=2)
    name = "msvd-qa" if dataset == "msvd-qa" else "msrvtt-qa"
    printed = capsys.readouterr().out
    for bad in ("#4 (id 104)", "#5 (id 105)", "#6 (id 106)", "#7 (id 107)", "#8 (id ?)"):
        assert bad in printed
    assert "skipped 5 of 10 entries" in printed

    vocab = load_vocab(out / f"{name}_vocab.json")
    q_vocab = vocab["question_token_to_idx"]
    assert q_vocab == {t: i for i, t in enumerate(EXPECTED_TOKENS)}
    assert vocab["answer_token_to_idx"] == EXPECTED_ANSWERS
    assert vocab["question_answer_token_to_idx"] == {"<NULL>": 0, "<UNK>": 1}

    train = load_question_file(out / f"{name}_train_questions.pt")
    valid = [TRAIN[i] for i in (0, 1, 2, 3, 9)]
    lengths = [len(_encode(e["question"], q_vocab)) for e in valid]
    assert train["questions"].dtype == np.int32 and train["questions"].shape == (5, max(lengths))
    assert train["questions_len"].tolist() == lengths == [5, 5, 5, 7, 5]
    assert train["questions"][3].tolist() == [7, 12, 5, 9, 13, 14, 15]  # what does a man 's friend play
    assert train["questions"][0].tolist() == [2, 3, 4, 5, 6, 0, 0]      # padded with <NULL>
    assert train["question_id"].tolist() == [100, 101, 102, 103, 108]
    assert train["video_ids"].tolist() == [3, 3, 7, 7, 9]
    assert train["answers"].tolist() == [0, 2, 3, 2, 3]  # "man" is outside the top 2: <UNK0> in train

    glove = train["glove"]
    assert glove.dtype == np.float32 and glove.shape == (len(EXPECTED_TOKENS), DIM)
    for token, idx in q_vocab.items():
        expected = glove_vectors[GLOVE_TOKENS.index(token)] if token in GLOVE_TOKENS else np.zeros(DIM)
        assert np.array_equal(glove[idx], expected), token
    found = sum(t in GLOVE_TOKENS for t in EXPECTED_TOKENS)
    assert f"{found} of {len(EXPECTED_TOKENS)} question tokens found" in printed

    val = load_question_file(out / f"{name}_val_questions.pt")
    assert val["questions"].tolist() == [[2, 1, 8, 1, 0], [7, 3, 8, 9, 1]]  # who <UNK> the <UNK>; ... <UNK>
    assert val["answers"].tolist() == [1, 1]  # man and cat are outside the set: <UNK1> in val
    assert val["glove"] is None
    test = load_question_file(out / f"{name}_test_questions.pt")
    assert test["questions"][0].tolist() == [1, 12, 8, 17, 18] and test["answers"].tolist() == [3]

    assert [TYPE_NAMES[t] for t in question_types(train["questions"], q_vocab)] == ["who", "what", "what", "what",
                                                                                "where"]
    assert [TYPE_NAMES[t] for t in question_types(test["questions"], q_vocab)] == ["other"]  # "how" never seen in train: <UNK>


def test_script_entry_point_with_all_modes_and_hcrn_glove(tmp_path, glove_vectors):
    """Runs as `python preprocess/preprocess_questions.py` (sys.path bootstrap) and reads HCRN's GloVe dict."""
    data_dir = _write_dataset(tmp_path / "raw", with_category=True)
    hcrn_glove = tmp_path / "hcrn_glove.pkl"
    with open(hcrn_glove, "wb") as f:
        pickle.dump({t: v.astype(np.float64) for t, v in zip(GLOVE_TOKENS, glove_vectors)}, f)
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "preprocess" / "preprocess_questions.py"), "--dataset", "msrvtt",
         "--dataset_dir", str(data_dir), "--output_dir", str(tmp_path / "out"), "--glove_pt", str(hcrn_glove)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    vocab = load_vocab(tmp_path / "out" / "msrvtt-qa_vocab.json")
    assert len(vocab["answer_token_to_idx"]) == 2 + 3  # default answer_top 4000 keeps all three answers
    train = load_question_file(tmp_path / "out" / "msrvtt-qa_train_questions.pt")
    assert np.array_equal(train["glove"][vocab["question_token_to_idx"]["guitar"]], glove_vectors[2])
    for split in ("val", "test"):
        assert (tmp_path / "out" / f"msrvtt-qa_{split}_questions.pt").exists()


def test_val_before_train_asks_for_train_first(tmp_path, glove_path):
    data_dir = _write_dataset(tmp_path / "raw", with_category=False)
    with pytest.raises(FileNotFoundError, match="run --mode train first"):
        preprocess_split("msvd", data_dir, "val", tmp_path / "out", glove_pt=glove_path)


def test_broken_json_is_reported_by_file_and_line(tmp_path, glove_path):
    (tmp_path / "train_qa.json").write_text('[{"answer": "a",\n "id": 1,,}]')
    with pytest.raises(QuestionFileError, match=r"train_qa.json: not valid JSON \(line 2"):
        preprocess_split("msvd", tmp_path, "train", tmp_path / "out", glove_pt=glove_path)


def test_tokenisation_matches_hcrn_rules():
    assert tokenize_question("What is the man's dog doing?") == ["what", "is", "the", "man", "'s", "dog", "doing"]
    assert tokenize_question("who can't open the door, then?") == ["who", "ca", "n't", "open", "the", "door", ",",
                                                                   "then"]
    assert tokenize_question("what is it") == ["what", "is", "i"]  # last character dropped, '?' or not (HCRN)
    assert [question_type(t) for t in ("what", "who", "how", "when", "where", "whom", "is")] == \
        ["what", "who", "how", "when", "where", "other", "other"]


def test_question_file_reader_rejects_inconsistent_files(tmp_path):
    path = tmp_path / "bad.pt"
    with open(path, "wb") as f:
        pickle.dump({"questions": np.zeros((3, 4), np.int32), "questions_len": [1, 2, 3],
                     "video_ids": np.arange(2), "answers": [0, 1, 2]}, f)
    with pytest.raises(QuestionFileError, match="'video_ids' has shape"):
        load_question_file(path)
