"""A dataset's questions -> vocabulary JSON and HCRN/DualVGR question files.

    python -m preprocess.preprocess_questions --dataset msvd-qa --dataset_dir /data/MSVD-QA --mode all
    python -m preprocess.preprocess_questions --dataset tgif-qa --question_type action --dataset_dir /data/TGIF-QA

Reads the split files of the dataset's layout (preprocess/datasets/) and writes, under ``--output_dir`` (default
``data/<dataset>/``): ``<prefix>_vocab.json`` (from the training split only) and ``<prefix>_<mode>_questions.pt``
(a pickle of a dict of numpy arrays; the training file also carries the GloVe matrix of the embedding vocabulary),
prefix = ``<dataset>`` or ``<dataset>_<question_type>``. Per answer type: open-ended answers index the answer set;
multiple-choice files add ``ans_candidates`` (N, K, L_a) and ``ans_candidates_len`` (N, K), questions and
candidates encoded with the joint ``question_answer_token_to_idx`` and ``answers`` the right candidate's index;
count answers are the counts. Datasets with per-question categories add ``question_category`` (N,). Malformed
entries are listed by index (or CSV line) and id and skipped; the rest are processed.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from termcolor import colored

if __package__ in (None, ""):  # run as a script (python preprocess/preprocess_questions.py): repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils.openmp_policy import default_openmp_wait_policy
default_openmp_wait_policy()  # before torch loads; see utils/openmp_policy.py

from preprocess.datasets import QAEntry, dataset_names, get_dataset
from preprocess.glove import GloveFileError, GloveTable, load_glove
from preprocess.question_file import QuestionFileError, first_nonfinite_row, load_vocab
from preprocess.text import encode_tokens
from utils.atomic import atomic_write
from utils.config import REPO_ROOT
from utils.cli import exit_on_input_error
from utils.safe_pickle import dump_pickle

DEFAULT_MAX_QUESTION_LENGTH = 64  # tokens; real MSVD-QA / MSRVTT-QA questions are far shorter
DEFAULT_GLOVE = REPO_ROOT / "data" / "glove" / "glove.840.300d.pkl"
MODES = ("train", "val", "test")
_SHOWN_PROBLEMS = 10


def truncate_questions(entries: list[QAEntry], max_length: int) -> int:
    """Cut every question to its first ``max_length`` tokens, in place; returns how many were cut."""
    truncated = 0
    for entry in entries:
        if len(entry.tokens) > max_length:
            entry.tokens = entry.tokens[:max_length]
            truncated += 1
    return truncated


def question_vocabulary(entries: list[QAEntry]) -> dict:
    """<NULL> 0, <UNK> 1, then the entries' question tokens in order of first appearance (HCRN)."""
    token_to_idx = {"<NULL>": 0, "<UNK>": 1}
    for entry in entries:
        for token in entry.tokens:
            token_to_idx.setdefault(token, len(token_to_idx))
    return token_to_idx


def build_vocab(entries: list[QAEntry], answer_top: int | None, answer_type: str = "open_ended",
                single_unknown: bool = False) -> dict:
    """HCRN vocabulary from training entries.

    question_token_to_idx: <NULL> 0, <UNK> 1, then tokens in order of first appearance. answer_token_to_idx per
    answer type:
      open_ended: <UNK0> 0, <UNK1> 1, then the ``answer_top`` most frequent answers (ties: first appearance first);
        with ``single_unknown`` (TGIF-QA FrameQA, as HCRN): <UNK> 0, then every answer in order of first
        appearance (or the ``answer_top`` most frequent when given);
      count: <UNK> 0 only (answers are the counts);
      multiple_choice: <UNK0> 0, <UNK1> 1, then every candidate token (HCRN keeps this table unused).
    question_answer_token_to_idx: <NULL> 0, <UNK> 1 (open_ended, count); multiple_choice: <NULL> 0, <UNK> 1, every
    candidate token of every entry, then the question tokens (HCRN's order): the joint vocabulary that encodes
    questions and candidates.
    """
    question_token_to_idx = question_vocabulary(entries)
    joint = {"<NULL>": 0, "<UNK>": 1}
    if answer_type == "multiple_choice":
        answer_token_to_idx = {"<UNK0>": 0, "<UNK1>": 1}
        for entry in entries:
            for candidate in entry.candidates:
                for token in candidate:
                    answer_token_to_idx.setdefault(token, len(answer_token_to_idx))
                    joint.setdefault(token, len(joint))
        for entry in entries:
            for token in entry.tokens:
                joint.setdefault(token, len(joint))
    elif answer_type == "count":
        answer_token_to_idx = {"<UNK>": 0}
    else:
        answer_counts = Counter(entry.answer for entry in entries)  # insertion order = first appearance
        answer_token_to_idx = {"<UNK>": 0} if single_unknown else {"<UNK0>": 0, "<UNK1>": 1}
        if single_unknown and answer_top is None:
            kept = list(answer_counts)
        else:
            kept = [a for a, _ in sorted(answer_counts.items(), key=lambda item: -item[1])[:answer_top]]  # stable
        for answer in kept:
            answer_token_to_idx[answer] = len(answer_token_to_idx)
    return {
        "question_token_to_idx": question_token_to_idx,
        "answer_token_to_idx": answer_token_to_idx,
        "question_answer_token_to_idx": joint,
    }


def embedding_key(answer_type: str) -> str:
    """The vocabulary table that encodes questions (and candidates) and whose rows the GloVe matrix has."""
    return "question_answer_token_to_idx" if answer_type == "multiple_choice" else "question_token_to_idx"


def unknown_answer_id(answer_to_idx: dict, mode: str) -> int:
    """Id of an answer outside the answer set: <UNK0> in train and <UNK1> in val/test where the vocabulary has
    them (the latter never counted correct), else <UNK> (TGIF-QA FrameQA)."""
    if "<UNK1>" in answer_to_idx:
        return answer_to_idx["<UNK0>"] if mode == "train" else answer_to_idx["<UNK1>"]
    return answer_to_idx["<UNK>"]


def _padded(sequences: list[list[int]], dtype=np.int32) -> np.ndarray:
    """(len(sequences), longest) 0-padded matrix."""
    matrix = np.zeros((len(sequences), max(len(s) for s in sequences)), dtype=dtype)
    for row, ids in enumerate(sequences):
        matrix[row, : len(ids)] = ids
    return matrix


def encode_split(entries: list[QAEntry], vocab: dict, mode: str, answer_type: str = "open_ended",
                 with_categories: bool = False) -> dict:
    """Question-file arrays for ``entries``: N questions, L_max the longest question, K candidates of at most L_a
    tokens.

    questions (N, L_max) int32 0-padded; questions_len (N,) int32; question_id, video_ids, answers (N,) int64;
    video_names (N,) (the entries' video names where every entry has one, e.g. TGIF-QA's gif names; else the
    video ids, as HCRN). answers: open_ended: the answer's id, answers outside the answer set
    ``unknown_answer_id``; multiple_choice: the right candidate's index; count: the count. multiple_choice adds
    ans_candidates (N, K, L_a) int32 0-padded and ans_candidates_len (N, K) int32, questions and candidates encoded
    with question_answer_token_to_idx. ``with_categories`` adds question_category (N,) int64.
    """
    token_to_idx = vocab[embedding_key(answer_type)]
    encoded = [encode_tokens(entry.tokens, token_to_idx) for entry in entries]
    video_ids = np.array([entry.video_id for entry in entries], dtype=np.int64)
    names = [entry.video_name for entry in entries]
    if answer_type == "open_ended":
        answer_to_idx = vocab["answer_token_to_idx"]
        unknown = unknown_answer_id(answer_to_idx, mode)
        answers = [answer_to_idx.get(entry.answer, unknown) for entry in entries]
    else:
        answers = [entry.answer for entry in entries]
    arrays = {
        "questions": _padded(encoded),
        "questions_len": np.array([len(ids) for ids in encoded], dtype=np.int32),
        "question_id": np.array([entry.question_id for entry in entries], dtype=np.int64),
        "video_ids": video_ids,
        "video_names": np.array(names) if all(names) else video_ids.copy(),  # HCRN: the video id, or gif name
        "answers": np.array(answers, dtype=np.int64),
    }
    if answer_type == "multiple_choice":
        candidates = [[encode_tokens(c, token_to_idx) for c in entry.candidates] for entry in entries]
        width = max(len(ids) for row in candidates for ids in row)
        matrix = np.zeros((len(entries), len(candidates[0]), width), dtype=np.int32)
        for i, row in enumerate(candidates):
            if len(row) != matrix.shape[1]:
                raise QuestionFileError(f"question #{entries[i].index} has {len(row)} candidates, others "
                                        f"{matrix.shape[1]}")
            for k, ids in enumerate(row):
                matrix[i, k, : len(ids)] = ids
        arrays["ans_candidates"] = matrix
        arrays["ans_candidates_len"] = np.array([[len(ids) for ids in row] for row in candidates], dtype=np.int32)
    if with_categories:
        arrays["question_category"] = np.array([entry.category for entry in entries], dtype=np.int64)
    return arrays


def glove_matrix(vocab: dict, glove: GloveTable, key: str = "question_token_to_idx") -> tuple[np.ndarray, int]:
    """(V, dim) float32 GloVe rows in the order of the vocabulary table ``key`` (zero rows for tokens GloVe lacks),
    and the count found.

    Raises GloveFileError naming the GloVe file and the first token whose vector holds NaN or inf."""
    token_to_idx = vocab[key]
    tokens = sorted(token_to_idx, key=token_to_idx.get)
    matrix, found = glove.lookup(tokens)
    bad = first_nonfinite_row(matrix)
    if bad is not None:
        raise GloveFileError(f"{glove.path}: the vector of {tokens[bad]!r} holds NaN or inf; fix or reconvert the "
                             "GloVe file")
    return matrix, int(found.sum())


def _write_json(obj, path: Path) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2)


def _report_problems(path: Path, problems: list[str], total: int) -> None:
    if not problems:
        return
    shown = "; ".join(problems[:_SHOWN_PROBLEMS])
    more = f"; ... and {len(problems) - _SHOWN_PROBLEMS} more" if len(problems) > _SHOWN_PROBLEMS else ""
    print(colored(f"{path}: skipped {len(problems)} of {total} entries: {shown}{more}", "yellow"))


def preprocess_split(dataset: str, dataset_dir, mode: str, output_dir=None, glove_pt=DEFAULT_GLOVE,
                     answer_top: int | None = None, max_question_length: int = DEFAULT_MAX_QUESTION_LENGTH,
                     task: str | None = None) -> dict:
    """Write the question file of one split (and, for train, the vocabulary). Returns a summary dict.

    ``task``: the question type of a dataset that has several (TGIF-QA). Output files are named by the dataset's
    ``file_prefix`` (``msvd-qa``, ``tgif-qa_action``). Questions longer than ``max_question_length`` tokens keep
    their first ``max_question_length`` (counted in the summary's 'truncated' and printed): one runaway entry would
    otherwise widen the whole (N, L_max) matrix.

    Val/test need the vocabulary written by the train split. Paths may be str or Path. Raises
    FileNotFoundError, QuestionFileError / GloveFileError / DatasetLayoutError (ValueError) or UnsafePickleError,
    naming the file.
    """
    spec = get_dataset(dataset, task)
    dataset = spec.file_prefix
    dataset_dir = Path(dataset_dir)
    output_dir = Path(output_dir) if output_dir is not None else REPO_ROOT / "data" / spec.name
    answer_top = spec.default_answer_top if answer_top is None else answer_top
    vocab_path = output_dir / f"{dataset}_vocab.json"
    source = spec.split_source(dataset_dir, mode)  # named in the messages below
    if mode == "train":
        glove = load_glove(glove_pt)
    elif not vocab_path.exists():
        raise FileNotFoundError(f"vocabulary not found: {vocab_path}; run --mode train first")

    entries, problems = spec.read_split(dataset_dir, mode)
    no_question_mark = sum(not entry.text.endswith("?") for entry in entries) if spec.question_mark else 0
    total = len(entries) + len(problems)
    _report_problems(source, problems, total)
    if not entries:
        raise QuestionFileError(f"{source}: no usable questions among {total} entries")
    truncated = truncate_questions(entries, max_question_length)
    if truncated:
        print(colored(f"{source}: {truncated} questions longer than {max_question_length} tokens were cut to "
                      f"their first {max_question_length} (--max_question_length)", "yellow"))
    if no_question_mark:
        print(colored(f"{source}: {no_question_mark} questions do not end with '?'; their last character is "
                      "dropped all the same (HCRN/DualVGR tokenisation)", "yellow"))

    key = embedding_key(spec.answer_type)
    summary = {"mode": mode, "questions": len(entries), "skipped": len(problems), "truncated": truncated}
    if mode == "train":
        vocab_entries = spec.vocabulary_entries(dataset_dir, entries)
        truncate_questions(vocab_entries, max_question_length)
        vocab = build_vocab(vocab_entries, answer_top, spec.answer_type, single_unknown=spec.default_answer_top is None)
        matrix, found = glove_matrix(vocab, glove, key)
        vocab_size = len(vocab[key])
        summary.update(glove_found=found, glove_dim=matrix.shape[1])
        what = "question and candidate" if key == "question_answer_token_to_idx" else "question"
        print(f"GloVe ({glove_pt}): {found:,} of {vocab_size:,} {what} tokens found, dim {matrix.shape[1]}; "
              "the others (and <NULL>, <UNK>) get zero rows")
        if spec.answer_type == "open_ended":
            answer_counts = Counter(entry.answer for entry in entries)
            covered = sum(answer_counts[a] for a in vocab["answer_token_to_idx"] if a in answer_counts)
            special = sum(a.startswith("<UNK") for a in vocab["answer_token_to_idx"])
            print(f"answers: {len(answer_counts):,} distinct; the top {len(vocab['answer_token_to_idx']) - special:,} "
                  f"cover {100.0 * covered / len(entries):.1f}% of training questions")
        output_dir.mkdir(parents=True, exist_ok=True)
        _write_json(vocab, vocab_path)
    else:
        vocab = load_vocab(vocab_path)
        matrix = None

    with_categories = spec.category_source == "file" and bool(spec.category_names)
    arrays = encode_split(entries, vocab, mode, spec.answer_type, with_categories)
    arrays["glove"] = matrix
    question_path = output_dir / f"{dataset}_{mode}_questions.pt"
    dump_pickle(arrays, question_path)

    unk_tokens = int((arrays["questions"] == vocab[key]["<UNK>"]).sum())
    unknown_answers = 0
    if spec.answer_type == "open_ended":
        unknown_answers = int((arrays["answers"] == unknown_answer_id(vocab["answer_token_to_idx"], mode)).sum())
    summary.update(unk_tokens=unk_tokens, unknown_answers=unknown_answers, max_len=arrays["questions"].shape[1],
                   question_tokens=len(vocab["question_token_to_idx"]), answers=len(vocab["answer_token_to_idx"]),
                   embedding_tokens=len(vocab[key]))
    print(colored(f"{mode}: wrote {question_path} ({len(entries):,} questions, L_max {summary['max_len']}, "
                  f"{unk_tokens:,} <UNK> tokens, {unknown_answers:,} answers outside the answer set)", "green"))
    if mode == "train":
        print(colored(f"train: wrote {vocab_path} ({summary['question_tokens']:,} question tokens, "
                      f"{summary['answers']:,} answers)", "green"))
    return summary


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m preprocess.preprocess_questions",
        description="Tokenise a dataset's questions (and multiple-choice candidates) into the HCRN/DualVGR "
                    "vocabulary and question files.")
    parser.add_argument("--dataset", required=True, choices=dataset_names(with_aliases=True),
                        help="dataset (msvd = msvd-qa, msrvtt = msrvtt-qa, tgif = tgif-qa, next-qa = nextqa); "
                             "names the output files")
    parser.add_argument("--question_type", default=None,
                        help="TGIF-QA task: action, transition, count or frameqa (other datasets have none)")
    parser.add_argument("--dataset_dir", required=True, type=Path,
                        help="the dataset's folder: {train,val,test}_qa.json (MSVD-QA, MSRVTT-QA, SVQA), "
                             "{Train,Test}_<task>_question.csv (TGIF-QA; val = the last 10%% of HCRN's shuffle of "
                             "the training file), {train,val,test}.csv (NExT-QA)")
    parser.add_argument("--mode", default="all", choices=MODES + ("all",),
                        help="split to process; 'all' = train, then val, then test (val/test need train's "
                             "vocabulary); default: %(default)s")
    parser.add_argument("--glove_pt", type=Path, default=DEFAULT_GLOVE,
                        help="GloVe pickle for the training split's embedding matrix (ours from txt2pickle.py or "
                             "preprocess.glove, or HCRN's {token: vector} pickle); default: "
                             "data/glove/glove.840.300d.pkl in the repository")
    parser.add_argument("--answer_top", type=int, default=None,
                        help="size of the open-ended answer set (most frequent training answers); default 1000 "
                             "for msvd-qa, 4000 for msrvtt-qa and svqa, every answer for tgif-qa frameqa")
    parser.add_argument("--max_question_length", type=int, default=DEFAULT_MAX_QUESTION_LENGTH,
                        help="questions with more tokens keep their first this many (the count is printed); real "
                             "MSVD-QA/MSRVTT-QA questions are far shorter; default: %(default)s")
    parser.add_argument("--output_dir", type=Path, default=None,
                        help="where the vocabulary and question files go; default data/<dataset>/ in the "
                             "repository (files named <dataset>[_<question_type>]_...)")
    args = parser.parse_args(argv)
    if args.answer_top is not None and args.answer_top < 1:
        parser.error("--answer_top must be at least 1")
    if args.max_question_length < 1:
        parser.error("--max_question_length must be at least 1")
    try:
        for mode in MODES if args.mode == "all" else (args.mode,):
            preprocess_split(args.dataset, args.dataset_dir, mode, args.output_dir, args.glove_pt, args.answer_top,
                             args.max_question_length, task=args.question_type)
    except Exception as e:  # input or environment: one line and exit code 2 (utils/cli.py); a bug: its traceback
        raise SystemExit(exit_on_input_error(e)) from None


if __name__ == "__main__":
    main()
