"""The :class:`Head` interface and its registry.

Head modules are listed in :data:`HEAD_MODULES` and imported on the first :func:`get_head` / :func:`head_names`
call, so importing this package never loads torch (the OpenMP policy of utils/openmp_policy.py must come first).

Shapes: B questions, A answers (open-ended), K candidates (multiple choice), d = module_dim, C clips.
"""
from __future__ import annotations

import importlib

import numpy as np

from utils.majority import most_frequent

HEAD_MODULES = ("model.heads.open_ended", "model.heads.multiple_choice", "model.heads.count")
DEFAULT_HEAD = "open_ended"  # the head of a model config or checkpoint without one (written before heads existed)

_HEADS: dict[str, "Head"] = {}
_LOADED = False


class Head:
    """One answer type. Subclasses set the class attributes and override what differs from the default: a
    classifier over the outputs whose argmax is the prediction, scored by accuracy.

    ``name``: the ``model.head`` value (and a dataset's ``answer_type`` when the head names an answer format);
    ``answer_format``: the question-file answer format the head reads (a dataset's ``answer_type``: open_ended |
    multiple_choice | count), its own name for the built-in heads; ``metric`` and ``lower_is_better``: how a split
    is scored and which way is better (checkpoint selection, sweep reports); the run folder's files, tables and plots
    name and format it as its training.metrics.Metric says (built in: ``accuracy``, ``MSE``; a head with another
    metric registers one with training.metrics.register_metric); ``uses_candidates``: batches carry
    ``candidates`` (B, K, L_a) and ``candidates_len`` (B, K), and the word embedding is the joint
    question_answer_token_to_idx; ``answers_are_tokens``: answers are ids into ``answer_token_to_idx`` (answer text,
    the unanswerable id, the question-only baseline); ``default_losses``: the loss terms a config of this head lists
    (``losses:``); ``readout_label`` / ``output_label``: the output layer's parts in the parameter table.
    """
    name: str = ""
    answer_format: str = ""
    metric: str = "accuracy"
    lower_is_better: bool = False
    uses_candidates: bool = False
    answers_are_tokens: bool = False
    question_only_baseline: bool = False
    default_losses: tuple = ("ce",)
    readout_label: str = "clip readout"
    output_label: str = "classifier"

    # ------------------------------------------------------------------ data
    def embedding_key(self) -> str:
        """The vocabulary table the word embedding reads (questions, and candidates when the head uses them)."""
        return "question_answer_token_to_idx" if self.uses_candidates else "question_token_to_idx"

    def num_outputs(self, num_answers: int, num_candidates: int) -> int:
        """Outputs of the network given the vocabulary's A = ``num_answers`` answers (``answer_token_to_idx``) and
        the question files' K = ``num_candidates``: A by default."""
        return num_answers

    def check_answers(self, answers: np.ndarray, num_outputs: int) -> str | None:
        """What is wrong with a split's answers (N,) int, or None: by default ids in [0, num_outputs)."""
        if answers.min() < 0 or answers.max() >= num_outputs:
            return (f"answer ids span [{answers.min()}, {answers.max()}] but there are {num_outputs} "
                    f"{'candidates per question' if self.uses_candidates else 'answers'} (is dataset.vocab_json the "
                    "matching vocabulary?)")
        return None

    def unanswerable(self, vocab: dict) -> int | None:
        """The answer id that is never counted correct (None: every answer can be right)."""
        return None

    def random_answers(self, size: int, num_outputs: int, generator):
        """(size,) int64 random answers the head accepts (benchmarks): ids in [0, num_outputs)."""
        import torch
        return torch.randint(0, num_outputs, (size,), generator=generator)

    # ------------------------------------------------------------------ network
    def check_outputs(self, num_question_tokens: int, num_outputs: int) -> None:
        """ValueError when the vocabulary sizes cannot build this head (at least 2 tokens and 2 outputs)."""
        what = "candidates" if self.uses_candidates else "answers"
        if num_question_tokens < 2 or num_outputs < 2:
            raise ValueError(f"need at least 2 question tokens and 2 {what}, got {num_question_tokens} and "
                             f"{num_outputs}")

    def build_output(self, module_dim: int, num_outputs: int, dropout: dict):
        """(readout, classifier) modules: the clip readout (B, C, d) -> (B, d) and the classifier
        ((B, d), q (B, d)) -> logits (B, num_outputs)."""
        from model.fusion import AnswerClassifier, ClipReadout
        return ClipReadout(module_dim, dropout["readout"]), AnswerClassifier(module_dim, num_outputs,
                                                                             dropout["classifier"])

    def logits(self, model, fused, sentence, candidates=None, candidates_len=None):
        """Logits (B, outputs) of ``model`` (its ``readout`` and ``classifier``) from the fused clips V_c (B, C, d)
        and the question vector q (B, d)."""
        return model.classifier(model.readout(fused), sentence)

    # ------------------------------------------------------------------ scoring
    def predictions(self, logits):
        """(B,) int64 predictions from logits (B, outputs): the argmax."""
        return logits.detach().argmax(dim=-1)

    def outcome(self, predictions, answers, unanswerable: int | None):
        """(N,) float64 per-question outcome (torch or numpy alike): 1 / 0 correct; an answer equal to
        ``unanswerable`` is never correct."""
        right = predictions == answers
        if unanswerable is not None:
            right = right & (answers != unanswerable)
        return _float64(right)

    def probabilities(self, logits):
        """(B, outputs) softmax of the logits, or None where the outputs are no distribution."""
        import torch
        return torch.softmax(logits.float(), dim=-1)

    # ------------------------------------------------------------------ baselines and text
    def majority(self, train_answers: np.ndarray, answer_tokens: list | None = None) -> int | None:
        """The answer that the majority baseline always gives (the project's one definition, utils/majority.py):
        the training split's most frequent answer, lowest id on ties, never one of :meth:`never_chosen`; None when
        there is none."""
        return most_frequent(train_answers, self.never_chosen(answer_tokens))

    def never_chosen(self, answer_tokens: list | None) -> list[int]:
        """Answer ids a baseline never gives (none by default)."""
        return []

    def answer_text(self, answer: int, tokens: list | None = None, candidates: list | None = None) -> str:
        """How answer ``answer`` reads: its answer token, or the text of the question's candidate."""
        if self.uses_candidates:
            return candidates[answer]
        return tokens[answer] if tokens is not None else str(int(answer))

    def baseline_label(self, answer: int, tokens: list | None = None) -> str:
        """How a baseline's constant answer reads in a table."""
        return self.answer_text(answer, tokens)

    def answer_details(self, answer: int, prediction: int, candidates: list | None = None) -> dict:
        """Extra per-question fields of a predictions file (validate.py --predictions)."""
        return {}

    def prediction_fields(self, logits_row, probabilities_row, labels: list | None, top: list) -> dict:
        """predict.py's JSON fields for one answer besides the prediction: the top answers by default."""
        return {"top": [{"answer": a, "probability": round(p, 6)} for a, p in top]}

    def describe(self, answer, top_k: int) -> str:
        """One line of predict.py's text output for an inference.answering.Answer: the prediction and the
        ``top_k`` most probable answers."""
        ranked = "  ".join(f"{a} {p:.3f}" for a, p in answer.top(top_k))
        return f"{answer.prediction}   ({ranked})"

    def shown_answers(self, answer, top_k: int) -> list:
        """(label, probability) pairs an explanation shows: the ``top_k`` most probable by default."""
        return answer.top(top_k)

    def fits_loss(self, term_heads: tuple) -> bool:
        """Whether a loss term registered for ``term_heads`` (() = every head) fits this head."""
        return not term_heads or self.name in term_heads or self.answer_format in term_heads


def _float64(values):
    """float64 copy of a bool / int array or tensor."""
    return values.astype(np.float64) if isinstance(values, np.ndarray) else values.to(dtype=_torch_float64())


def _torch_float64():
    import torch
    return torch.float64


def register_head(cls):
    """Class decorator: register an instance of a :class:`Head` subclass under its ``name``."""
    head = cls()
    if not head.name:
        raise ValueError(f"{cls.__name__}: a head needs a name")
    if not head.answer_format:
        head.answer_format = head.name
    _HEADS[head.name] = head
    return cls


def _load() -> None:
    global _LOADED
    if not _LOADED:
        for module in HEAD_MODULES:
            importlib.import_module(module)
        _LOADED = True


def head_names() -> tuple:
    """The registered head names: the built-in ones in :data:`HEAD_MODULES` order, then the others as registered."""
    _load()
    order = {module: i for i, module in enumerate(HEAD_MODULES)}
    return tuple(sorted(_HEADS, key=lambda name: order.get(type(_HEADS[name]).__module__, len(order))))


def get_head(name) -> Head:
    """The head registered as ``name`` (a Head is returned as it is); ValueError listing the heads otherwise."""
    if isinstance(name, Head):
        return name
    _load()
    if name not in _HEADS:
        raise ValueError(f"unknown answer head {name!r}; registered: {', '.join(head_names())}")
    return _HEADS[name]


def metric_lower_is_better(metric: str) -> bool:
    """Whether lower values of ``metric`` are better (the direction of the heads scored by it; accuracy if no head
    names it)."""
    _load()
    return any(h.lower_is_better for h in _HEADS.values() if h.metric == metric)
