"""A dataset registered in this test file, with its configs written here, runs end to end without touching another
file: its layout (SVQA's synthetic one, under the toy dataset's own name) -> question files (preprocess_questions'
command line) -> features (preprocess_features') -> a teacher (train.py, one epoch, tiny model) -> validate.py."""
import json

import pytest
import torch
import yaml

import train
import validate
from layout_fixtures import DIM, write_glove
from preprocess.datasets import register_dataset
from preprocess.datasets.svqa import SVQA
from preprocess.preprocess_features import main as extract_main
from preprocess.preprocess_questions import main as questions_main
from preprocess.synthetic import write_synthetic
from utils.config import REPO_ROOT

pytestmark = pytest.mark.usefixtures("single_thread")


@register_dataset
class ToyQA(SVQA):
    """SVQA's layout and parsing under another name: a dataset no repository file lists."""
    name = "toy-qa"
    aliases = ("toyqa",)


TINY = ["model.module_dim=32", f"model.word_dim={DIM}", "model.num_heads=4", "model.mfb_factor=2", "model.mfb_dim=16",
        "train.batch_size=16", "train.max_epochs=1", "dataset.num_workers=0", "device=cpu"]
EXTRACT = ["--random_init", "--no_bn_recalibration", "--num_clips", "2", "--num_frames", "4", "--image_height", "32",
           "--image_width", "32", "--device", "cpu", "--num_workers", "0"]


def test_a_dataset_registered_in_a_test_file_runs_end_to_end(tmp_path):
    raw, data, results = tmp_path / "raw", tmp_path / "data", tmp_path / "results"
    write_synthetic("svqa", raw, num_videos=8)
    write_glove(tmp_path / "glove.pkl")
    assert questions_main(["--dataset", "toy-qa", "--dataset_dir", str(raw), "--glove_pt", str(tmp_path / "glove.pkl"),
                           "--output_dir", str(data)]) in (None, 0)
    for model, kind in (("resnet101", "appearance"), ("resnext101", "motion")):
        assert extract_main(["--dataset", "toyqa", "--dataset_dir", str(raw), "--model", model,
                             "--out", str(data / f"toy-qa_{kind}_feat.h5"), *EXTRACT]) == 0
    config = tmp_path / "toy_qa_teacher.yml"  # the dataset's own config; its files: the dataset's default names
    config.write_text(yaml.safe_dump({"_base_": str(REPO_ROOT / "configs" / "svqa_teacher.yml"),
                                      "exp_name": "toy_qa_teacher", "dataset": {"name": "toy-qa"}}))
    paths = [f"dataset.data_dir={data}", f"dataset.save_dir={results}"]
    assert train.main(["--cfg", str(config), *paths, *TINY]) == 0
    best = results / "toy_qa_teacher" / "best.pt"
    stored = torch.load(best, weights_only=True)
    assert stored["config"]["dataset"]["name"] == "toy-qa" and stored["model_config"]["head"] == "open_ended"
    out = tmp_path / "val.json"
    assert validate.main(["--compare", str(best), "--names", "Toy", "--json", str(out)]) == 0
    scored = json.loads(out.read_text())["models"][0]["scoring"]
    assert scored["questions_in_file"] == scored["questions_scored"] > 0
