"""Figures and tables a reader can trust: labelled bars (0 % visible), counts, baseline, legends off the data,
distinguishable per-type curves, titles naming the run, All first in every table."""
import matplotlib
import numpy as np

from training.metrics import SplitAccuracy, accuracy_table, comparison_table
from training.plots import accuracy_figure, ce_figure, comparison_figure, plot_run

matplotlib.use("Agg")

TYPES = ("what", "who", "how", "when", "where")


def _model(name, all_acc, by_type):
    counts = {"what": 120, "who": 60, "how": 10, "when": 5, "where": 5, "other": 0}
    return {"name": name, "accuracy": {"all": all_acc, "count": 200, "by_type": by_type, "counts": counts}}


MODELS = [_model("Teacher", 0.40, {"what": 0.3, "who": 0.5, "how": 0.8, "when": 0.0, "where": 0.4}),
          _model("Student", 0.38, {"what": 0.28, "who": 0.52, "how": 0.7, "when": 0.2, "where": 0.0})]
HISTORY = [{"epoch": e, "train_acc": 0.1 * e, "val_acc": 0.09 * e, **{f"val_acc_{t}": 0.05 * e + i / 50
                                                                       for i, t in enumerate(TYPES)}}
           for e in range(1, 4)]


def _legend_is_outside(fig, ax) -> bool:
    fig.canvas.draw()
    return ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1


def test_comparison_bars_carry_values_counts_and_a_visible_zero():
    fig = comparison_figure(MODELS, {"Teacher": HISTORY, "Student": HISTORY}, "msvd-qa test: Teacher, Student",
                            {"answer": "man", "accuracy": 0.171})
    bar_ax = fig.axes[0]
    labels = [t.get_text() for t in bar_ax.texts]
    assert labels[:6] == ["40.0", "30.0", "50.0", "80.0", "0.0", "40.0"]  # Teacher: All first, When at 0 %
    zero_bar = [p for p in bar_ax.patches if p.get_height() == 0][0]
    assert zero_bar.get_linewidth() > 0 and zero_bar.get_edgecolor()[3] > 0  # outlined: a line at the base
    ticks = [t.get_text() for t in bar_ax.get_xticklabels()]
    assert ticks == ["All\n(n=200)", "What\n(n=120)", "Who\n(n=60)", "How\n(n=10)", "When\n(n=5)", "Where\n(n=5)"]
    baseline = [line for line in bar_ax.get_lines() if line.get_label().startswith("majority answer 'man'")]
    assert baseline and np.allclose(baseline[0].get_ydata(), 17.1)
    assert bar_ax.get_title() == "msvd-qa test: Teacher, Student"
    assert all(_legend_is_outside(fig, ax) for ax in fig.axes)


def test_per_type_curves_differ_in_colour_marker_and_style_and_titles_name_the_run(tmp_path):
    fig = accuracy_figure(HISTORY, "my_teacher")
    ax = fig.axes[0]
    styles = [(line.get_color(), line.get_marker(), line.get_linestyle()) for line in ax.get_lines()]
    assert len(styles) == 7 and len({s[0] for s in styles}) == 7 and len({s[1] for s in styles}) == 7
    assert ax.get_title() == "my_teacher: accuracy" and _legend_is_outside(fig, ax)
    run_dir = tmp_path / "my_teacher"
    run_dir.mkdir()
    history = [dict(row, train_ce=1.0, val_ce=1.1, train_kd_appearance=0.1, val_kd_appearance=0.1,
                    train_kd_motion=0.2, val_kd_motion=0.2) for row in HISTORY]
    assert [p.name for p in plot_run(history, run_dir, teacher_terms=("kd_appearance", "kd_motion"))] == \
        ["loss_ce.png", "accuracy.png", "loss_distillation.png"]


def test_tables_put_all_first():
    acc = SplitAccuracy(correct=[3, 1, 1, 0, 1, 0], total=[6, 2, 1, 1, 2, 0])
    assert accuracy_table(acc).splitlines()[0].split(" | ")[1] == "All"
    table = comparison_table([("T", acc, 1000)], baseline=("man", 0.25)).splitlines()
    assert table[0] == "| Model | All | What | Who | How | When | Where | Parameters |"
    assert table[2] == "| majority answer ('man') | 25.00 | | | | | | |"
    assert table[3].startswith("| T | 50.00 | 50.00 | 50.00 | 100.00 | 0.00 | 50.00 |")
    assert table[4] == "| questions | 12 | 6 | 2 | 1 | 1 | 2 | |"


def test_hard_loss_figure_plots_the_count_runs_mse():
    count = [{"epoch": e, "train_mse": 4.0 / e, "val_mse": 5.0 / e} for e in range(1, 4)]
    ax = ce_figure(count, "count_run").axes[0]
    assert [line.get_label() for line in ax.lines] == ["train MSE", "val MSE"]
    assert ax.lines[0].get_ydata().tolist() == [4.0, 2.0, 4.0 / 3] and "MSE" in ax.get_title()
    ce = ce_figure([{"epoch": 1, "train_ce": 1.5, "val_ce": 1.2}], "run").axes[0]
    assert [line.get_ydata().tolist() for line in ce.lines] == [[1.5], [1.2]] and "CE" in ce.get_title()
    hinge = ce_figure([{"epoch": 1, "train_hinge": 40.0, "val_hinge": 38.5}], "mc_run").axes[0]
    assert [line.get_ydata().tolist() for line in hinge.lines] == [[40.0], [38.5]] and "hinge" in hinge.get_title()
