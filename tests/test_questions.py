"""Question preprocessing: tokens, vocabulary, answer mapping, <UNK>, GloVe rows, malformed entries, both layouts."""
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from preprocess.glove import GloveFileError, save_glove
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
    assert train["question_id"].tolist() == [0, 1, 2, 3, 9]  # position in the JSON list, as HCRN (not the 'id')
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


# --- hostile vocabularies and QA files ------------------------------------------------------------------------

GOOD_VOCAB = {"question_token_to_idx": {"<NULL>": 0, "<UNK>": 1, "what": 2},
              "answer_token_to_idx": {"<UNK0>": 0, "<UNK1>": 1, "dog": 2},
              "question_answer_token_to_idx": {"<NULL>": 0, "<UNK>": 1}}


@pytest.mark.parametrize("key,table,expected", [
    ("question_token_to_idx", {"<NULL>": 0, "<UNK>": 1, "what": 1}, "index 1 is given to both '<UNK>' and 'what'"),
    ("answer_token_to_idx", {"<UNK0>": 0, "<UNK1>": -1, "dog": 2}, "the index of '<UNK1>' is -1"),
    ("answer_token_to_idx", {"<UNK0>": False, "<UNK1>": True, "dog": 2}, "the index of '<UNK0>' is false"),
    ("question_token_to_idx", {"<NULL>": 0, "<UNK>": 1, "what": 2.0}, "the index of 'what' is 2.0"),
    ("question_token_to_idx", {"<NULL>": 0, "<UNK>": 1, "what": 3}, "the index of 'what' is 3, outside 0..2"),
])
def test_vocabulary_indices_must_be_exactly_0_to_n_minus_1(tmp_path, key, table, expected):
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps(dict(GOOD_VOCAB, **{key: table})))
    with pytest.raises(QuestionFileError) as err:
        load_vocab(path)
    assert str(err.value).startswith(f"{path}: '{key}'") and expected in str(err.value)


def test_vocabulary_with_a_token_listed_twice_is_refused(tmp_path):
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps(GOOD_VOCAB).replace('"what": 2', '"what": 2, "what": 3'))
    with pytest.raises(QuestionFileError, match=r"vocab.json: the key 'what' appears twice"):
        load_vocab(path)


def test_non_utf8_vocabulary_and_qa_json_name_the_file(tmp_path, glove_path):
    vocab = tmp_path / "vocab.json"
    vocab.write_bytes(json.dumps(GOOD_VOCAB).replace("dog", "d\u00f6g").encode("latin-1"))
    with pytest.raises(QuestionFileError, match=r"vocab.json: not UTF-8 text"):
        load_vocab(vocab)
    data_dir = tmp_path / "raw"
    data_dir.mkdir()
    (data_dir / "train_qa.json").write_bytes('[{"answer": "d\u00f6g", "id": 1, "question": "what?", "video_id": 1}]'
                                             .encode("latin-1"))
    with pytest.raises(QuestionFileError, match=r"train_qa.json: not UTF-8 text"):
        preprocess_split("msvd", data_dir, "train", tmp_path / "out", glove_pt=glove_path)
    from preprocess.datasets import DatasetLayoutError
    from preprocess.datasets.qa_json import read_qa_video_ids
    with pytest.raises(DatasetLayoutError, match=r"train_qa.json: not UTF-8 text"):
        read_qa_video_ids(data_dir)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_glove_row_with_nan_or_inf_names_file_and_token(tmp_path, glove_vectors, bad):
    glove_vectors[GLOVE_TOKENS.index("guitar"), 2] = bad
    glove_path = tmp_path / "glove.pkl"
    save_glove(GLOVE_TOKENS, glove_vectors, glove_path)
    data_dir = _write_dataset(tmp_path / "raw", with_category=False)
    with pytest.raises(GloveFileError, match=r"glove.pkl: the vector of 'guitar' holds NaN or inf"):
        preprocess_split("msvd", data_dir, "train", tmp_path / "out", glove_pt=glove_path)


def test_long_questions_are_truncated_and_counted(tmp_path, glove_path, capsys):
    data_dir = _write_dataset(tmp_path / "raw", with_category=False)
    long_question = "what " + "is the man " * 30 + "playing?"  # 92 tokens
    entries = TRAIN[:4] + [dict(TRAIN[9], question=long_question)]
    (data_dir / "train_qa.json").write_text(json.dumps(entries))
    summary = preprocess_split("msvd", data_dir, "train", tmp_path / "out", glove_pt=glove_path,
                               max_question_length=6)
    assert summary["truncated"] == 2 and summary["max_len"] == 6  # the 7-token question and the 92-token one
    assert "2 questions longer than 6 tokens were cut" in capsys.readouterr().out
    train = load_question_file(tmp_path / "out" / "msvd-qa_train_questions.pt")
    assert train["questions_len"].tolist() == [5, 5, 5, 6, 6]
    default = preprocess_split("msvd", data_dir, "train", tmp_path / "out2", glove_pt=glove_path)
    assert default["truncated"] == 1 and default["max_len"] == 64


def test_max_question_length_flag_is_checked(capsys):
    from preprocess.preprocess_questions import main
    with pytest.raises(SystemExit) as err:
        main(["--dataset", "msvd", "--dataset_dir", ".", "--max_question_length", "0"])
    assert err.value.code == 2 and "--max_question_length must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize("field,value", [("id", 2**70), ("id", -1), ("video_id", 2**63), ("video_id", -5)])
def test_ids_outside_int64_or_negative_are_skipped_not_a_crash(tmp_path, glove_path, capsys, field, value):
    data_dir = _write_dataset(tmp_path / "raw", with_category=False)
    (data_dir / "train_qa.json").write_text(json.dumps(TRAIN[:4] + [dict(TRAIN[9], **{field: value})]))
    summary = preprocess_split("msvd", data_dir, "train", tmp_path / "out", glove_pt=glove_path)
    assert summary["questions"] == 4 and summary["skipped"] == 1
    assert f"'{field}' is not an integer in [0, 2**63): {value}" in capsys.readouterr().out
