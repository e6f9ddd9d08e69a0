"""PNG figures of a run's history (matplotlib, Agg backend: no display needed).

``history`` is the list of per-epoch dicts written to metrics.json (keys such as ``train_ce``, ``val_ce``,
``train_kd_motion``, ``val_acc``, ``val_acc_what``).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.ticker import MaxNLocator  # noqa: E402

from training.metrics import QUESTION_TYPES  # noqa: E402
from utils.atomic import atomic_write  # noqa: E402


def _series(history: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(row["epoch"], row[key]) for row in history if row.get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def _save(fig, path: Path) -> Path:
    for ax in fig.axes:
        if ax.get_xlabel() == "epoch":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    try:
        with atomic_write(path) as f:  # a full disk leaves the previous plot, not half a PNG
            fig.savefig(f, dpi=110, format=Path(path).suffix.lstrip("."))
    finally:
        plt.close(fig)
    return path


def plot_ce(history: list[dict], path: Path) -> Path:
    """Train and validation cross-entropy (the hard loss) per epoch."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for split, style in (("train", "-o"), ("val", "--s")):
        ax.plot(*_series(history, f"{split}_ce"), style, label=f"{split} CE", markersize=3)
    ax.set(xlabel="epoch", ylabel="cross-entropy", title="Hard loss (CE)")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_distillation(history: list[dict], path: Path, terms: tuple) -> Path:
    """Train and validation values of the terms that read the teacher (e.g. ``kd_appearance``, ``kd_motion``:
    the paper's Figs. 4-5), one panel per term, per epoch."""
    fig, axes = plt.subplots(1, len(terms), figsize=(5 * len(terms), 3.8), squeeze=False)
    for ax, part in zip(axes[0], terms):
        for split, style in (("train", "-o"), ("val", "--s")):
            ax.plot(*_series(history, f"{split}_{part}"), style, label=split, markersize=3)
        ax.set(xlabel="epoch", ylabel="loss", title=f"Distillation term {part}")
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)


def plot_accuracy(history: list[dict], path: Path) -> Path:
    """Train accuracy, validation accuracy overall and per question type, per epoch (percent)."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for key, label, style in (("train_acc", "train", "-o"), ("val_acc", "val (all)", "-s")):
        epochs, values = _series(history, key)
        ax.plot(epochs, [100 * v for v in values], style, label=label, markersize=3, linewidth=2)
    for qtype in QUESTION_TYPES:
        epochs, values = _series(history, f"val_acc_{qtype}")
        if epochs:
            ax.plot(epochs, [100 * v for v in values], ":", label=f"val {qtype}", linewidth=1)
    ax.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return _save(fig, path)


def plot_run(history: list[dict], run_dir: Path, teacher_terms: tuple = ()) -> list[Path]:
    """Write the run's figures into ``run_dir``; returns their paths. ``teacher_terms``: the computed loss terms
    that read a teacher (distillation runs), drawn in loss_distillation.png."""
    paths = [plot_ce(history, run_dir / "loss_ce.png"), plot_accuracy(history, run_dir / "accuracy.png")]
    if teacher_terms:
        paths.append(plot_distillation(history, run_dir / "loss_distillation.png", tuple(teacher_terms)))
    return paths


def plot_comparison(models: list[dict], histories: dict, path: Path) -> Path:
    """Summary figure of several models: test accuracy per type (bars) and validation accuracy curves.

    models: [{"name", "accuracy": {"all", "by_type": {type: acc}}}]; histories: name -> history (may be empty).
    """
    with_curves = any(histories.get(m["name"]) for m in models)
    fig, axes = plt.subplots(1, 2 if with_curves else 1, figsize=(12 if with_curves else 7, 4), squeeze=False)
    bar_ax = axes[0, 0]
    columns = ["all"] + list(QUESTION_TYPES)
    width = 0.8 / max(len(models), 1)
    for i, model in enumerate(models):
        acc = model["accuracy"]
        values = [acc["all"]] + [acc["by_type"].get(t) for t in QUESTION_TYPES]
        xs = [c + (i - (len(models) - 1) / 2) * width for c in range(len(columns))]
        bar_ax.bar(xs, [100 * v if v is not None else 0 for v in values], width, label=model["name"])
    bar_ax.set_xticks(range(len(columns)), [c.capitalize() for c in columns])
    bar_ax.set(ylabel="accuracy (%)", title="Test accuracy per question type")
    bar_ax.grid(axis="y", alpha=0.3)
    bar_ax.legend(fontsize=8)
    if with_curves:
        curve_ax = axes[0, 1]
        for model in models:
            epochs, values = _series(histories.get(model["name"]) or [], "val_acc")
            curve_ax.plot(epochs, [100 * v for v in values], "-o", markersize=3, label=model["name"])
        curve_ax.set(xlabel="epoch", ylabel="accuracy (%)", title="Validation accuracy")
        curve_ax.grid(alpha=0.3)
        curve_ax.legend(fontsize=8)
    return _save(fig, path)
