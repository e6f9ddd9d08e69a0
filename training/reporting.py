"""Run outputs besides checkpoints: per-epoch metrics (CSV, JSON), the coloured epoch summary line, test results.

Every file is rewritten whole and atomically, so an interrupted run never leaves half a file.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from training.log import paint
from model.losses import TOTAL
from training.metrics import (ACCURACY, SplitAccuracy, accuracy_table, format_value, get_metric, metric_of_columns,
                              metric_unit, registered_metrics)
from utils.atomic import write_text_atomic


def metric_key(metric: str) -> str:
    """The metrics.csv column stem of a metric: ``acc`` (accuracy, a fraction), ``mse`` (count head), ..."""
    return get_metric(metric).key


def row_metric(row: dict) -> str:
    """The metric a metrics.csv row holds: MSE when it has ``val_mse``, another metric its ``val_<key>``, else
    accuracy."""
    return metric_of_columns(row).name


def epoch_record(epoch: int, lr: float, seconds: float, train_losses: dict, train_acc: float, val_losses: dict,
                 val_acc: SplitAccuracy, is_best: bool) -> dict:
    """One metrics.csv row: every loss part (the objective's ``total`` and term names: the keys of
    ``train_losses`` / ``val_losses``) for train and val, the metric (``train_acc``, ``val_acc``, ``val_acc_<category
    or group>`` as fractions; ``*_mse`` for the count head), lr, time, best flag. The "other" category has no column."""
    stem = metric_key(val_acc.metric)
    row = {"epoch": epoch, "lr": lr, "time_s": round(seconds, 3)}
    row.update({f"train_{k}": v for k, v in train_losses.items()})
    row[f"train_{stem}"] = train_acc
    row.update({f"val_{k}": v for k, v in val_losses.items()})
    row[f"val_{stem}"] = val_acc.overall
    per_type = {**val_acc.by_type(), **val_acc.by_group()}
    row.update({f"val_{stem}_{t}": value for t, value in per_type.items() if t != "other"})
    row["best"] = is_best
    return row


def write_history(history: list[dict], run_dir: Path) -> None:
    """metrics.json (list of rows) and metrics.csv (one row per epoch)."""
    write_text_atomic(run_dir / "metrics.json", json.dumps(history, indent=1))
    if not history:
        return
    buffer = io.StringIO()
    columns = list(dict.fromkeys(key for row in history for key in row))  # rows of older runs may lack some
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    write_text_atomic(run_dir / "metrics.csv", buffer.getvalue())


def weighted_parts(row: dict, split: str, weights: dict) -> str:
    """``total = w1 x term1 + w2 x term2 ...`` of one split, each term as its weight times its mean value, e.g.
    ``35.78 = 1 x ce 1.65 + 100 x similarity 0.341 + 1e-06 x hsic 3.2e+03``; weight-0 terms are left out."""
    terms = [f"{weight:g} x {name} {row[f'{split}_{name}']:.4g}" for name, weight in weights.items() if weight]
    return f"{row[f'{split}_{TOTAL}']:.4f} = " + " + ".join(terms)


def summary_line(row: dict, max_epochs: int, weights: dict) -> str:
    """Coloured one-line epoch summary; ``weights``: term name -> weight of the objective (every weighted part of
    the loss is shown)."""
    metric = row_metric(row)
    stem = metric_key(metric)

    def shown(value: float) -> str:
        return f"{stem} {format_value(value, metric)}{get_metric(metric).unit}"
    parts = [paint(f"epoch {row['epoch']:>3}/{max_epochs}", "cyan", bold=True),
             f"train loss {weighted_parts(row, 'train', weights)}"]
    parts.append(shown(row[f"train_{stem}"]))
    parts.append(paint(f"val loss {weighted_parts(row, 'val', weights)} {shown(row[f'val_{stem}'])}", "green"))
    if row.get(f"test_{stem}") is not None:
        parts.append(f"test {shown(row[f'test_{stem}'])}")
    parts.append(f"lr {row['lr']:.2e}  {row['time_s']:.0f}s")
    line = " | ".join(parts)
    return line + ("  " + paint("* best", "yellow", bold=True) if row["best"] else "")


TEST_SELECTED_LABEL = "test-selected (the official release's protocol, optimistic)"


def accuracy_title(split: str, scoring: dict | None, metric: str = "accuracy") -> str:
    """Score table title (``test accuracy (%)`` / ``test MSE``); says so when questions without video features were
    excluded."""
    if scoring and scoring["excluded_questions"]:
        return f"{split} {metric_unit(metric)}, EXCLUDING {scoring['excluded_questions']} questions without features"
    return f"{split} {metric_unit(metric)}"


def best_test_epoch(history: list[dict]) -> dict | None:
    """The epoch with the best per-epoch test score (``test_acc``: highest, or ``test_mse``: lowest; written with
    eval.test_every_epoch): {"accuracy" (the score), "epoch", "label"}, or None when no epoch has one."""
    metric = next((m for m in registered_metrics() if any(r.get(f"test_{m.key}") is not None for r in history)), None)
    if metric is None:
        return None
    key = f"test_{metric.key}"
    rows = [r for r in history if r.get(key) is not None]
    sign = -1 if metric.lower_is_better else 1
    best = max(rows, key=lambda r: sign * r[key])  # the first epoch of a tie
    return {"accuracy": best[key], "epoch": best["epoch"], "label": TEST_SELECTED_LABEL,
            **({} if metric.name == ACCURACY else {"metric": metric.name})}  # accuracy: the default, not named


def write_test_results(run_dir: Path, accuracy: SplitAccuracy, best_epoch: int, best_val: float,
                       checkpoint: Path, scoring: dict | None = None, test_selected: dict | None = None,
                       split: str = "test") -> str:
    """test_results.json and test_results.md; returns the markdown table.

    ``accuracy``: best.pt (the val-selected checkpoint) on the test split. ``scoring``: QuestionSplit.scoring()
    of the test split. ``test_selected``: best_test_epoch() of the run's history, when it has per-epoch test
    accuracies; reported beside the val-selected figure and labelled as optimistic.
    """
    metric = accuracy.metric
    spec = get_metric(metric)
    table = accuracy_table(accuracy, title=accuracy_title(split, scoring, metric))
    selection = f"val-selected ({'lowest' if spec.lower_is_better else 'best'} val {metric})"
    payload = {"split": split, "checkpoint": str(checkpoint), "selection": selection,
               "best_epoch": best_epoch, f"best_val_{metric_key(metric)}": best_val, **accuracy.to_dict()}
    text = f"# {run_dir.name}: {split} {metric}\n\n"
    if scoring:
        payload["scoring"] = scoring
        text += f"Scoring: {scoring['note']}\n\n"
    text += (f"Val-selected: the best checkpoint by val {metric}, epoch {best_epoch} (val {metric} "
             f"{format_value(best_val, metric)}{spec.unit})\n\n{table}\n")
    if test_selected:
        payload["test_selected"] = test_selected
        text += (f"\n{test_selected['label'].capitalize()}: the best test {metric} over epochs, "
                 f"{format_value(test_selected['accuracy'], metric)}{spec.unit} at epoch {test_selected['epoch']}\n")
    write_text_atomic(run_dir / "test_results.json", json.dumps(payload, indent=1))
    write_text_atomic(run_dir / "test_results.md", text)
    return table
