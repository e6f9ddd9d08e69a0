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
from training.metrics import QUESTION_TYPES, SplitAccuracy, accuracy_table
from utils.atomic import atomic_write


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


def epoch_record(epoch: int, lr: float, seconds: float, train_losses: dict, train_acc: float, val_losses: dict,
                 val_acc: SplitAccuracy, is_best: bool) -> dict:
    """One metrics.csv row: every loss part (the objective's ``total`` and term names: the keys of
    ``train_losses`` / ``val_losses``) for train and val, accuracies (fractions), lr, time, best flag."""
    row = {"epoch": epoch, "lr": lr, "time_s": round(seconds, 3)}
    row.update({f"train_{k}": v for k, v in train_losses.items()})
    row["train_acc"] = train_acc
    row.update({f"val_{k}": v for k, v in val_losses.items()})
    row["val_acc"] = val_acc.overall
    per_type = val_acc.by_type()
    row.update({f"val_acc_{t}": per_type[t] for t in QUESTION_TYPES})
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
    parts = [paint(f"epoch {row['epoch']:>3}/{max_epochs}", "cyan", bold=True),
             f"train loss {weighted_parts(row, 'train', weights)}"]
    parts.append(f"acc {100 * row['train_acc']:.2f}%")
    parts.append(paint(f"val loss {weighted_parts(row, 'val', weights)} acc {100 * row['val_acc']:.2f}%", "green"))
    if row.get("test_acc") is not None:
        parts.append(f"test acc {100 * row['test_acc']:.2f}%")
    parts.append(f"lr {row['lr']:.2e}  {row['time_s']:.0f}s")
    line = " | ".join(parts)
    return line + ("  " + paint("* best", "yellow", bold=True) if row["best"] else "")


TEST_SELECTED_LABEL = "test-selected (the official release's protocol, optimistic)"


def accuracy_title(split: str, scoring: dict | None) -> str:
    """Accuracy table title; says so when questions without video features were excluded."""
    if scoring and scoring["excluded_questions"]:
        return f"{split} accuracy (%), EXCLUDING {scoring['excluded_questions']} questions without features"
    return f"{split} accuracy (%)"


def best_test_epoch(history: list[dict]) -> dict | None:
    """The epoch with the highest per-epoch test accuracy (``test_acc``, written with eval.test_every_epoch):
    {"accuracy", "epoch", "label"}, or None when no epoch has one."""
    rows = [r for r in history if r.get("test_acc") is not None]
    if not rows:
        return None
    best = max(rows, key=lambda r: r["test_acc"])  # the first epoch of a tie
    return {"accuracy": best["test_acc"], "epoch": best["epoch"], "label": TEST_SELECTED_LABEL}


def write_test_results(run_dir: Path, accuracy: SplitAccuracy, best_epoch: int, best_val: float,
                       checkpoint: Path, scoring: dict | None = None, test_selected: dict | None = None,
                       split: str = "test") -> str:
    """test_results.json and test_results.md; returns the markdown table.

    ``accuracy``: best.pt (the val-selected checkpoint) on the test split. ``scoring``: QuestionSplit.scoring()
    of the test split. ``test_selected``: best_test_epoch() of the run's history, when it has per-epoch test
    accuracies; reported beside the val-selected figure and labelled as optimistic.
    """
    table = accuracy_table(accuracy, title=accuracy_title(split, scoring))
    payload = {"split": split, "checkpoint": str(checkpoint), "selection": "val-selected (best val accuracy)",
               "best_epoch": best_epoch, "best_val_acc": best_val, **accuracy.to_dict()}
    text = f"# {run_dir.name}: {split} accuracy\n\n"
    if scoring:
        payload["scoring"] = scoring
        text += f"Scoring: {scoring['note']}\n\n"
    text += (f"Val-selected: the best checkpoint by val accuracy, epoch {best_epoch} (val accuracy "
             f"{100 * best_val:.2f}%)\n\n{table}\n")
    if test_selected:
        payload["test_selected"] = test_selected
        text += (f"\n{test_selected['label'].capitalize()}: the best test accuracy over epochs, "
                 f"{100 * test_selected['accuracy']:.2f}% at epoch {test_selected['epoch']}\n")
    write_text_atomic(run_dir / "test_results.json", json.dumps(payload, indent=1))
    write_text_atomic(run_dir / "test_results.md", text)
    return table
