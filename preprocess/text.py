"""Question text: HCRN/DualVGR tokenisation and question types.

Tokens: the question lower-cased, its final character (the question mark) dropped, then NLTK's Treebank word
tokenizer (``nltk.word_tokenize`` would first run the sentence splitter, which needs the downloadable ``punkt``
data; on a single question the Treebank tokenizer alone gives the same tokens).
"""
from __future__ import annotations

from typing import Mapping, Sequence

from nltk.tokenize import TreebankWordTokenizer

QUESTION_TYPES = ("what", "who", "how", "when", "where")  # a question's first word; anything else is "other"

_TOKENIZER = TreebankWordTokenizer()


def word_tokenize(text: str) -> list[str]:
    """The tokens ``nltk.word_tokenize(text)`` gives (the text as it is: no lower-casing, nothing dropped)."""
    return _TOKENIZER.tokenize(text)


def tokenize_question(question: str) -> list[str]:
    """HCRN tokens of one question: lower-cased, last character (the '?') dropped, then :func:`word_tokenize`."""
    return word_tokenize(question.lower()[:-1])


def question_type(first_token: str) -> str:
    """The question type named by a question's first token: what/who/how/when/where, anything else 'other'."""
    return first_token if first_token in QUESTION_TYPES else "other"


def encode_tokens(tokens: Sequence[str], token_to_idx: Mapping[str, int], unk: str = "<UNK>") -> list[int]:
    """Token ids, unknown tokens mapped to ``unk``'s id."""
    unk_idx = token_to_idx[unk]
    return [token_to_idx.get(token, unk_idx) for token in tokens]
