"""Tokens as nltk.word_tokenize gives them (Punkt with NLTK's English parameters, then NLTKWordTokenizer).

Every expected token list below was written by hand from the rules, not produced by calling the tokenizer:
- NLTKWordTokenizer (nltk/tokenize/destructive.py): opening quotes « “ ‘ „ and closing quotes » ” ’ are always split
  off; a leading straight " becomes ``, any other " becomes ''; a straight ' before a letter, not preceded by a word
  character and not starting 're/'ve/'ll/'m/'t/'s/'d/'n, is split off as an opening quote; a ' before a space (after
  a non-quote) is split off, as are 's 'm 'd 'll 're 've n't; a period is split off only at the very end of the
  (sentence) text; two or more periods are a token; commas and colons are split off unless a digit follows; figure
  and en/em dashes (U+2012-U+2015) and "--" are tokens, a plain hyphen is not; ? ! ; @ # $ % & are tokens.
- Punkt (nltk/tokenize/punkt.py): a word with a final period ends a sentence unless its lower-cased type (without
  the period) is a known abbreviation, the pair (word, next word) is a known collocation, or it is a single-letter
  initial / number followed by a word that the orthographic heuristic says starts no sentence; ? and ! end a
  sentence. In lower-cased text an abbreviation never ends a sentence (the orthographic heuristic needs the next
  word capitalised to call it a sentence start). So a period Punkt takes as a sentence end is split off its word
  by the word tokenizer (it is then final in its sentence), and an abbreviation's period stays on the word.
Comments marked [punkt-en] say where the expectation depends on Punkt's ENGLISH parameters: the abbreviation list
contains mr, dr, st, u.s (an untrained Punkt splits their period off: checked, those cases then fail) but not e.g,
i.e or no (their period is split off either way).

This test fails with the TreebankWordTokenizer used before (checked: 20 of its 51 cases fail: curly quotes, ’s,
« », „ “, the opening straight quote, sentence-final periods inside a text, en/em dashes and "..").
"""
from __future__ import annotations

import pytest

from preprocess.text import tokenize_question, word_tokenize

WORD_CASES = [
    # quotes of every kind
    ("'hello'", ["'", "hello", "'"]),
    ('"hello"', ["``", "hello", "''"]),
    ('he said "hello" twice', ["he", "said", "``", "hello", "''", "twice"]),
    ("“hello”", ["“", "hello", "”"]),
    ("«word»", ["«", "word", "»"]),
    ("‘x’", ["‘", "x", "’"]),
    ("„so“", ["„", "so", "“"]),
    # apostrophes
    ("the woman’s hat", ["the", "woman", "’", "s", "hat"]),  # a curly apostrophe is a closing quote
    ("the woman's hat", ["the", "woman", "'s", "hat"]),
    ("don't", ["do", "n't"]),
    ("they're here", ["they", "'re", "here"]),
    ("at six o'clock", ["at", "six", "o'clock"]),
    ("rock 'n' roll", ["rock", "'n", "'", "roll"]),  # 'n is excluded from the opening-quote rule
    ("cannot", ["can", "not"]),
    # abbreviations
    ("mr. smith is here", ["mr.", "smith", "is", "here"]),  # [punkt-en] mr is an abbreviation: no sentence break
    ("dr. smith", ["dr.", "smith"]),  # [punkt-en] dr
    ("the u.s. army", ["the", "u.s.", "army"]),  # [punkt-en] u.s
    ("st. louis", ["st.", "louis"]),  # [punkt-en] st
    ("e.g. this", ["e.g", ".", "this"]),  # [punkt-en] e.g is NOT an abbreviation: "e.g." ends a sentence
    ("the no. 1 song", ["the", "no", ".", "1", "song"]),  # [punkt-en] no is not an abbreviation either
    ("j. smith", ["j.", "smith"]),  # an initial before a word seen capitalised mid-sentence: no break
    ("in the u.s.", ["in", "the", "u.s", "."]),  # the text's final period is always split off
    # several sentences
    ("he talks. what does he say?", ["he", "talks", ".", "what", "does", "he", "say", "?"]),
    ("what is it? no. yes!", ["what", "is", "it", "?", "no", ".", "yes", "!"]),
    ("He left. She stayed.", ["He", "left", ".", "She", "stayed", "."]),
    # non-ASCII letters
    ("café naïve über", ["café", "naïve", "über"]),
    ("Ça va", ["Ça", "va"]),
    # numbers
    ("3.5 and 1,000", ["3.5", "and", "1,000"]),
    ("a, b: c", ["a", ",", "b", ":", "c"]),
    ("it costs $5 (50%)", ["it", "costs", "$", "5", "(", "50", "%", ")"]),
    # hyphens and dashes
    ("a well-known man", ["a", "well-known", "man"]),
    ("he -- eats", ["he", "--", "eats"]),
    ("1990–2000", ["1990", "–", "2000"]),  # en dash U+2013
    ("yes—no", ["yes", "—", "no"]),  # em dash U+2014
    # ellipsis
    ("wait... what", ["wait", "...", "what"]),  # no sentence break after an ellipsis followed by a lower-case word
    ("wait..", ["wait", ".."]),
    ("wait…", ["wait…"]),  # the single-character ellipsis U+2026 is no rule's concern
]


@pytest.mark.parametrize("text, expected", WORD_CASES, ids=[c[0] for c in WORD_CASES])
def test_word_tokenize(text, expected):
    assert word_tokenize(text) == expected


QUESTION_CASES = [
    ("What is the “thing” he holds?", ["what", "is", "the", "“", "thing", "”", "he", "holds"]),
    ("What is the woman’s name?", ["what", "is", "the", "woman", "’", "s", "name"]),
    ("What sign says 'no entry'?", ["what", "sign", "says", "'", "no", "entry", "'"]),
    ('What does he call "Bob"?', ["what", "does", "he", "call", "``", "bob", "''"]),
    ("What is Mr. Bean doing?", ["what", "is", "mr.", "bean", "doing"]),  # [punkt-en] mr
    ("Who is on the St. Louis team?", ["who", "is", "on", "the", "st.", "louis", "team"]),  # [punkt-en] st
    ("What did he do. Then?", ["what", "did", "he", "do", ".", "then"]),  # "do." ends a sentence
    ("What is on the T.V.?", ["what", "is", "on", "the", "t.v", "."]),  # final period of the text: split off
    ("What is in the pic..?", ["what", "is", "in", "the", "pic", ".."]),
    ("Who is the naïve café owner?", ["who", "is", "the", "naïve", "café", "owner"]),
    ("What is 3.5 times 1,000?", ["what", "is", "3.5", "times", "1,000"]),
    ("What is the man's dog doing?", ["what", "is", "the", "man", "'s", "dog", "doing"]),
    ("what is it", ["what", "is", "i"]),  # HCRN drops the last character, '?' or not
]


@pytest.mark.parametrize("question, expected", QUESTION_CASES, ids=[c[0] for c in QUESTION_CASES])
def test_tokenize_question(question, expected):
    assert tokenize_question(question) == expected


def _nltk_doctest_cases() -> list[tuple[str, list[str]]]:
    """(text, tokens) of every ``word_tokenize`` example with its expected output in NLTK's own
    ``nltk/test/tokenize.doctest`` (written by NLTK's developers with NLTK's English Punkt data): ``word_tokenize(sN)``
    followed by the token list, or ``word_tokenize(sxN) == expected`` after ``expected = [...]``. Assignments are
    read with ast.literal_eval, nothing is executed."""
    import ast
    import doctest
    import re
    from pathlib import Path

    import nltk
    text = (Path(nltk.__file__).parent / "test" / "tokenize.doctest").read_text(encoding="utf-8")
    names, cases = {}, []
    for example in doctest.DocTestParser().get_examples(text):
        source = example.source.strip()
        assignment = re.fullmatch(r"(\w+) = (.+)", source, flags=re.S)
        if assignment:
            try:
                names[assignment[1]] = ast.literal_eval(assignment[2])
            except (ValueError, SyntaxError):
                names.pop(assignment[1], None)
            continue
        call = re.fullmatch(r"word_tokenize\((\w+)\)( == expected)?", source)
        if call and call[1] in names:
            expected = names.get("expected") if call[2] else ast.literal_eval(example.want.strip())
            if call[2] and example.want.strip() != "True":
                continue
            cases.append((names[call[1]], expected))
    return cases


def test_nltks_own_word_tokenize_examples():
    """Expected tokens from a source other than this project: NLTK's doctest of word_tokenize (15 examples in NLTK
    3.10.4: money, quotes, contractions, "cannot", percentages, times, lists, « », curly quotes, and two that depend
    on Punkt's English parameters: "I called Dr. Jones. I called ..." keeps "Dr." whole, "usw." is split)."""
    cases = _nltk_doctest_cases()
    assert len(cases) >= 15
    assert ("I called Dr. Jones. I called Dr. Jones.",
            ["I", "called", "Dr.", "Jones", ".", "I", "called", "Dr.", "Jones", "."]) in cases
    for text, expected in cases:
        assert word_tokenize(text) == expected, text


def test_same_tokens_as_nltk_reading_punkt_tab_text_files(tmp_path, monkeypatch):
    """The loading path, not the tables' content: our parameters, written as NLTK's punkt_tab text files and read by
    nltk.word_tokenize's own loader, give the same tokens, so the tables reach PunktSentenceTokenizer as NLTK's loader
    would hand them over. That the tables are NLTK's English ones is checked independently by the hand-written
    [punkt-en] cases above and by NLTK's own doctest examples (test_nltks_own_word_tokenize_examples)."""
    import nltk
    from nltk.tokenize import _get_punkt_tokenizer
    from punkt.data import english as tables

    folder = tmp_path / "tokenizers" / "punkt_tab" / "english"
    folder.mkdir(parents=True)
    (folder / "abbrev_types.txt").write_text("\n".join(sorted(tables.ABBREV_TYPES)), encoding="utf-8")
    (folder / "sent_starters.txt").write_text("\n".join(sorted(tables.SENT_STARTERS)), encoding="utf-8")
    (folder / "collocations.tab").write_text("\n".join(f"{a}\t{b}" for a, b in sorted(tables.COLLOCATIONS)),
                                             encoding="utf-8")
    (folder / "ortho_context.tab").write_text("\n".join(f"{k}\t{v}" for k, v in tables.ORTHO_CONTEXT.items()),
                                              encoding="utf-8")
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    _get_punkt_tokenizer.cache_clear()
    try:
        texts = [text for text, _ in WORD_CASES] + [q.lower()[:-1] for q, _ in QUESTION_CASES] + [
            "Mr. Smith met J. Bach in the U.S. He left. However, it rained... Then what?",
            "The firm earned $3.5 million. Sales rose 5% in Nov. and fell in Dec. Meanwhile, Dr. Jones said so.",
        ]
        for text in texts:
            assert word_tokenize(text) == nltk.word_tokenize(text), text
    finally:
        _get_punkt_tokenizer.cache_clear()


def test_question_type_and_token_ids():
    from preprocess.text import QUESTION_TYPES, encode_tokens, question_type
    assert QUESTION_TYPES == ("what", "who", "how", "when", "where")
    assert [question_type(t) for t in ("what", "who", "how", "when", "where", "why", "What", "")] == \
        ["what", "who", "how", "when", "where", "other", "other", "other"]
    vocab = {"<NULL>": 0, "<UNK>": 1, "what": 2, "dog": 3}
    assert encode_tokens(["what", "cat", "dog"], vocab) == [2, 1, 3]
    assert encode_tokens(["what", "cat"], {"<unk>": 7, "what": 2}, unk="<unk>") == [2, 7]
    with pytest.raises(KeyError):
        encode_tokens(["what"], {"what": 2})  # a vocabulary without its unknown token
