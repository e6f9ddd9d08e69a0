"""Evaluate saved checkpoints: accuracy tables, per-question predictions, and model comparisons.

The functions here back ``validate.py`` and can be called directly (the demo does):

    from training.evaluation import evaluate_checkpoint, compare_checkpoints
    result = compare_checkpoints(["results/t/best.pt", "results/s/best.pt", "results/kd/best.pt"],
                                 ["Teacher", "Student", "Student-KD"])
    print(result["markdown"]["table"])
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.cpu_ops import set_cpu_fast_path
from model.heads import get_head
from model.losses import build_objective
from model.params import count_parameters
from training.checkpoint import CheckpointError, build_checkpoint_model, check_against_data, load_checkpoint
from training.data import build_loader, dataset_spec, inverse_vocab, load_data
from training.distributed import DistContext
from training.engine import evaluate
from training.metrics import ACCURACY, SplitAccuracy, format_value, accuracy_table, comparison_table, metric_unit
from training.reporting import TEST_SELECTED_LABEL, accuracy_title, best_test_epoch
from training.run_settings import resolve_head
from training.samplers import VideoGroupedBatchSampler
from utils.config import to_dict
from training.run_schema import load_config
from utils.device import resolve_device


@dataclass
class CheckpointResult:
    """One checkpoint evaluated on one split. ``predictions`` (N,) in the split's question order: answer ids
    (open-ended), chosen candidate indices (multiple choice) or rounded counts (count); ``accuracy`` the scores
    (accuracy, or MSE for count) per category; ``scoring``: how the split's questions were scored
    (QuestionSplit.scoring())."""
    name: str
    path: Path
    split: str
    accuracy: SplitAccuracy
    losses: dict
    predictions: np.ndarray
    parameters: int
    checkpoint: dict
    scoring: dict

    def summary(self) -> dict:
        ckpt = self.checkpoint
        return {"name": self.name, "checkpoint": str(self.path), "split": self.split, "parameters": self.parameters,
                "mode": ckpt.get("mode"), "graph_layers": ckpt["model_config"].get("graph_layers"),
                "epoch": ckpt.get("epoch"), "accuracy": self.accuracy.to_dict(), "losses": self.losses,
                "scoring": self.scoring}


def resolve_config(cfg_path: str | Path | None, overrides: list[str], ckpt: dict):
    """The config to read data with: ``cfg_path`` (+ overrides), or else the checkpoint's own config (merged over
    configs/base.yml, so a config stored by an older version gains the keys added since)."""
    if cfg_path is not None:
        return load_config(cfg_path, overrides)
    if "config" not in ckpt:
        raise CheckpointError("the checkpoint holds no config: pass --cfg FILE")
    return load_config(data=to_dict(ckpt["config"]), overrides=overrides)


def run_history(path: Path, ckpt: dict) -> list[dict]:
    """The per-epoch metrics of the run a checkpoint belongs to: its folder's metrics.json (the whole run), else the
    history stored in the checkpoint (up to the epoch it was saved)."""
    metrics = path.parent / "metrics.json"
    if metrics.is_file():
        try:
            return json.loads(metrics.read_text())
        except json.JSONDecodeError:
            pass
    return list(ckpt.get("history", []))


def model_from_checkpoint(ckpt: dict, device: torch.device, path: str | Path = "the checkpoint",
                          source: str = "--ckpt") -> torch.nn.Module:
    """The checkpoint's model (its own model config and vocabulary sizes), in eval mode on ``device``; a
    CheckpointError naming ``path`` when its sizes do not fit into memory or its tensors do not fit its config."""
    return build_checkpoint_model(ckpt, path, source).to(device).eval()


class SplitView:
    """One split of loaded data (a DataBundle) read as text: question and answer texts, categories, correctness.
    The trainer reads its test predictions through one; :class:`SplitEvaluator` is one that loads its own data."""

    def __init__(self, bundle, split: str, head: str):
        self.bundle = bundle
        self.split = split
        self.head = head
        self.answer_head = get_head(head)
        self.questions = bundle.splits[split]

    def question_texts(self) -> list[str]:
        tokens = inverse_vocab(self.bundle.embedding_vocab)
        q = self.questions
        return [" ".join(tokens[t] for t in row[:length]) for row, length in zip(q.questions, q.lengths)]

    def answer_tokens(self) -> list[str]:
        return inverse_vocab(self.bundle.vocab["answer_token_to_idx"])

    def candidate_texts(self) -> list[list[str]] | None:
        """Per question its K candidates as text (multiple choice), else None."""
        q = self.questions
        if q.candidates is None:
            return None
        tokens = inverse_vocab(self.bundle.embedding_vocab)
        return [[" ".join(tokens[t] for t in row[:length]) for row, length in zip(rows, lengths)]
                for rows, lengths in zip(q.candidates, q.candidate_lengths)]

    def answer_texts(self) -> "AnswerText":
        """How answer ids of this split read as text (see :class:`AnswerText`)."""
        return AnswerText(self.head, self.answer_tokens() if self.answer_head.answers_are_tokens else None,
                          self.candidate_texts())

    def category_name(self, i: int) -> str | None:
        """The category of question ``i``; None when the dataset has no categories."""
        names = self.questions.category_names
        return names[self.questions.types[i]] if names else None

    def correct(self, predictions: np.ndarray) -> np.ndarray:
        """(..., N) bool: the prediction equals the answer, and the answer is answerable."""
        q = self.questions
        right = predictions == q.answers
        return right if q.unanswerable is None else right & (q.answers != q.unanswerable)


class SplitEvaluator(SplitView):
    """Loads one split's data once and evaluates any number of checkpoints on it."""

    def __init__(self, cfg, split: str = "test"):
        if split not in ("val", "test"):
            raise ValueError(f"split must be val or test, got '{split}'")
        self.cfg = cfg
        head = resolve_head(cfg)
        self.device = resolve_device(cfg.device)
        set_cpu_fast_path(cfg.model.cpu_fast_path)
        # no teacher here: terms that read one are reported as 0
        self.objective = build_objective(cfg.losses, cfg.distill.losses, drop_teacher_terms=True)
        self.dist = DistContext(rank=0, local_rank=0, world_size=1, device=self.device)
        super().__init__(load_data(cfg, splits=(split,), device=self.device, show_progress=False), split, head)
        sampler = VideoGroupedBatchSampler(self.questions.video_key, cfg.train.batch_size, shuffle=False)
        self.loader = build_loader(self.bundle.dataset(split), sampler, cfg.dataset.num_workers, self.device)

    def evaluate(self, path: str | Path, name: str | None = None, source: str = "--ckpt") -> CheckpointResult:
        path = Path(path)
        ckpt = load_checkpoint(path, source)
        check_against_data(ckpt, self.bundle.signature, path, source)
        model = model_from_checkpoint(ckpt, self.device, path, source)
        result = evaluate(model, None, self.loader, self.questions, self.objective, self.device, None, self.dist,
                          desc=self.split)
        parameters = count_parameters(model)
        return CheckpointResult(name=name or path.parent.name, path=path, split=self.split, accuracy=result.accuracy,
                                losses=result.losses, predictions=result.predictions, parameters=parameters,
                                checkpoint=ckpt, scoring=self.questions.scoring())

    def close(self) -> None:
        self.bundle.close()


@dataclass
class AnswerText:
    """Answer ids as text: the answer token (open-ended), the candidate's text (multiple choice; needs the question's
    index) or the count itself."""
    head: str
    tokens: list | None
    candidates: list | None

    def __call__(self, question: int, answer: int) -> str:
        candidates = self.candidates[question] if self.candidates is not None else None
        return get_head(self.head).answer_text(answer, self.tokens, candidates)


def prediction_records(evaluator: SplitEvaluator, result: CheckpointResult) -> list[dict]:
    """One dict per question: ids, question text, answer, prediction, type (category), correct; multiple choice
    adds the candidates and the chosen / right candidate indices (``prediction_index``, ``answer_index``), count the
    squared error."""
    q = evaluator.questions
    texts, answer_text = evaluator.question_texts(), evaluator.answer_texts()
    correct = evaluator.correct(result.predictions)
    records = []
    for i, text in enumerate(texts):
        answer, predicted = int(q.answers[i]), int(result.predictions[i])
        record = {"question_id": int(q.question_ids[i]), "video_id": int(q.video_ids[i]), "question": text,
                  "answer": answer_text(i, answer), "prediction": answer_text(i, predicted),
                  "type": evaluator.category_name(i), "correct": bool(correct[i])}
        candidates = answer_text.candidates[i] if answer_text.candidates is not None else None
        record.update(evaluator.answer_head.answer_details(answer, predicted, candidates))
        records.append(record)
    return records


def evaluate_checkpoint(ckpt_path: str | Path, cfg_path: str | Path | None = None, overrides: list[str] = (),
                        split: str = "test", with_predictions: bool = False) -> dict:
    """Accuracy of one checkpoint on ``split``: {"checkpoint", "split", "parameters", "accuracy", "table",
    "predictions" (list of per-question dicts, if asked)}."""
    ckpt = load_checkpoint(ckpt_path, "--ckpt")
    evaluator = SplitEvaluator(resolve_config(cfg_path, list(overrides), ckpt), split)
    try:
        result = evaluator.evaluate(ckpt_path)
        out = result.summary()
        out["table"] = accuracy_table(result.accuracy, title=accuracy_title(split, result.scoring,
                                                                            result.accuracy.metric))
        if with_predictions:
            out["predictions"] = prediction_records(evaluator, result)
        return out
    finally:
        evaluator.close()


def _disagreements(evaluator: SplitEvaluator, results: list[CheckpointResult], max_examples: int) -> list[dict]:
    """Questions on which the models' predictions differ; those the last model alone gets right first."""
    q = evaluator.questions
    predictions = np.stack([r.predictions for r in results])            # (M, N)
    correct = evaluator.correct(predictions)
    differ = np.flatnonzero((predictions != predictions[:1]).any(axis=0))
    last_alone = correct[-1, differ] & ~correct[:-1, differ].any(axis=0)
    order = differ[np.argsort(~last_alone, kind="stable")]
    texts, answer_text = evaluator.question_texts(), evaluator.answer_texts()
    rows = []
    for i in order[:max_examples]:
        rows.append({"question_id": int(q.question_ids[i]), "video_id": int(q.video_ids[i]), "question": texts[i],
                     "answer": answer_text(i, q.answers[i]), "type": evaluator.category_name(i),
                     "predictions": {r.name: answer_text(i, predictions[m, i]) for m, r in enumerate(results)},
                     "correct": {r.name: bool(correct[m, i]) for m, r in enumerate(results)}})
    return rows


def disagreement_table(rows: list[dict], names: list[str]) -> str:
    """Markdown table of disagreement rows (the paper's Figure 7 as text)."""
    lines = ["| Video | Question | Answer | " + " | ".join(names) + " |", "|---|---|---|" + "---|" * len(names)]
    for row in rows:
        cells = [f"{row['predictions'][n]} {'✓' if row['correct'][n] else '✗'}" for n in names]
        lines.append(f"| {row['video_id']} | {row['question']} | {row['answer']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


TEST_SELECTED_COLUMN = "test-selected (optimistic)"


def add_test_selected_column(table: str, selected: list[dict | None]) -> str:
    """The comparison table with a last column holding each run's best per-epoch test accuracy (``selected``, one
    best_test_epoch() per model row, None where its run has no per-epoch test accuracy)."""
    values = ["-" if s is None else f"{format_value(s['accuracy'], s.get('metric', 'accuracy'))} (epoch {s['epoch']})"
              for s in selected]
    cells = [f" {TEST_SELECTED_COLUMN} |", "---|"] + [f" {value} |" for value in values]
    return "\n".join(line + cell for line, cell in zip(table.split("\n"), cells))


def comparison_notes(split: str, scoring: dict, with_test_selected: bool) -> str:
    """The lines under the comparison table: how the split was scored, and what the two accuracy columns are."""
    notes = [f"Scoring: {scoring['note']}."]
    if with_test_selected:
        notes.append(f"All: each checkpoint on the {split} split (best.pt: val-selected). {TEST_SELECTED_COLUMN}: "
                     f"the best per-epoch test accuracy (count: lowest MSE) of its run, {TEST_SELECTED_LABEL}.")
    return "\n".join(notes)


def majority_baseline(evaluator: SplitEvaluator) -> tuple[str, float] | None:
    """(majority answer, accuracy of always giving it on the evaluator's split): training/baselines.py's majority
    baseline (one definition): the training split's most frequent answer (open-ended, never an unknown answer) or
    right-candidate position (multiple choice, ``candidate k``), scored as the models are (the split's unanswerable
    answer never correct) on the questions the models were scored on. None for count (its prior baseline, the
    rounded training mean, is an MSE: training/baselines.py), and when the training question file is absent or has
    no answer a baseline can give."""
    from preprocess.question_file import load_question_file
    from training import baselines
    from training.data import dataset_path
    from training.log import get_logger
    if evaluator.answer_head.metric != ACCURACY:  # the bar chart and table show an answer's accuracy only
        return None
    path = dataset_path(evaluator.cfg, "train_question_pt")
    if not path.is_file():
        get_logger().warning(f"no majority-answer baseline: training question file {path} not found "
                             "(config key 'dataset.train_question_pt')")
        return None
    tokens = evaluator.answer_tokens() if evaluator.answer_head.answers_are_tokens else None
    answer = baselines.majority(load_question_file(path)["answers"], evaluator.head, tokens)
    if answer is None:
        return None
    q = evaluator.questions
    correct = baselines.outcomes(np.full_like(q.answers, answer), q.answers, evaluator.head, q.unanswerable)
    return baselines.answer_label(answer, evaluator.head, tokens), float(correct.mean())


def _repeated(names: list[str]) -> set[str]:
    """The names that occur more than once."""
    return {n for n in names if names.count(n) > 1}


def default_names(paths: list[str | Path]) -> list[str]:
    """Display names for checkpoints: the run folder (``results/my_teacher/best.pt`` -> ``my_teacher``), and where
    that repeats, the shortest tail of the path without ``.pt`` that tells them apart (``my_teacher/best``,
    ``my_teacher/last``; ``a/my_teacher/best``, ``b/my_teacher/best``)."""
    parts = [Path(p).resolve().with_suffix("").parts for p in paths]
    names = [Path(p).resolve().parent.name for p in paths]
    for depth in range(2, max(len(p) for p in parts) + 1):
        repeated = _repeated(names)
        if not repeated:
            break
        names = ["/".join(p[-depth:]) if n in repeated else n for p, n in zip(parts, names)]
    return names


def breakdown_label(spec) -> str:
    """How a dataset's result columns are named in headings: "per question type" (the first-word types of MSVD-QA /
    MSRVTT-QA), "per category" (categories from the question file), "overall" (none)."""
    if not spec.category_names:
        return "overall"
    return "per question type" if spec.category_source == "first_word" else "per category"


def compare_checkpoints(paths: list[str | Path], names: list[str] | None = None, cfg_path: str | Path | None = None,
                        overrides: list[str] = (), split: str = "test", max_examples: int = 20) -> dict:
    """Evaluate several checkpoints on one split of the same data and compare them.

    Returns {"split", "dataset", "models": [summary per model], "baseline": {"answer", "accuracy"} (always giving
    the training split's majority answer: majority_baseline) or None, "histories", "num_questions",
    "num_disagreements", "disagreements": [rows], "scoring", "markdown": {"table", "notes", "disagreements"}}.
    ``table`` is the paper's Table 3/4 layout, with a "test-selected (optimistic)" column when split is test and
    the runs' metrics.json hold per-epoch test accuracies (eval.test_every_epoch); each model's summary then has
    "test_selected".
    """
    names = list(names) if names else default_names(paths)
    if len(names) != len(paths):
        raise ValueError(f"--names gives {len(names)} names for {len(paths)} checkpoints")
    if len(set(names)) != len(names):
        raise ValueError(f"--names must differ: {', '.join(sorted(_repeated(names)))} given more than once")
    first = load_checkpoint(paths[0], "--compare")
    evaluator = SplitEvaluator(resolve_config(cfg_path, list(overrides), first), split)
    try:
        results = [evaluator.evaluate(p, n, "--compare") for p, n in zip(paths, names)]
        predictions = np.stack([r.predictions for r in results])
        rows = _disagreements(evaluator, results, max_examples)
        baseline = majority_baseline(evaluator)
        table = comparison_table([(r.name, r.accuracy, r.parameters) for r in results], baseline)
        histories = {r.name: run_history(r.path, r.checkpoint) for r in results}
        selected = [best_test_epoch(histories[r.name]) if split == "test" else None for r in results]
        models = [dict(r.summary(), test_selected=s) for r, s in zip(results, selected)]
        with_test_selected = any(s is not None for s in selected)
        if with_test_selected:
            table = add_test_selected_column(table, selected)
        scoring = evaluator.questions.scoring()
        return {"split": split, "dataset": evaluator.cfg.dataset.name, "metric": results[0].accuracy.metric,
                "breakdown": breakdown_label(dataset_spec(evaluator.cfg)),
                "unit": metric_unit(results[0].accuracy.metric), "models": models,
                "baseline": None if baseline is None else {"answer": baseline[0], "accuracy": baseline[1]},
                "histories": histories,
                "num_questions": len(evaluator.questions),
                "num_disagreements": int((predictions != predictions[:1]).any(axis=0).sum()),
                "disagreements": rows, "scoring": scoring,
                "markdown": {"table": table, "notes": comparison_notes(split, scoring, with_test_selected),
                             "disagreements": disagreement_table(rows, names)}}
    finally:
        evaluator.close()
