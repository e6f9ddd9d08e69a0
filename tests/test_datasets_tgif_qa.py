"""TGIF-QA's four tasks: the synthetic official layout (TSV files, GIFs) through question preprocessing and feature
extraction; HCRN's seed-666 shuffle and 90/10 cut, vocabularies per task, candidates, counts, FrameQA types, errors,
and GIF decoding (frame counts of GIFs written by PyAV and by Pillow)."""
import csv

import numpy as np
import pytest
from PIL import Image

from layout_fixtures import assert_glove_rows, decode, extract, preprocess_all, write_glove
from preprocess.datasets import DatasetLayoutError, get_dataset, list_videos
from preprocess.preprocess_questions import preprocess_split
from preprocess.synthetic import write_synthetic
from preprocess.synthetic.tgif_qa import write_gif
from preprocess.text import tokenize_question, word_tokenize
from preprocess.video import decode_clips

pytestmark = pytest.mark.usefixtures("single_thread")
TASKS = ("action", "transition", "count", "frameqa")


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def hcrn_permutation(n: int) -> np.ndarray:
    """HCRN's own lines (preprocess/preprocess_questions.py, datautils/tgif_qa.py): ``np.random.seed(666)`` at start,
    then one ``np.random.permutation(len(csv_data))``; the global generator's state is restored afterwards."""
    state = np.random.get_state()
    try:
        np.random.seed(666)
        return np.random.permutation(n)
    finally:
        np.random.set_state(state)


def hcrn_split(rows: list) -> dict:
    """HCRN: rows shuffled by :func:`hcrn_permutation`; the first int(0.9 n) train, the rest val."""
    order = hcrn_permutation(len(rows))
    cut = int(0.9 * len(rows))
    return {"train": [rows[i] for i in order[:cut]], "val": [rows[i] for i in order[cut:]]}


def test_hcrn_shuffle_of_ten_rows_by_value(tmp_path):
    """The order HCRN's seeding gives 10 rows, as literal values (numpy's legacy generator is stream-stable), and the
    reader's split of a 10-row count file: train keys 5 7 0 9 3 4 8 1 6 (int(0.9 * 10) = 9), val key 2, question ids
    their positions after the shuffle; the test file shuffled the same way."""
    assert hcrn_permutation(10).tolist() == [5, 7, 0, 9, 3, 4, 8, 1, 6, 2]
    lines = "".join(f"g{k}\thow many times does it jump?\t{k + 1}\t{k}\n" for k in range(10))
    for prefix in ("Train", "Test"):
        (tmp_path / f"{prefix}_count_question.csv").write_text("gif_name\tquestion\tanswer\tkey\n" + lines)
    spec = get_dataset("tgif-qa", "count")
    read = {split: spec.read_split(tmp_path, split)[0] for split in ("train", "val", "test")}
    assert [e.video_id for e in read["train"]] == [5, 7, 0, 9, 3, 4, 8, 1, 6]
    assert [e.video_id for e in read["val"]] == [2] and [e.question_id for e in read["val"]] == [0]
    assert [e.video_id for e in read["test"]] == [5, 7, 0, 9, 3, 4, 8, 1, 6, 2]
    assert [e.question_id for e in read["train"]] == list(range(9))


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    root = tmp_path_factory.mktemp("tgif")
    write_synthetic("tgif-qa", root / "raw", num_videos=8)
    vectors = write_glove(root / "glove.pkl")
    processed = {task: preprocess_all("tgif-qa", root / "raw", root / "out", root / "glove.pkl", task=task)
                 for task in TASKS}
    return root, processed, vectors


def raw_splits(root, task) -> dict:
    splits = hcrn_split(read_rows(root / "raw" / "csv" / f"Train_{task}_question.csv"))
    test = read_rows(root / "raw" / "csv" / f"Test_{task}_question.csv")
    splits["test"] = [test[i] for i in hcrn_permutation(len(test))]
    return splits


def test_specs():
    kinds = {task: get_dataset("tgif", task).answer_type for task in TASKS}
    assert kinds == {"action": "multiple_choice", "transition": "multiple_choice", "count": "count",
                     "frameqa": "open_ended"}
    assert get_dataset("tgif-qa", "frameqa").category_names == ("object", "number", "color", "location")
    assert get_dataset("tgif-qa", "count").category_names == ()
    assert get_dataset("tgif-qa", "action").file_prefix == "tgif-qa_action"
    assert get_dataset("tgif-qa", "action").num_candidates == 5
    with pytest.raises(DatasetLayoutError, match="needs a question type"):
        get_dataset("tgif-qa")


def test_rows_ids_and_video_names_follow_hcrns_shuffle(layout):
    root, processed, _ = layout
    for task in TASKS:
        _, files = processed[task]
        for split, rows in raw_splits(root, task).items():
            arrays = files[split]
            assert arrays["question_id"].tolist() == list(range(len(rows)))   # HCRN writes idx
            assert arrays["video_ids"].dtype == np.int64
            assert arrays["video_ids"].tolist() == [int(r["key"]) for r in rows]
            assert arrays["video_names"].tolist() == [r["gif_name"] for r in rows]
            assert arrays["questions_len"].tolist() == [len(tokenize_question(r["question"])) for r in rows]


@pytest.mark.parametrize("task", ["action", "transition"])
def test_multiple_choice_files_use_the_joint_vocabulary(layout, task):
    root, processed, vectors = layout
    vocab, files = processed[task]
    joint = vocab["question_answer_token_to_idx"]
    whole = hcrn_split(read_rows(root / "raw" / "csv" / f"Train_{task}_question.csv"))
    shuffled = whole["train"] + whole["val"]
    # HCRN: <NULL>, <UNK>, every candidate token (rows in shuffled order), then the question tokens
    expected = ["<NULL>", "<UNK>"]
    for row in shuffled:
        for k in range(1, 6):
            expected += [t for t in word_tokenize(row[f"a{k}"].lower()) if t not in expected]
    for row in shuffled:
        expected += [t for t in tokenize_question(row["question"]) if t not in expected]
    assert list(joint) == expected and list(joint.values()) == list(range(len(expected)))
    assert_glove_rows(files["train"]["glove"], joint, vectors)
    for split, rows in raw_splits(root, task).items():
        arrays = files[split]
        n, width = len(rows), max(len(word_tokenize(r[f"a{k}"].lower())) for r in rows for k in range(1, 6))
        assert arrays["ans_candidates"].shape == (n, 5, width) and arrays["ans_candidates"].dtype == np.int32
        assert arrays["ans_candidates_len"].shape == (n, 5)
        assert arrays["answers"].tolist() == [int(r["answer"]) for r in rows]
        for i, row in enumerate(rows):
            assert decode(arrays["questions"][i], joint) == [t if t in joint else "<UNK>"
                                                             for t in tokenize_question(row["question"])]
            for k in range(5):
                tokens = word_tokenize(row[f"a{k + 1}"].lower())
                assert decode(arrays["ans_candidates"][i, k], joint) == [t if t in joint else "<UNK>" for t in tokens]
                assert arrays["ans_candidates_len"][i, k] == len(tokens)
        assert "question_category" not in arrays


def test_count_answers_are_the_counts_at_least_one(layout):
    root, processed, vectors = layout
    vocab, files = processed["count"]
    assert vocab["answer_token_to_idx"] == {"<UNK>": 0}
    assert_glove_rows(files["train"]["glove"], vocab["question_token_to_idx"], vectors)
    for split, rows in raw_splits(root, "count").items():
        assert files[split]["answers"].tolist() == [max(int(r["answer"]), 1) for r in rows]
    purple = [r for rows in raw_splits(root, "count").values() for r in rows if "purple" in r["question"]]
    assert purple and all(r["answer"] == "0" for r in purple)  # written as 0, read as 1 (HCRN's max(answer, 1))


def test_frameqa_answers_and_types(layout):
    root, processed, _ = layout
    vocab, files = processed["frameqa"]
    whole = hcrn_split(read_rows(root / "raw" / "csv" / "Train_frameqa_question.csv"))
    answers = list(dict.fromkeys(r["answer"] for r in whole["train"] + whole["val"]))
    assert list(vocab["answer_token_to_idx"]) == ["<UNK>"] + answers     # every training answer, first appearance
    for split, rows in raw_splits(root, "frameqa").items():
        table = vocab["answer_token_to_idx"]
        assert files[split]["answers"].tolist() == [table.get(r["answer"], 0) for r in rows]
        assert files[split]["question_category"].tolist() == [int(r["type"]) for r in rows]
    assert sorted(set(files["train"]["question_category"].tolist())) == [0, 1, 2, 3]


def test_features_of_the_gifs_cover_every_question(layout, tmp_path):
    root, processed, _ = layout
    features = extract("tgif-qa", root / "raw", tmp_path / "app.h5", "--question_type", "action")
    assert features["attrs"]["dataset"] == "tgif-qa_action"
    assert features["valid"].all() and (features["num_decoded_frames"] == 12).all()
    asked = set().union(*(set(a["video_ids"].tolist()) for a in processed["action"][1].values()))
    assert asked == set(features["ids"].tolist())
    entries = list_videos("tgif", root / "raw", "action")
    assert all(entry.path.suffix == ".gif" and entry.path.is_file() for entry in entries)


@pytest.mark.parametrize("writer", ["pyav", "pillow"])
def test_gif_frames_are_counted_and_sampled(tmp_path, writer):
    frames = np.zeros((10, 32, 32, 3), dtype=np.uint8)
    t = np.arange(10)
    frames[:, :, :, 0] = (36 * (t % 5))[:, None, None]   # frame t: red 36 (t mod 5), green 36 (t div 5): colours
    frames[:, :, :, 1] = (36 * (t // 5))[:, None, None]  # both palettes hold exactly
    path = tmp_path / "clip.gif"
    if writer == "pyav":
        write_gif(path, frames)
    else:
        images = [Image.fromarray(frame) for frame in frames]
        images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0)
    decoded = decode_clips(path, 2, 4)
    assert decoded.n_frames == 10 and decoded.partial_reason() == ""
    # clip centres int(linspace(0, 10, 4)[1:3]) = 3, 6: frames 1..4 and 4..7
    assert decoded.frame_numbers.tolist() == [1, 2, 3, 4, 5, 6, 7]
    pixel = decoded.clips()[:, :, 0, 0, :2].astype(int)                              # (2, 4, [red, green])
    numbers = np.array([[1, 2, 3, 4], [4, 5, 6, 7]])
    assert np.abs(pixel - np.stack([36 * (numbers % 5), 36 * (numbers // 5)], -1)).max() <= 2


HEADER = "gif_name\tquestion\ta1\ta2\ta3\ta4\ta5\tanswer\tvid_id\tkey\n"


def test_malformed_rows_are_listed_by_line(tmp_path, capsys):
    good = [f"g{i}\twhat does it do?\tmove\tstop\tjump\trun\tsit\t2\tv\t{i}\n" for i in range(10, 27)]
    rows = ["g1\twhat does it do?\tmove\tstop\tjump\trun\tsit\t2\tv\t1\n",
            "g2\twhat does it do?\tmove\tstop\tjump\trun\tsit\t7\tv\t2\n",     # answer outside 0-4
            "g3\twhat does it do?\tmove\tstop\n",                             # row ends early
            "g4\twhat does it do?\tmove\tstop\tjump\trun\tsit\t1\tv\tabc\n"]   # key not an integer
    (tmp_path / "Train_action_question.csv").write_text(HEADER + "".join(rows + good))
    write_glove(tmp_path / "glove.pkl")
    train = preprocess_split("tgif", tmp_path, "train", tmp_path / "out", glove_pt=tmp_path / "glove.pkl",
                             task="action")
    val = preprocess_split("tgif", tmp_path, "val", tmp_path / "out", task="action")
    printed = capsys.readouterr().out
    assert train["questions"] + val["questions"] == 18 and train["skipped"] + val["skipped"] == 3
    assert "line 3 (key 2): 'answer' is not a candidate index 0-4: '7'" in printed
    assert "line 4 (key None): the row ends before column 'answer', 'key', 'a3', 'a4', 'a5'" in printed
    assert "line 5 (key abc): 'key' is not a non-negative integer: 'abc'" in printed


def test_missing_column_and_file_name_the_file(tmp_path):
    (tmp_path / "Train_action_question.csv").write_text(HEADER.replace("\ta5", ""))
    write_glove(tmp_path / "glove.pkl")
    with pytest.raises(DatasetLayoutError, match=r"Train_action_question.csv:1: missing column 'a5'"):
        preprocess_split("tgif", tmp_path, "train", tmp_path / "out", glove_pt=tmp_path / "glove.pkl", task="action")
    with pytest.raises(FileNotFoundError, match=r"question file not found: .*Train_count_question.csv"):
        preprocess_split("tgif", tmp_path, "train", tmp_path / "out", glove_pt=tmp_path / "glove.pkl", task="count")


def test_command_lines_take_the_question_type(layout, tmp_path, capsys):
    from preprocess.preprocess_features import main as features_main
    from preprocess.preprocess_questions import main as questions_main
    root = layout[0]
    questions_main(["--dataset", "tgif", "--question_type", "count", "--dataset_dir", str(root / "raw"),
                    "--glove_pt", str(root / "glove.pkl"), "--output_dir", str(tmp_path)])
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"tgif-qa_count_{s}_questions.pt" for s in
                                                          ("test", "train", "val")] + ["tgif-qa_count_vocab.json"]
    with pytest.raises(SystemExit, match="tgif-qa needs a question type, one of action, transition, count, frameqa"):
        questions_main(["--dataset", "tgif", "--dataset_dir", str(root / "raw"), "--output_dir", str(tmp_path)])
    assert features_main(["--dataset", "tgif", "--dataset_dir", str(root / "raw"), "--model", "resnet101",
                          "--random_init", "--out", str(tmp_path / "x.h5")]) == 2
    assert "needs a question type" in capsys.readouterr().err and not (tmp_path / "x.h5").exists()


def test_synthetic_layout_is_seeded(tmp_path):
    first = write_synthetic("tgif", tmp_path / "a", task="count", num_videos=4, seed=3)
    again = write_synthetic("tgif", tmp_path / "b", task="count", num_videos=4, seed=3)
    other = write_synthetic("tgif", tmp_path / "c", task="count", num_videos=4, seed=4)
    assert first == again == other == {"Train_count": 9, "Test_count": 3}
    name = "csv/Train_count_question.csv"
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert sorted(p.name for p in (tmp_path / "a" / "csv").iterdir()) == ["Test_count_question.csv",
                                                                          "Train_count_question.csv"]
    gif = "gifs/tumblr_synth0001.gif"
    assert (tmp_path / "a" / gif).read_bytes() == (tmp_path / "b" / gif).read_bytes()
    assert (tmp_path / "a" / gif).read_bytes() != (tmp_path / "c" / gif).read_bytes()   # another seed, another scene
    with pytest.raises(DatasetLayoutError, match="question type"):
        write_synthetic("tgif", tmp_path / "d", task="colour")
