"""The vocabulary file: question tokens and answers, read and checked, and its index -> token lists."""
from __future__ import annotations

from pathlib import Path

from model.heads import get_head
from training.data.paths import DataError, require_file


def load_vocab(path: Path, key: str = "dataset.vocab_json", head: str = "open_ended") -> dict:
    """The vocabulary file, checked; for a head that uses candidates (multiple choice) its
    question_answer_token_to_idx (the embedding vocabulary there) must number its tokens 0..n-1."""
    from preprocess.question_file import QuestionFileError, load_vocab as read_vocab
    require_file(path, key)
    try:
        vocab = read_vocab(path)
    except QuestionFileError as e:
        raise DataError(f"{e} (config key '{key}')") from None
    for field_name in ("question_token_to_idx", "answer_token_to_idx"):
        if not vocab[field_name]:
            raise DataError(f"{path} (config key '{key}'): '{field_name}' is empty")
    if get_head(head).uses_candidates:
        joint = vocab["question_answer_token_to_idx"]
        if not joint or sorted(joint.values()) != list(range(len(joint))):
            raise DataError(f"{path} (config key '{key}'): 'question_answer_token_to_idx' must number its tokens "
                            "0..n-1, each index once (it is the word embedding of a multiple-choice model)")
    return vocab


def inverse_vocab(mapping: dict) -> list[str]:
    """Token list in index order from a token -> index mapping."""
    tokens = [""] * len(mapping)
    for token, index in mapping.items():
        tokens[index] = token
    return tokens
