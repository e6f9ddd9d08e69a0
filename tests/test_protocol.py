"""The paper's protocol: every val/test question is scored (all-zero features for videos without features,
exclusion only on request and labelled); the optional per-epoch test evaluation with its test-selected figure
reported beside the val-selected one; dropout masks drawn per question in training unless videos are grouped."""
import json
import pickle

import numpy as np
import pytest
import torch
from easydict import EasyDict

import validate
from model import build_model
from model.losses import objective_for
from train_fixtures import ANSWERS, CLIPS, FRAMES, TINY_MODEL, VISION_DIM, write_config, write_tiny_dataset
from training import trainer
from training.data import load_data
from training.engine import StepContext, model_inputs, train_step
from training.evaluation import TEST_SELECTED_COLUMN, model_from_checkpoint
from training.reporting import TEST_SELECTED_LABEL
from training.trainer import run_training
from training.run_schema import load_config

pytestmark = pytest.mark.usefixtures("single_thread")
INVALID_VIDEO, MISSING_VIDEO = 900, 950  # write_tiny_dataset: marked valid = 0 / absent from the feature files
WITHOUT_FEATURES = (INVALID_VIDEO,) * 3 + (MISSING_VIDEO,) * 2


def add_questions_without_features(data, split: str = "test") -> int:
    """Append questions on the invalid and the missing video to a split's question file; returns the new total."""
    path = data.question_path(split)
    with open(path, "rb") as f:
        raw = pickle.load(f)  # the test's own file
    n = len(WITHOUT_FEATURES)
    source = np.arange(n) % len(raw["answers"])  # reuse existing question texts
    extra = {"questions": raw["questions"][source], "questions_len": raw["questions_len"][source],
             "question_id": np.arange(n) + 5000, "video_ids": np.array(WITHOUT_FEATURES),
             "video_names": np.array([f"vid{v}" for v in WITHOUT_FEATURES]), "answers": np.full(n, 2)}
    for key, values in extra.items():
        raw[key] = np.concatenate([raw[key], values.astype(raw[key].dtype)])
    with open(path, "wb") as f:
        pickle.dump(raw, f, protocol=4)
    return len(raw["answers"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory, single_thread):
    """Two tiny runs on a test split with questions on an invalid and on a missing video: the default protocol
    with eval.test_every_epoch, and one with eval.missing_features=exclude."""
    root = tmp_path_factory.mktemp("protocol")
    data = write_tiny_dataset(root / "data", seed=2)
    total = add_questions_without_features(data)
    cfg = write_config(root / "tiny.yml", data, root / "results", train={"max_epochs": 3})
    run_training(load_config(cfg, ["exp_name=every_epoch", "eval.test_every_epoch=true"]))
    run_training(load_config(cfg, ["exp_name=exclude", "eval.missing_features=exclude"]))
    return root, data, cfg, total


def _zero_feature_predictions(ckpt_path, data) -> dict:
    """question id -> prediction of an independent forward on all-zero features, question by question."""
    with open(data.question_path("test"), "rb") as f:
        raw = pickle.load(f)
    model = model_from_checkpoint(torch.load(ckpt_path, weights_only=True), torch.device("cpu"))
    out = {}
    with torch.no_grad():
        for q, length, vid, qid in zip(raw["questions"], raw["questions_len"], raw["video_ids"], raw["question_id"]):
            if int(vid) in WITHOUT_FEATURES:
                logits = model(torch.zeros(1, CLIPS, FRAMES, VISION_DIM), torch.zeros(1, CLIPS, VISION_DIM),
                               torch.from_numpy(q[:length].astype(np.int64))[None], torch.tensor([length])).logits
                out[int(qid)] = int(logits.argmax())
    return out


@pytest.mark.parametrize("in_memory", [False, True])
def test_feature_stores_give_all_zero_features_without_touching_the_file(runs, in_memory):
    _, _, cfg, total = runs
    bundle = load_data(load_config(cfg, [f"dataset.features_in_memory={str(in_memory).lower()}"]), splits=("test",))
    test = bundle.splits["test"]
    assert len(test) == total and test.zero_feature_questions == len(WITHOUT_FEATURES)
    batch = bundle.dataset("test")[np.arange(total)]
    zero_rows = batch["video_index"][-len(WITHOUT_FEATURES):].unique()
    assert len(zero_rows) == 1  # the invalid and the missing video both map to the one all-zero video
    assert not batch["appearance"][zero_rows].any() and not batch["motion"][zero_rows].any()
    assert batch["appearance"].abs().sum(dim=(1, 2, 3)).ne(0).sum() == len(batch["appearance"]) - 1
    bundle.close()


def test_every_test_question_is_scored_and_the_report_counts_the_zero_feature_ones(runs, tmp_path):
    root, data, _, total = runs
    run_dir = root / "results/every_epoch"
    results = json.loads((run_dir / "test_results.json").read_text())
    assert results["count"] == total
    assert results["scoring"]["zero_feature_questions"] == len(WITHOUT_FEATURES)
    assert results["scoring"]["excluded_questions"] == 0
    assert f"{len(WITHOUT_FEATURES)} answered from all-zero features" in (run_dir / "test_results.md").read_text()
    assert f"{len(WITHOUT_FEATURES)} answered from all-zero features" in (run_dir / "train.log").read_text()

    preds_path = tmp_path / "preds.json"
    out = validate.run(["--ckpt", str(run_dir / "best.pt"), "--write_preds", str(preds_path), "--json",
                        str(tmp_path / "out.json")])
    assert out["accuracy"]["count"] == total and out["accuracy"]["all"] == pytest.approx(results["all"])
    assert json.loads((tmp_path / "out.json").read_text())["scoring"]["zero_feature_questions"] == len(WITHOUT_FEATURES)
    records = {r["question_id"]: r for r in json.loads(preds_path.read_text())}
    assert len(records) == total
    expected = _zero_feature_predictions(run_dir / "best.pt", data)
    assert {qid: records[qid]["prediction"] for qid in expected} == {q: ANSWERS[p] for q, p in expected.items()}


def test_exclusion_gives_the_smaller_denominator_and_says_so(runs, tmp_path):
    root, _, _, total = runs
    run_dir = root / "results/exclude"
    results = json.loads((run_dir / "test_results.json").read_text())
    assert results["count"] == total - len(WITHOUT_FEATURES)
    assert results["scoring"]["excluded_questions"] == len(WITHOUT_FEATURES)
    markdown = (run_dir / "test_results.md").read_text()
    assert "EXCLUDES 5 of" in markdown and "EXCLUDING 5 questions" in markdown
    assert "EXCLUDES 5 of" in (run_dir / "train.log").read_text()

    out = validate.run(["--ckpt", str(root / "results/every_epoch/best.pt"), "eval.missing_features=exclude"])
    assert out["accuracy"]["count"] == total - len(WITHOUT_FEATURES)
    assert "EXCLUDING 5 questions" in out["table"] and "EXCLUDES" in out["scoring"]["note"]


def test_test_every_epoch_reports_the_test_selected_figure_beside_the_val_selected_one(runs):
    root, _, _, _ = runs
    run_dir = root / "results/every_epoch"
    rows = json.loads((run_dir / "metrics.json").read_text())
    test_accs = [r["test_acc"] for r in rows]
    assert len(test_accs) == 3 and all(isinstance(a, float) for a in test_accs)
    assert "test_acc" in (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    results = json.loads((run_dir / "test_results.json").read_text())
    # the val-selected figure is best.pt on test: the per-epoch test accuracy of the best val epoch
    assert results["all"] == pytest.approx(test_accs[results["best_epoch"] - 1])
    best = int(np.argmax(test_accs))
    assert results["test_selected"] == {"accuracy": pytest.approx(test_accs[best]), "epoch": best + 1,
                                        "label": TEST_SELECTED_LABEL}
    assert TEST_SELECTED_LABEL.capitalize() in (run_dir / "test_results.md").read_text()
    assert TEST_SELECTED_LABEL in (run_dir / "train.log").read_text()

    default = json.loads((root / "results/exclude/test_results.json").read_text())
    assert "test_selected" not in default  # off by default
    assert all(r["test_acc"] is None for r in json.loads((root / "results/exclude/metrics.json").read_text()))


def test_compare_shows_the_test_selected_column_when_the_runs_have_it(runs, tmp_path):
    root, _, _, _ = runs
    out = validate.run(["--compare", str(root / "results/every_epoch/best.pt"), str(root / "results/exclude/best.pt"),
                        "--names", "A", "B", "--out", str(tmp_path / "cmp.md")])
    header, _, row_a, row_b = out["markdown"]["table"].splitlines()
    assert header.endswith(f"| {TEST_SELECTED_COLUMN} |")
    selected = out["models"][0]["test_selected"]
    assert row_a.endswith(f"| {100 * selected['accuracy']:.2f} (epoch {selected['epoch']}) |")
    assert row_b.endswith("| - |") and out["models"][1]["test_selected"] is None
    text = (tmp_path / "cmp.md").read_text()
    assert TEST_SELECTED_LABEL in text and "answered from all-zero features" in text


# ---------------------------------------------------------------------------------------------- dropout per question
def _appearance_encoder_outputs(model, batch, share_video_dropout: bool, cfg) -> torch.Tensor:
    """The appearance encoder's output (rows, C, d) in one training step on ``batch``."""
    captured = []
    hook = model.appearance_encoder.register_forward_hook(lambda _m, _i, out: captured.append(out.detach()))
    ctx = StepContext(model=model, teacher=None, optimizer=torch.optim.SGD(model.parameters(), lr=0.0),
                      scaler=torch.amp.GradScaler("cuda", enabled=False), objective=objective_for(cfg, "teacher"),
                      device=torch.device("cpu"), amp_dtype=None, grad_clip=0.0,
                      share_video_dropout=share_video_dropout)
    model.train()
    train_step(ctx, batch)
    hook.remove()
    return captured[0]


def test_questions_on_one_video_get_their_own_dropout_masks_unless_shared():
    cfg = load_config(None)
    torch.manual_seed(0)
    model = build_model(EasyDict(TINY_MODEL, dropout=cfg.model.dropout), 16, 8)
    video = torch.randn(1, CLIPS, FRAMES, VISION_DIM)
    batch = {"appearance": video, "motion": torch.randn(1, CLIPS, VISION_DIM),
             "question": torch.tensor([[2, 7, 8, 9], [3, 8, 15, 0]]), "question_len": torch.tensor([4, 3]),
             "answer": torch.tensor([2, 3]), "video_index": torch.tensor([0, 0]), "question_index": torch.arange(2)}
    per_question = _appearance_encoder_outputs(model, batch, False, cfg)
    assert per_question.shape[0] == 2 and not torch.allclose(per_question[0], per_question[1])
    shared = _appearance_encoder_outputs(model, batch, True, cfg)
    assert shared.shape[0] == 1  # one encoding (one set of masks) for both questions
    # evaluation (no dropout): encoding the video once or per question gives the same outputs
    model.eval()
    with torch.no_grad():
        once = model(*model_inputs(batch)).logits
        each = model(*model_inputs(batch, per_question_videos=True)).logits
    torch.testing.assert_close(once, each, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("questions_per_video, shared", [(0, False), (2, True)])
def test_training_shares_masks_only_with_questions_per_video(runs, monkeypatch, questions_per_video, shared):
    root, _, cfg, _ = runs
    contexts = []
    real = trainer.StepContext

    def recording(**kwargs):
        contexts.append(real(**kwargs))
        return contexts[-1]
    monkeypatch.setattr(trainer, "StepContext", recording)
    run_training(load_config(cfg, [f"exp_name=qpv{questions_per_video}", "train.max_epochs=1",
                                   f"dataset.questions_per_video={questions_per_video}"]))
    assert [c.share_video_dropout for c in contexts] == [shared]
