"""NExT-QA: the synthetic official layout (CSVs, map_vid_vidorID.json, NExTVideo/) through question preprocessing
and feature extraction; types and groups, candidates in the joint vocabulary, whole-question tokens, errors."""
import csv
import json

import numpy as np
import pytest

from layout_fixtures import assert_glove_rows, decode, extract, preprocess_all, write_glove
from preprocess.datasets import DatasetLayoutError, get_dataset, list_videos
from preprocess.preprocess_questions import preprocess_split
from preprocess.synthetic import write_synthetic
from preprocess.text import word_tokenize

pytestmark = pytest.mark.usefixtures("single_thread")
TYPES = ["CW", "CH", "TN", "TC", "TP", "DL", "DC", "DO"]


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    root = tmp_path_factory.mktemp("nextqa")
    write_synthetic("nextqa", root / "raw", num_videos=8)
    vectors = write_glove(root / "glove.pkl")
    vocab, files = preprocess_all("nextqa", root / "raw", root / "out", root / "glove.pkl")
    return root, vocab, files, vectors


def test_spec():
    spec = get_dataset("next-qa")
    assert spec.name == "nextqa" and spec.answer_type == "multiple_choice" and spec.num_candidates == 5
    assert spec.category_names == tuple(TYPES) and spec.category_source == "file"
    assert spec.category_groups == {"causal": ("CW", "CH"), "temporal": ("TN", "TC", "TP"),
                                    "descriptive": ("DL", "DC", "DO")}


def test_question_files_follow_the_csvs(layout):
    root, vocab, files, vectors = layout
    joint = vocab["question_answer_token_to_idx"]
    assert_glove_rows(files["train"]["glove"], joint, vectors)
    for split, arrays in files.items():
        rows = read_rows(root / "raw" / f"{split}.csv")
        n = len(rows)
        assert arrays["question_id"].tolist() == list(range(n))
        assert arrays["video_ids"].tolist() == [int(r["video"]) for r in rows] == arrays["video_names"].tolist()
        assert arrays["question_category"].tolist() == [TYPES.index(r["type"]) for r in rows]
        assert arrays["answers"].tolist() == [int(r["answer"]) for r in rows]
        assert arrays["ans_candidates"].shape[:2] == (n, 5) and arrays["ans_candidates_len"].shape == (n, 5)
        for i, row in enumerate(rows):
            # no '?' in NExT-QA questions: every word is kept (the last one included)
            tokens = word_tokenize(row["question"].lower())
            assert arrays["questions_len"][i] == len(tokens)
            assert decode(arrays["questions"][i], joint) == [t if t in joint else "<UNK>" for t in tokens]
            for k in range(5):
                expected = [t if t in joint else "<UNK>" for t in word_tokenize(row[f"a{k}"].lower())]
                assert decode(arrays["ans_candidates"][i, k], joint) == expected
    assert sorted(set(files["train"]["question_category"].tolist())) == list(range(8))


def test_videos_come_from_the_map_and_features_cover_the_questions(layout, tmp_path):
    root, _, files, _ = layout
    mapping = json.loads((root / "raw" / "map_vid_vidorID.json").read_text())
    entries = list_videos("nextqa", root / "raw")
    assert {e.video_id: e.path for e in entries} == {int(v): root / "raw" / "NExTVideo" / f"{p}.mp4"
                                                    for v, p in mapping.items()}
    features = extract("nextqa", root / "raw", tmp_path / "app.h5")
    assert features["valid"].all() and features["attrs"]["dataset"] == "nextqa"
    asked = set().union(*(set(a["video_ids"].tolist()) for a in files.values()))
    assert asked == set(features["ids"].tolist()) and features["ids"].dtype == np.int64


HEADER = "video,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4\n"


def test_malformed_rows_are_listed_by_line(tmp_path, capsys):
    lines = ["11,10,32,32,how does it move,1,0,CH,slowly,quickly,jumping,rolling,spinning\n",
             "11,10,32,32,what is it,1,1,XX,a,b,c,d,e\n",           # unknown type
             "12,10,32,32,what is it,9,2,DO,a,b,c,d,e\n",           # answer outside 0-4
             "13,10,32,32,what is it,0,3,DO,a,b,,d,e\n"]            # empty candidate
    (tmp_path / "train.csv").write_text(HEADER + "".join(lines))
    write_glove(tmp_path / "glove.pkl")
    summary = preprocess_split("nextqa", tmp_path, "train", tmp_path / "out", glove_pt=tmp_path / "glove.pkl")
    printed = capsys.readouterr().out
    assert summary["questions"] == 1 and summary["skipped"] == 3
    assert "line 3 (video 11, qid 1): 'type' 'XX' is not one of CW, CH, TN, TC, TP, DL, DC, DO" in printed
    assert "line 4 (video 12, qid 2): 'answer' is not a candidate index 0-4: '9'" in printed
    assert "line 5 (video 13, qid 3): empty candidate a2" in printed
    with pytest.raises(DatasetLayoutError, match=r"NExT-QA needs .*map_vid_vidorID.json"):
        list_videos("nextqa", tmp_path)
    (tmp_path / "val.csv").write_text(HEADER.replace(",qid", ""))
    with pytest.raises(DatasetLayoutError, match=r"val.csv:1: missing column 'qid'"):
        preprocess_split("nextqa", tmp_path, "val", tmp_path / "out")


def test_questions_are_tokenised_as_nextqas_loader(tmp_path):
    """NExT-QA's loader tokenises ``word_tokenize(text.lower())``: a final '?' stays a token (val.csv line 3483 is one
    of three such real questions), and no word is dropped from a question without one. Tokens by hand."""
    from preprocess.datasets import get_dataset
    lines = ["11,10,32,32,why did the baby bend down?,1,0,CH,a,b,c,d,e\n",
             "12,10,32,32,What is the man doing,0,1,DO,a,b,c,d,e\n"]
    (tmp_path / "train.csv").write_text(HEADER + "".join(lines))
    entries, problems = get_dataset("nextqa").read_split(tmp_path, "train")
    assert not problems
    assert [e.tokens for e in entries] == [["why", "did", "the", "baby", "bend", "down", "?"],
                                           ["what", "is", "the", "man", "doing"]]
