"""Answer-prior baselines on the test split: what a model reaches without looking at the video, for every answer
head, per category of the dataset (preprocess/datasets/: ``category_names``, ``category_groups``).

- majority: always the training split's most frequent answer, the answer head's one definition (``Head.majority``,
  model/heads/; utils/majority.py). Open-ended: the most frequent answer id (the
  vocabulary's unknown answers ``<UNK0>`` / ``<UNK1>`` / ``<UNK>`` are never chosen); multiple choice: the most
  frequent position of the right candidate ("candidate k"); count: the training mean count rounded (halves up) and
  clamped to 1..10 as the count head's predictions are (scored by MSE, lower is better). Ties go to the lowest id / position.
- per-category majority (``per_type_majority``; only when the dataset has categories): the same within each
  category of the training split (MSVD-QA / MSRVTT-QA: the first-word question types; others: the question file's
  ``question_category``), the overall answer for a category the training split lacks.
- question only (open-ended only: a multiple-choice question's candidates differ from question to question and a
  count question's text repeats with every count): for each distinct question text its most frequent training
  answer, the per-category (else overall) majority answer for a question the training split lacks. A model that
  does not beat it does not use the video.

Scoring is the models' (training.metrics): accuracy, and MSE of the count. A baseline never answers an unknown
answer, so it never scores the split's unanswerable id (``<UNK1>``, else ``<UNK>``; both are unknown answers) correct,
as the models never do: no unanswerable id needs to be passed here. Every question of the question files counts (the models answer questions whose video
has no features from all-zero features, so they score the same questions by default).

``validate.py --compare`` shows :func:`majority` through training.evaluation.majority_baseline, and the synthetic
generator's statistics use utils/majority.py too: one definition.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from model.heads import get_head
from preprocess.question_file import load_question_file, load_vocab
from training.metrics import TYPE_NAMES, question_types


def value_key(head: str) -> str:
    """The key a baseline's score goes under: ``mse`` for count, ``accuracy`` otherwise (the head's metric)."""
    return get_head(head).metric.lower()


def never_chosen(answer_tokens: list[str] | None) -> list[int]:
    """The ids of the unknown answers (model/heads/open_ended.py ``UNKNOWN_ANSWERS``) in an open-ended answer list,
    in id order."""
    return get_head("open_ended").never_chosen(answer_tokens)


def majority(train_answers: np.ndarray, head: str, answer_tokens: list[str] | None = None) -> int | None:
    """The majority answer of ``train_answers`` (N,), the head's one definition (model/heads/base.py
    ``Head.majority``): an open-ended answer id (never an unknown one), a candidate position, or for count
    ``clamp(floor(mean + 0.5), 1, 10)`` (the count head's rounding); None when there is none (no answers, or only
    unknown ones)."""
    return get_head(head).majority(train_answers, answer_tokens)


def answer_label(answer: int, head: str, answer_tokens: list[str] | None = None) -> str:
    """How a baseline answer reads: the answer token, ``candidate k``, or the count."""
    return get_head(head).baseline_label(answer, answer_tokens)


def outcomes(predicted: np.ndarray, answers: np.ndarray, head: str, unanswerable: int | None) -> np.ndarray:
    """(N,) float64 per-question outcome of the head: 1/0 correct (an answer equal to ``unanswerable`` never is),
    or for count the squared error."""
    predicted, answers = np.asarray(predicted, dtype=np.int64), np.asarray(answers, dtype=np.int64)
    return get_head(head).outcome(predicted, answers, unanswerable)


def score(predicted: np.ndarray, answers: np.ndarray, types: np.ndarray, head: str,
          category_names: tuple = TYPE_NAMES, category_groups: dict | None = None) -> dict:
    """{"accuracy" | "mse": overall, "per_type": {category: value} (categories with test questions),
    ["per_group": {group: value}]} of ``predicted`` (N,) against ``answers`` (N,); ``types`` (N,) index
    ``category_names`` (empty: no per-category values). A baseline's answers are never unknown ones, so no
    unanswerable id is needed (module docstring)."""
    values = outcomes(predicted, answers, head, None)
    types = np.asarray(types, dtype=np.int64)
    out = {value_key(head): float(values.mean()),
           "per_type": {category_names[t]: float(values[types == t].mean()) for t in np.unique(types)}
           if category_names else {}}
    if category_groups:
        out["per_group"] = {}
        for group, members in category_groups.items():
            mask = np.isin(types, [category_names.index(m) for m in members])
            out["per_group"][group] = float(values[mask].mean()) if mask.any() else None
    return out


def _question_keys(questions: np.ndarray, lengths: np.ndarray) -> list[bytes]:
    """One hashable key per question: its token ids up to its length. questions (N, L) int, lengths (N,)."""
    questions = np.ascontiguousarray(questions, dtype=np.int64)
    return [row[:length].tobytes() for row, length in zip(questions, lengths)]


def question_only_predictions(train_keys: list[bytes], train_answers: np.ndarray, test_keys: list[bytes],
                              fallback: np.ndarray, never: list[int]) -> np.ndarray:
    """(N_test,) answer ids: each test question's most frequent training answer among the training questions with
    the same key (ids outside ``never``, lowest id on ties), ``fallback`` (N_test,) where there is none."""
    never = set(never)
    counts: dict[bytes, Counter] = {}
    for key, answer in zip(train_keys, train_answers):
        if int(answer) not in never:
            counts.setdefault(key, Counter())[int(answer)] += 1
    predicted = np.array(fallback, dtype=np.int64)
    for i, key in enumerate(test_keys):
        if key in counts:
            best = max(counts[key].values())
            predicted[i] = min(a for a, c in counts[key].items() if c == best)
    return predicted


def prior_baselines(train_answers: np.ndarray, train_types: np.ndarray, test_answers: np.ndarray,
                    test_types: np.ndarray, answer_tokens: list[str] | None = None,
                    train_keys: list[bytes] | None = None, test_keys: list[bytes] | None = None, *,
                    head: str = "open_ended", category_names: tuple = TYPE_NAMES,
                    category_groups: dict | None = None) -> dict:
    """The baselines (module docstring) from (N,) answers and category indices into ``category_names``.

    ``answer_tokens``: the open-ended answer vocabulary in id order (unused for the other heads).
    ``train_keys`` / ``test_keys``: one key per question (``_question_keys``) for the question-only baseline
    (open-ended only).

    Returns {"metric": "accuracy" | "MSE", "majority": {"answer", V, "per_type"[, "per_group"]},
    ["per_type_majority": {"answers": {category: answer}, V, "per_type"[, "per_group"]},]
    ["question_only": {V, "per_type"[, "per_group"]}]}, V = "accuracy" (a fraction) or "mse".
    """
    category_names = tuple(category_names)
    train_answers, test_answers = np.asarray(train_answers, np.int64), np.asarray(test_answers, np.int64)
    train_types, test_types = np.asarray(train_types, np.int64), np.asarray(test_types, np.int64)
    overall = majority(train_answers, head, answer_tokens)
    if overall is None:
        raise ValueError("the training split has no answer a baseline can give (none, or only unknown answers)")
    scoring = dict(head=head, category_names=category_names, category_groups=category_groups)
    label = lambda answer: answer_label(answer, head, answer_tokens)  # noqa: E731
    result = {"metric": get_head(head).metric,
              "majority": {"answer": label(overall),
                           **score(np.full_like(test_answers, overall), test_answers, test_types, **scoring)}}
    per_type_prediction = np.full_like(test_answers, overall)
    if category_names:
        by_type = {}
        for t in np.unique(test_types):
            found = majority(train_answers[train_types == t], head, answer_tokens)
            by_type[int(t)] = overall if found is None else found
        per_type_prediction = np.array([by_type[int(t)] for t in test_types], dtype=np.int64)
        result["per_type_majority"] = {"answers": {category_names[t]: label(a) for t, a in by_type.items()},
                                       **score(per_type_prediction, test_answers, test_types, **scoring)}
    if get_head(head).question_only_baseline and train_keys is not None and test_keys is not None:
        predicted = question_only_predictions(train_keys, train_answers, test_keys, per_type_prediction,
                                              get_head(head).never_chosen(answer_tokens))
        result["question_only"] = score(predicted, test_answers, test_types, **scoring)
    return result


def split_categories(data: dict, spec, token_to_idx: dict, where: str = "the question file") -> np.ndarray:
    """(N,) int64 category per question of a question file's arrays ``data``: first-word types, the file's
    ``question_category``, or all 0 when the dataset ``spec`` has no categories."""
    names = tuple(spec.category_names)
    if not names:
        return np.zeros(len(data["answers"]), dtype=np.int64)
    if spec.category_source == "first_word":
        return question_types(data["questions"], token_to_idx)
    category = data.get("question_category")
    if category is None:
        raise ValueError(f"{where}: the dataset {spec.name} reads categories from 'question_category', which the "
                         "file lacks")
    category = np.asarray(category, dtype=np.int64)
    if category.size and (category.min() < 0 or category.max() >= len(names)):
        raise ValueError(f"{where}: 'question_category' spans [{category.min()}, {category.max()}] but "
                         f"{spec.name} has {len(names)} categories")
    return category


def _spec(dataset):
    """A registered dataset from a name (``"tgif-qa/count"`` = name and task) or a dataset object."""
    if not isinstance(dataset, str):
        return dataset
    from preprocess.datasets import get_dataset
    name, _, task = dataset.partition("/")
    return get_dataset(name, task or None)


def baselines_from_files(train_questions, test_questions, vocab_json, dataset="msvd-qa") -> dict:
    """``prior_baselines`` of preprocessed question files (``<file_prefix>_<split>_questions.pt``) and vocabulary
    of ``dataset`` (a registered name, ``"tgif-qa/count"`` for a TGIF-QA task, or a preprocess.datasets.Dataset):
    its answer head, categories and groups."""
    from training.data.questions import embedding_vocabulary
    spec = _spec(dataset)
    head = spec.answer_type
    vocab = load_vocab(vocab_json)
    token_to_idx = embedding_vocabulary(vocab, head)
    answer_tokens = sorted(vocab["answer_token_to_idx"], key=vocab["answer_token_to_idx"].get)
    train, test = load_question_file(train_questions), load_question_file(test_questions)
    keys = {}
    if get_head(head).question_only_baseline:
        keys = {"train_keys": _question_keys(train["questions"], train["questions_len"]),
                "test_keys": _question_keys(test["questions"], test["questions_len"])}
    train_types = split_categories(train, spec, token_to_idx, str(train_questions))
    test_types = split_categories(test, spec, token_to_idx, str(test_questions))
    return prior_baselines(np.asarray(train["answers"]), train_types, np.asarray(test["answers"]), test_types,
                           answer_tokens, head=head, category_names=tuple(spec.category_names),
                           category_groups={g: tuple(m) for g, m in spec.category_groups.items()}, **keys)
