"""The metric description (training.metrics.Metric): the two built-in metrics' names, keys and formats, and a toy
metric with a toy head, both registered in this file, whose run folder, test results and validate table carry the
toy metric's names and format (no other file knows of them)."""
import csv
import json

import numpy as np
import pytest
import torch

import train
import validate
from model.heads import register_head
from model.heads.base import _float64
from model.heads.count import CountHead
from train_fixtures import write_config, write_tiny_dataset
from training.metrics import (Metric, SplitAccuracy, accuracy_table, format_value, get_metric, metric_unit,
                              register_metric)
from training.plots import accuracy_figure
from training.reporting import best_test_epoch, row_metric
from training.sweep_report import markdown, outcome_name, score_key

pytestmark = pytest.mark.usefixtures("single_thread")

MAE = register_metric(Metric("mean absolute error", key="mae", summary_key="mae", outcome="absolute_error",
                             outcome_label="absolute error", scale=1.0, digits=4, unit="", axis_label="MAE",
                             long_name="mean absolute error of the count", counted=False))


@register_head
class AbsoluteCountHead(CountHead):
    """The count head scored by the absolute error |prediction - answer| (lower is better)."""
    name = "toy_abs_count"
    answer_format = "count"
    metric = "mean absolute error"
    lower_is_better = True

    def outcome(self, predictions, answers, unanswerable):
        return abs(_float64(predictions - answers))


# ------------------------------------------------------------------------------------------------ the registry
def test_the_built_in_metrics():
    acc, mse = get_metric("accuracy"), get_metric("MSE")
    assert (acc.key, acc.summary_key, acc.outcome, acc.unit, acc.axis_label) == ("acc", "accuracy", "correct", "%",
                                                                                 "accuracy (%)")
    assert (mse.key, mse.summary_key, mse.outcome, mse.unit, mse.axis_label) == ("mse", "mse", "squared_error", "",
                                                                                 "MSE")
    assert not acc.lower_is_better and mse.lower_is_better and acc.counted and not mse.counted
    assert acc.format(0.123456) == "12.35" and mse.format(0.123456) == "0.123" and acc.format(None) == "-"
    with pytest.raises(ValueError, match="unknown metric 'nope'; registered: accuracy, MSE, mean absolute error"):
        get_metric("nope")


def test_a_toy_metric_names_and_formats_the_tables_by_hand():
    scores = SplitAccuracy(correct=[1.5, 2.0], total=[2, 1], names=("a", "b"), metric="mean absolute error")
    assert scores.to_dict()["absolute_error"] == 3.5 and scores.to_dict()["absolute_error_by_type"] == {"a": 1.5,
                                                                                                         "b": 2.0}
    assert "correct" not in scores.to_dict() and format_value(1 / 3, "mean absolute error") == "0.3333"
    assert metric_unit("mean absolute error") == "MAE"
    assert accuracy_table(scores, "test MAE").splitlines()[2] == "| mean absolute error | 1.1667 | 0.7500 | 2.0000 |"
    assert row_metric({"val_mae": 1.0}) == "mean absolute error" and row_metric({"val_acc": 1.0}) == "accuracy"
    history = [{"epoch": 1, "test_mae": 0.5}, {"epoch": 2, "test_mae": 0.25}, {"epoch": 3, "test_mae": 0.75}]
    assert best_test_epoch(history)["epoch"] == 2 and best_test_epoch(history)["metric"] == "mean absolute error"
    summary = {"metric": "mean absolute error", "columns": ["all"], "tests": [],
               "models": {"M": {"mae": {"mean": 0.5, "std": 0.125}, "per_type": {}, "parameters": 3, "seeds": [1]}},
               "method": "none"}
    text = markdown(summary, "T")
    assert "Test mean absolute error of the count (lower is better), mean ± sample std over seeds:" in text
    assert "| M | 3 | 0.5000 ± 0.1250 |" in text and "mean difference (mean absolute error)" in text
    assert score_key("mean absolute error") == "mae" and outcome_name("mean absolute error") == "absolute error"
    # a run's curves: the metric's columns, not the mse loss term's, scaled by 1 and labelled with its names
    ax = accuracy_figure([{"epoch": 1, "train_mae": 0.5, "val_mae": 0.25, "val_mse": 9.0}], "run").axes[0]
    assert ax.get_ylabel() == "MAE" and ax.get_title() == "run: mean absolute error"
    assert [list(line.get_ydata()) for line in ax.lines] == [[0.5], [0.25]]


# ------------------------------------------------------------------------------------------------ a toy run
@pytest.fixture(scope="module")
def count_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy_metric")
    return root, write_tiny_dataset(root / "data", answer_type="count")


def test_a_toy_metric_labels_the_run_folder_and_validate(count_data, tmp_path):
    root, data = count_data
    cfg = write_config(root / "toy.yml", data, root / "results", answer_type="count",
                       model={"head": "toy_abs_count"}, train={"max_epochs": 2})
    result = train.run(["--cfg", str(cfg), "--exp_name", "toy"])
    run = root / "results/toy"
    with open(run / "metrics.csv") as f:
        columns = next(csv.reader(f))
    # the metric's columns (train_mse / val_mse are the mse loss term's)
    assert {"train_mae", "val_mae", "test_mae"} <= set(columns) and not any("_acc" in c for c in columns)
    rows = json.loads((run / "metrics.json").read_text())
    rows = rows if isinstance(rows, list) else rows["epochs"]
    assert all("val_mae" in row and "val_acc" not in row for row in rows)
    best = torch.load(run / "best.pt", weights_only=True)
    assert best["best_metric"] == pytest.approx(min(row["val_mae"] for row in result["history"]))  # lower is better
    text = (run / "test_results.md").read_text()
    assert text.startswith("# toy: test mean absolute error\n")
    assert "| test MAE | All |" in text and "| mean absolute error |" in text and "accuracy" not in text
    results = json.loads((run / "test_results.json").read_text())
    assert results["metric"] == "mean absolute error" and results["selection"] == "val-selected (lowest val mean " \
                                                                                 "absolute error)"
    assert "best_val_mae" in results and "absolute_error" in results and "correct" not in results
    assert f"{results['all']:.4f}" in text.split("| mean absolute error |")[1]  # 4 digits, no %
    preds = tmp_path / "preds.json"
    validated = validate.run(["--ckpt", str(run / "best.pt"), "--write_preds", str(preds)])
    assert validated["table"].splitlines()[0].startswith("| test MAE | All |")
    assert validated["table"].splitlines()[2].startswith(f"| mean absolute error | {validated['accuracy']['all']:.4f} |")
    records = json.loads(preds.read_text())
    errors = [abs(int(r["prediction"]) - int(r["answer"])) for r in records]  # by hand from the records
    assert validated["accuracy"]["all"] == pytest.approx(np.mean(errors))


def test_a_metric_registered_here_is_found_and_read_from_columns(monkeypatch):
    """Registration at call time (the built-ins register when the module loads), and which metric metrics.csv's
    columns name: the one with a ``val_<key>`` column, accuracy when none has."""
    import training.metrics as metrics
    monkeypatch.setattr(metrics, "_METRICS", dict(metrics._METRICS))
    toy = Metric("toy score", key="toy", summary_key="toy", outcome="toy_outcome", outcome_label="toy outcome",
                 scale=10.0, digits=1, unit="", axis_label="toy", long_name="toy score", counted=False)
    assert register_metric(toy) is toy and get_metric("toy score") is toy
    assert metrics.metric_of_columns(["epoch", "val_loss", "val_toy"]) is toy
    assert metrics.metric_of_columns(["epoch", "val_loss"]) is get_metric("accuracy")
    assert toy.format(0.25) == "2.5" and toy.format(None) == "-"
