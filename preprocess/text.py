"""Question text: HCRN/DualVGR tokenisation and question types.

Tokens: the question lower-cased, its final character (the question mark) dropped, then NLTK's Treebank word
tokenizer (``nltk.word_tokenize`` would first run the sentence splitter, which needs the downloadable ``punkt``
data; on a single question the Treebank tokenizer alone gives the same tokens).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from nltk.tokenize import TreebankWordTokenizer

QUESTION_TYPES = ("what", "who", "how", "when", "where", "other")

_TOKENIZER = TreebankWordTokenizer()


def tokenize_question(question: str) -> list[str]:
    """HCRN tokens of one question: lower-cased, last character (the '?') dropped, Treebank-tokenised."""
    return _TOKENIZER.tokenize(question.lower()[:-1])


def question_type(first_token: str) -> str:
    """The question type named by a question's first token: what/who/how/when/where, anything else 'other'."""
    return first_token if first_token in QUESTION_TYPES[:-1] else "other"


def question_types(questions: np.ndarray, question_token_to_idx: Mapping[str, int]) -> np.ndarray:
    """Question type of every row of an encoded question matrix.

    questions: (N, L) int token ids (HCRN files carry no text, so the type comes from ``questions[:, 0]``).
    Returns (N,) array of type names from ``QUESTION_TYPES``.
    """
    questions = np.asarray(questions)
    if questions.ndim != 2 or questions.shape[1] == 0:
        raise ValueError(f"questions must be an (N, L) matrix with L >= 1, got shape {questions.shape}")
    idx_to_type = np.array(["other"] * (max(question_token_to_idx.values()) + 1), dtype="<U5")
    for token, idx in question_token_to_idx.items():
        idx_to_type[idx] = question_type(token)
    first = questions[:, 0]
    if first.size and (first.min() < 0 or first.max() >= len(idx_to_type)):
        raise ValueError(f"question token ids must lie in [0, {len(idx_to_type)}): got {first.min()}..{first.max()}")
    return idx_to_type[first]

def encode_tokens(tokens: Sequence[str], token_to_idx: Mapping[str, int], unk: str = "<UNK>") -> list[int]:
    """Token ids, unknown tokens mapped to ``unk``'s id."""
    unk_idx = token_to_idx[unk]
    return [token_to_idx.get(token, unk_idx) for token in tokens]
