"""PNG figures of a run's history (matplotlib, Agg backend: no display needed).

``history`` is the list of per-epoch dicts written to metrics.json (keys such as ``train_ce``, ``val_ce``,
``train_kd_motion``, ``val_acc``, ``val_acc_what``).
"""
from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.ticker import MaxNLocator  # noqa: E402

from training.metrics import ACCURACY, display_name, get_metric, metric_of_columns  # noqa: E402
from utils.atomic import atomic_write  # noqa: E402


def _series(history: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(row["epoch"], row[key]) for row in history if row.get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


# Per question type: colour, marker and line style, so the curves stay apart in colour and in black and white.
TYPE_STYLES = {"what": ("tab:green", "^", ":"), "who": ("tab:red", "v", "-."), "how": ("tab:purple", "D", ":"),
               "when": ("tab:brown", "P", "-."), "where": ("tab:pink", "X", ":")}


def _legend_outside(ax) -> None:
    """The legend to the right of the axes, where it cannot cover data."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)


def save_figure(fig, path: Path) -> Path:
    """Lay out ``fig`` (integer ticks on epoch axes), write it to ``path`` atomically (a full disk leaves the previous
    file, not half a PNG) and close it; returns ``path``."""
    for ax in fig.axes:
        if ax.get_xlabel() == "epoch":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    try:
        with atomic_write(path) as f:
            fig.savefig(f, dpi=110, bbox_inches="tight", format=Path(path).suffix.lstrip("."))
    finally:
        plt.close(fig)
    return path


HARD_LOSSES = {"ce": ("CE", "cross-entropy"), "hinge": ("hinge", "multiple-choice hinge loss"),
               "mse": ("MSE", "mean squared error")}  # the answer loss terms, in the order a plot looks for them


def ce_figure(history: list[dict], run: str):
    """Train and validation hard loss per epoch: the ``ce`` term, else ``hinge`` (HCRN's multiple choice), else
    ``mse`` (count)."""
    term = next((t for t in HARD_LOSSES if any(f"train_{t}" in row for row in history)), "ce")
    name, label = HARD_LOSSES[term]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for split, style in (("train", "-o"), ("val", "--s")):
        ax.plot(*_series(history, f"{split}_{term}"), style, label=f"{split} {name}", markersize=3)
    ax.set(xlabel="epoch", ylabel=label, title=f"{run}: hard loss ({name})")
    ax.grid(alpha=0.3)
    _legend_outside(ax)
    return fig


def distillation_figure(history: list[dict], run: str, terms: tuple):
    """Train and validation values of the terms that read the teacher (e.g. ``kd_appearance``, ``kd_motion``:
    the paper's Figs. 4-5), one panel per term, per epoch."""
    fig, axes = plt.subplots(1, len(terms), figsize=(5 * len(terms), 3.8), squeeze=False)
    for ax, part in zip(axes[0], terms):
        for split, style in (("train", "-o"), ("val", "--s")):
            ax.plot(*_series(history, f"{split}_{part}"), style, label=split, markersize=3)
        ax.set(xlabel="epoch", ylabel="loss", title=f"{run}: distillation term {part}")
        ax.grid(alpha=0.3)
    _legend_outside(axes[0][-1])
    return fig


def _category_style(name: str, index: int) -> tuple[str, str, str]:
    """Colour, marker and line style of a category's curve (the MSVD-QA types keep theirs)."""
    if name in TYPE_STYLES:
        return TYPE_STYLES[name]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return colours[index % len(colours)], "^vDPXo*"[index % 7], (":", "-.")[index % 2]


def accuracy_figure(history: list[dict], run: str):
    """Train and validation score overall and per category / group, per epoch: accuracy (percent), or MSE for
    runs of the count head (rows with ``val_mse``): the metric whose ``val_<key>`` column the rows have."""
    metric = metric_of_columns({k for row in history for k in row})
    stem, scale = metric.key, metric.scale
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label, style, colour in ((f"train_{stem}", "train", "-o", "tab:blue"),
                                      (f"val_{stem}", "val (all)", "-s", "tab:orange")):
        epochs, values = _series(history, key)
        ax.plot(epochs, [scale * v for v in values], style, color=colour, label=label, markersize=3, linewidth=2)
    prefix = f"val_{stem}_"
    categories = list(dict.fromkeys(k[len(prefix):] for row in history for k in row if k.startswith(prefix)))
    for index, qtype in enumerate(categories):
        epochs, values = _series(history, prefix + qtype)
        if epochs:
            colour, marker, line = _category_style(qtype, index)
            ax.plot(epochs, [scale * v for v in values], color=colour, marker=marker, linestyle=line,
                    label=f"val {qtype}", linewidth=1.2, markersize=4)
    ax.set(xlabel="epoch", ylabel=metric.axis_label, title=f"{run}: {metric.name}")
    ax.grid(alpha=0.3)
    _legend_outside(ax)
    return fig


def plot_run(history: list[dict], run_dir: Path, teacher_terms: tuple = ()) -> list[Path]:
    """Write the run's figures into ``run_dir`` (titles name the run: the folder's name); returns their paths.
    ``teacher_terms``: the computed loss terms that read a teacher (distillation runs), drawn in
    loss_distillation.png."""
    run = run_dir.name
    paths = [save_figure(ce_figure(history, run), run_dir / "loss_ce.png"),
             save_figure(accuracy_figure(history, run), run_dir / "accuracy.png")]
    if teacher_terms:
        figure = distillation_figure(history, run, tuple(teacher_terms))
        paths.append(save_figure(figure, run_dir / "loss_distillation.png"))
    return paths


def _bar_columns(models: list[dict]) -> list[tuple[str, str | None, int]]:
    """(label, category / group key or None for All, question count) per bar group: All first, then the categories
    (not "other") and the groups."""
    acc = models[0]["accuracy"]
    counts = {**acc.get("counts", {}), **acc.get("group_counts", {})}
    columns = [("All", None, acc.get("count", 0))]
    columns += [(display_name(t), t, counts.get(t, 0)) for t in [*acc.get("by_type", {}), *acc.get("by_group", {})]
                if t != "other"]
    return columns


def comparison_figure(models: list[dict], histories: dict, title: str, baseline: dict | None = None):
    """Summary figure of several models: accuracy per type (labelled bars) and validation accuracy curves.

    models: [{"name", "accuracy": {"all", "count", "by_type": {type: acc}, "counts": {type: n}}}]; histories:
    name -> history (may be empty); baseline: {"answer", "accuracy"} of always giving the most frequent answer.
    A 0 % bar shows as an outlined line at the base with its label; a type without questions is labelled n/a.
    """
    with_curves = any(histories.get(m["name"]) for m in models)
    fig, axes = plt.subplots(1, 2 if with_curves else 1, figsize=(14 if with_curves else 8, 4.5), squeeze=False)
    bar_ax = axes[0, 0]
    columns = _bar_columns(models)
    metric = get_metric(models[0]["accuracy"].get("metric", ACCURACY))
    scale, unit = metric.scale, metric.axis_label
    width = 0.8 / max(len(models), 1)
    for i, model in enumerate(models):
        acc = model["accuracy"]
        per_key = {**acc["by_type"], **acc.get("by_group", {})}
        values = [acc["all"] if key is None else per_key.get(key) for _, key, _ in columns]
        xs = [c + (i - (len(models) - 1) / 2) * width for c in range(len(columns))]
        bars = bar_ax.bar(xs, [scale * v if v is not None else 0 for v in values], width, label=model["name"],
                          edgecolor="black", linewidth=0.8)
        bar_ax.bar_label(bars, labels=[f"{scale * v:.1f}" if v is not None else "n/a" for v in values],
                         padding=2, fontsize=7, rotation=90 if len(models) > 3 else 0)
    if baseline is not None:
        bar_ax.axhline(100 * baseline["accuracy"], color="dimgray", linestyle="--", linewidth=1,
                       label=f"majority answer '{baseline['answer']}' ({100 * baseline['accuracy']:.1f})")
    bar_ax.set_xticks(range(len(columns)), [f"{label}\n(n={count:,})" for label, _, count in columns])
    bar_ax.set_ylim(0, max(metric.scale if metric.counted else 0, bar_ax.get_ylim()[1]) * 1.05)  # a fraction: to 100 %
    bar_ax.set(ylabel=unit, title=title)
    bar_ax.grid(axis="y", alpha=0.3)
    _legend_outside(bar_ax)
    if with_curves:
        curve_ax = axes[0, 1]
        for model, marker in zip(models, itertools.cycle("osD^vPX")):
            epochs, values = _series(histories.get(model["name"]) or [], f"val_{metric.key}")
            curve_ax.plot(epochs, [scale * v for v in values], marker=marker, markersize=4, label=model["name"])
        curve_ax.set(xlabel="epoch", ylabel=unit, title=f"validation {metric.name} per epoch")
        curve_ax.grid(alpha=0.3)
        _legend_outside(curve_ax)
    return fig


def plot_comparison(models: list[dict], histories: dict, path: Path, title: str,
                    baseline: dict | None = None) -> Path:
    """:func:`comparison_figure` saved as ``path``."""
    return save_figure(comparison_figure(models, histories, title, baseline), path)
