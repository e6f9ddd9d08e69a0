"""MSVD-QA / MSRVTT-QA questions -> vocabulary JSON and HCRN/DualVGR question files.

    python -m preprocess.preprocess_questions --dataset msvd-qa --dataset_dir /data/MSVD-QA --mode all

Reads ``<dataset_dir>/{train,val,test}_qa.json`` and writes, under ``--output_dir`` (default ``data/<dataset>/``):
``<dataset>_vocab.json`` (from the training split only) and ``<dataset>_<mode>_questions.pt`` (a pickle of a dict
of numpy arrays; the training file also carries the GloVe matrix of the question vocabulary). Malformed entries
are listed by index and id and skipped; the rest are processed.
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

from utils.threads import default_openmp_wait_policy
default_openmp_wait_policy()  # before torch loads; see utils/threads.py

from preprocess.datasets import QAEntry, dataset_names, get_dataset
from preprocess.glove import GloveFileError, GloveTable, load_glove
from preprocess.question_file import QuestionFileError, first_nonfinite_row, load_vocab
from preprocess.text import encode_tokens
from utils.atomic import atomic_write
from utils.config import REPO_ROOT
from utils.safe_pickle import UnsafePickleError, dump_pickle

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


def build_vocab(entries: list[QAEntry], answer_top: int) -> dict:
    """HCRN vocabulary from training entries.

    question_token_to_idx: <NULL> 0, <UNK> 1, then tokens in order of first appearance. answer_token_to_idx:
    <UNK0> 0, <UNK1> 1, then the ``answer_top`` most frequent answers (ties: first appearance first).
    """
    question_token_to_idx = {"<NULL>": 0, "<UNK>": 1}
    for entry in entries:
        for token in entry.tokens:
            question_token_to_idx.setdefault(token, len(question_token_to_idx))
    answer_counts = Counter(entry.answer for entry in entries)  # insertion order = first appearance
    top_answers = sorted(answer_counts.items(), key=lambda item: -item[1])[:answer_top]  # stable sort
    answer_token_to_idx = {"<UNK0>": 0, "<UNK1>": 1}
    for answer, _ in top_answers:
        answer_token_to_idx[answer] = len(answer_token_to_idx)
    return {
        "question_token_to_idx": question_token_to_idx,
        "answer_token_to_idx": answer_token_to_idx,
        "question_answer_token_to_idx": {"<NULL>": 0, "<UNK>": 1},
    }


def encode_split(entries: list[QAEntry], vocab: dict, mode: str) -> dict:
    """Question-file arrays for ``entries``: N questions, L_max the longest.

    questions (N, L_max) int32 0-padded; questions_len (N,) int32; question_id, video_ids, video_names, answers
    (N,) int64. Answers outside the answer set: 0 (<UNK0>) in train, 1 (<UNK1>) in val/test.
    """
    token_to_idx, answer_to_idx = vocab["question_token_to_idx"], vocab["answer_token_to_idx"]
    unknown_answer = 0 if mode == "train" else 1
    encoded = [encode_tokens(entry.tokens, token_to_idx) for entry in entries]
    lengths = np.array([len(ids) for ids in encoded], dtype=np.int32)
    questions = np.zeros((len(entries), lengths.max()), dtype=np.int32)
    for row, ids in enumerate(encoded):
        questions[row, : len(ids)] = ids
    video_ids = np.array([entry.video_id for entry in entries], dtype=np.int64)
    return {
        "questions": questions,
        "questions_len": lengths,
        "question_id": np.array([entry.question_id for entry in entries], dtype=np.int64),
        "video_ids": video_ids,
        "video_names": video_ids.copy(),  # HCRN stores the video id here too
        "answers": np.array([answer_to_idx.get(entry.answer, unknown_answer) for entry in entries], dtype=np.int64),
    }


def glove_matrix(vocab: dict, glove: GloveTable) -> tuple[np.ndarray, int]:
    """(V, dim) float32 GloVe rows in question-token order (zero rows for tokens GloVe lacks), and the count found.

    Raises GloveFileError naming the GloVe file and the first token whose vector holds NaN or inf."""
    token_to_idx = vocab["question_token_to_idx"]
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
                     answer_top: int | None = None, max_question_length: int = DEFAULT_MAX_QUESTION_LENGTH) -> dict:
    """Write the question file of one split (and, for train, the vocabulary). Returns a summary dict.

    Questions longer than ``max_question_length`` tokens keep their first ``max_question_length`` (counted in the
    summary's 'truncated' and printed): one runaway entry would otherwise widen the whole (N, L_max) matrix.

    Val/test need the vocabulary written by the train split. Paths may be str or Path. Raises
    FileNotFoundError, QuestionFileError / GloveFileError (ValueError) or UnsafePickleError, naming the file.
    """
    spec = get_dataset(dataset)
    dataset = spec.file_prefix
    dataset_dir = Path(dataset_dir)
    output_dir = Path(output_dir) if output_dir is not None else REPO_ROOT / "data" / dataset
    answer_top = spec.default_answer_top if answer_top is None else answer_top
    vocab_path = output_dir / f"{dataset}_vocab.json"
    json_path = dataset_dir / f"{mode}_qa.json"  # named in the messages below
    if mode == "train":
        glove = load_glove(glove_pt)
    elif not vocab_path.exists():
        raise FileNotFoundError(f"vocabulary not found: {vocab_path}; run --mode train first")

    entries, problems = spec.read_split(dataset_dir, mode)
    no_question_mark = sum(not entry.text.endswith("?") for entry in entries)
    total = len(entries) + len(problems)
    _report_problems(json_path, problems, total)
    if not entries:
        raise QuestionFileError(f"{json_path}: no usable questions among {total} entries")
    truncated = truncate_questions(entries, max_question_length)
    if truncated:
        print(colored(f"{json_path}: {truncated} questions longer than {max_question_length} tokens were cut to "
                      f"their first {max_question_length} (--max_question_length)", "yellow"))
    if no_question_mark:
        print(colored(f"{json_path}: {no_question_mark} questions do not end with '?'; their last character is "
                      "dropped all the same (HCRN/DualVGR tokenisation)", "yellow"))

    summary = {"mode": mode, "questions": len(entries), "skipped": len(problems), "truncated": truncated}
    if mode == "train":
        vocab = build_vocab(entries, answer_top)
        matrix, found = glove_matrix(vocab, glove)
        vocab_size = len(vocab["question_token_to_idx"])
        summary.update(glove_found=found, glove_dim=matrix.shape[1])
        print(f"GloVe ({glove_pt}): {found:,} of {vocab_size:,} question tokens found, dim {matrix.shape[1]}; "
              "the others (and <NULL>, <UNK>) get zero rows")
        answer_counts = Counter(entry.answer for entry in entries)
        covered = sum(answer_counts[a] for a in vocab["answer_token_to_idx"] if a in answer_counts)
        print(f"answers: {len(answer_counts):,} distinct; the top {len(vocab['answer_token_to_idx']) - 2:,} cover "
              f"{100.0 * covered / len(entries):.1f}% of training questions")
        output_dir.mkdir(parents=True, exist_ok=True)
        _write_json(vocab, vocab_path)
    else:
        vocab = load_vocab(vocab_path)
        matrix = None

    arrays = encode_split(entries, vocab, mode)
    arrays["glove"] = matrix
    question_path = output_dir / f"{dataset}_{mode}_questions.pt"
    dump_pickle(arrays, question_path)

    unk_tokens = int((arrays["questions"] == vocab["question_token_to_idx"]["<UNK>"]).sum())
    unknown_answers = int((arrays["answers"] == (0 if mode == "train" else 1)).sum())
    summary.update(unk_tokens=unk_tokens, unknown_answers=unknown_answers, max_len=arrays["questions"].shape[1],
                   question_tokens=len(vocab["question_token_to_idx"]), answers=len(vocab["answer_token_to_idx"]))
    print(colored(f"{mode}: wrote {question_path} ({len(entries):,} questions, L_max {summary['max_len']}, "
                  f"{unk_tokens:,} <UNK> tokens, {unknown_answers:,} answers outside the answer set)", "green"))
    if mode == "train":
        print(colored(f"train: wrote {vocab_path} ({summary['question_tokens']:,} question tokens, "
                      f"{summary['answers']:,} answers)", "green"))
    return summary


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m preprocess.preprocess_questions",
        description="Tokenise MSVD-QA / MSRVTT-QA questions into the HCRN/DualVGR vocabulary and question files.")
    parser.add_argument("--dataset", required=True, choices=dataset_names(with_aliases=True),
                        help="dataset (msvd = msvd-qa, msrvtt = msrvtt-qa); names the output files")
    parser.add_argument("--dataset_dir", required=True, type=Path,
                        help="folder holding train_qa.json, val_qa.json, test_qa.json")
    parser.add_argument("--mode", default="all", choices=MODES + ("all",),
                        help="split to process; 'all' = train, then val, then test (val/test need train's "
                             "vocabulary); default: %(default)s")
    parser.add_argument("--glove_pt", type=Path, default=DEFAULT_GLOVE,
                        help="GloVe pickle for the training split's embedding matrix (ours from txt2pickle.py or "
                             "preprocess.glove, or HCRN's {token: vector} pickle); default: "
                             "data/glove/glove.840.300d.pkl in the repository")
    parser.add_argument("--answer_top", type=int, default=None,
                        help="size of the answer set (most frequent training answers); default 1000 for msvd-qa, "
                             "4000 for msrvtt-qa")
    parser.add_argument("--max_question_length", type=int, default=DEFAULT_MAX_QUESTION_LENGTH,
                        help="questions with more tokens keep their first this many (the count is printed); real "
                             "MSVD-QA/MSRVTT-QA questions are far shorter; default: %(default)s")
    parser.add_argument("--output_dir", type=Path, default=None,
                        help="where the vocabulary and question files go; default data/<dataset>/ in the repository")
    args = parser.parse_args(argv)
    if args.answer_top is not None and args.answer_top < 1:
        parser.error("--answer_top must be at least 1")
    if args.max_question_length < 1:
        parser.error("--max_question_length must be at least 1")
    try:
        for mode in MODES if args.mode == "all" else (args.mode,):
            preprocess_split(args.dataset, args.dataset_dir, mode, args.output_dir, args.glove_pt, args.answer_top,
                             args.max_question_length)
    except (FileNotFoundError, ValueError, UnsafePickleError) as e:
        raise SystemExit(colored(str(e), "red")) from None


if __name__ == "__main__":
    main()
