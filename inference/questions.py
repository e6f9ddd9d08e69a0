"""A question (and its answer candidates) typed by a person -> token ids, as the question files encode them.

A question is tokenised as the dataset question files are (preprocess/text.py ``tokenize_question``: lower-cased,
its last character, the question mark, dropped, NLTK's tokens); a question typed without a question mark gets one
first, so that its last word is kept. Candidates are tokenised as multiple-choice files tokenise theirs
(``word_tokenize`` of the lower-cased text). Words outside the checkpoint's vocabulary become ``<UNK>`` and are
named.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from inference import PredictError
from model.heads import get_head
from preprocess.text import encode_tokens, tokenize_question, word_tokenize

UNKNOWN = "<UNK>"


@dataclass
class EncodedQuestion:
    """One question: its text, tokens, ids (in the embedding vocabulary) and the tokens that are not in it;
    multiple choice: per candidate the same (``candidates``: list of (text, tokens, ids))."""
    text: str
    tokens: list[str]
    ids: list[int]
    unknown: list[str]
    candidates: list[tuple[str, list[str], list[int]]] | None = None
    unknown_in_candidates: list[str] = field(default_factory=list)


def question_tokens(text: str) -> list[str]:
    """The tokens of a typed question (module docstring)."""
    text = text.strip()
    return tokenize_question(text if text.endswith("?") else text + "?")


def encode_question(text: str, token_to_idx: dict, head: str, candidates: list[str] | None = None,
                    num_candidates: int | None = None, source: str = "--question") -> EncodedQuestion:
    """Encode ``text`` (and the candidates of a multiple-choice head: exactly ``num_candidates`` of them) with the
    embedding vocabulary ``token_to_idx``; PredictError (naming ``source``) for an empty question, missing or
    surplus candidates."""
    tokens = question_tokens(text) if text and text.strip() else []
    if not tokens:
        raise PredictError(f"{source}: the question is empty")
    unknown = [t for t in tokens if t not in token_to_idx]
    encoded = EncodedQuestion(text.strip(), tokens, encode_tokens(tokens, token_to_idx), unknown)
    if not get_head(head).uses_candidates:
        if candidates:
            raise PredictError(f"{source}: --candidates given, but the checkpoint's head is {head} (multiple choice "
                               "only)")
        return encoded
    if not candidates or len(candidates) != num_candidates:
        raise PredictError(f"{source}: the checkpoint is multiple choice with {num_candidates} candidates; give "
                           f"exactly {num_candidates} (--candidates \"a\" \"b\" ...), got {len(candidates or [])}")
    encoded.candidates = []
    for k, candidate in enumerate(candidates):
        words = word_tokenize(candidate.strip().lower())
        if not words:
            raise PredictError(f"{source}: candidate {k + 1} is empty")
        encoded.candidates.append((candidate.strip(), words, encode_tokens(words, token_to_idx)))
        encoded.unknown_in_candidates += [w for w in words if w not in token_to_idx]
    return encoded
