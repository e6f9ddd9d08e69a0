"""Models by name: a model registered here, in the test file alone, is configured, checked, trained as a student
distilled from a DualVGR teacher of another architecture, checkpointed with its name and evaluated."""
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
import yaml
from torch import nn

import train
import validate
from model import build_model, register_model
from model.registry import architecture
from train_fixtures import write_config, write_tiny_dataset
from utils.config import ConfigError
from training.run_schema import load_config

pytestmark = pytest.mark.usefixtures("single_thread")
TEACHER = Path(__file__).parent / "fixtures" / "checkpoint_v1_teacher.pt"  # a DualVGR checkpoint, format 1


class ToyOutput(NamedTuple):
    logits: torch.Tensor       # (B, A)
    appearance: torch.Tensor   # (B, C, d)
    motion: torch.Tensor       # (B, C, d)


@dataclass
class ToyConfig:
    module_dim: int = 32
    vision_dim: int = 16
    scale: float = 1.0


class ToyModel(nn.Module):
    """Linear clip features, a bag of words, a linear classifier."""

    def __init__(self, config: ToyConfig, num_question_tokens: int, num_answers: int):
        super().__init__()
        self.appearance = nn.Linear(config.vision_dim, config.module_dim)
        self.motion = nn.Linear(config.vision_dim, config.module_dim)
        self.words = nn.EmbeddingBag(num_question_tokens, config.module_dim)
        self.classifier = nn.Linear(config.module_dim, num_answers)
        self.scale = config.scale

    def forward(self, appearance, motion, question, question_len, video_index=None):
        a, m = self.appearance(appearance.float().mean(2)), self.motion(motion.float())   # (N, C, d)
        if video_index is not None:
            a, m = a.index_select(0, video_index), m.index_select(0, video_index)
        logits = self.classifier(self.scale * (a + m).mean(1) * self.words(question))
        return ToyOutput(logits, a, m)


@register_model("toy_linear", config=ToyConfig, outputs=ToyOutput)
def build_toy(config: ToyConfig, num_question_tokens: int, num_answers: int) -> ToyModel:
    return ToyModel(config, num_question_tokens, num_answers)


def toy_config(path: Path, data, results: Path, **train_section) -> Path:
    write_config(path, data, results, exp_name="toy", train={"max_epochs": 1, **train_section})
    cfg = yaml.safe_load(path.read_text())
    cfg["model"] = {"name": "toy_linear", "glove": False, "module_dim": 32}
    cfg["losses"] = {"ce": {"weight": 1.0}, "similarity": None, "hsic": None}  # the toy has no graph layers
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_model_section_follows_the_named_models_typed_config():
    cfg = load_config(None, ["model.name=toy_linear", "model.scale=2"])
    assert cfg.model == {"name": "toy_linear", "glove": True, "cpu_fast_path": "auto", "module_dim": 32,
                         "vision_dim": 16, "scale": 2.0}
    with pytest.raises(ConfigError, match="model.graph_layers"):        # a DualVGR key, not the toy's
        load_config(None, ["model.name=toy_linear", "model.graph_layers=2"])
    with pytest.raises(ConfigError, match="model.module_dim"):
        load_config(None, ["model.name=toy_linear", "model.module_dim=wide"])
    with pytest.raises(ConfigError, match="unknown model 'toy_linaer'.*toy_linear"):
        load_config(None, ["model.name=toy_linaer"])
    assert isinstance(build_model(cfg.model, 10, 4), ToyModel)


def test_a_format_1_model_config_is_dualvgr():
    ckpt = torch.load(TEACHER, weights_only=True)
    assert "name" not in ckpt["model_config"]
    assert architecture(ckpt["model_config"])["name"] == "dualvgr"


def test_toy_student_distilled_from_a_dualvgr_teacher(tmp_path):
    data = write_tiny_dataset(tmp_path / "data")
    cfg = toy_config(tmp_path / "toy.yml", data, tmp_path / "results")
    summary = train.run(["--cfg", str(cfg), "--teacher_ckpt", str(TEACHER)])
    row = summary["history"][0]
    assert row["train_kd_appearance"] > 0 and row["train_kd_motion"] > 0 and "train_similarity" not in row
    best = torch.load(tmp_path / "results/toy/best.pt", weights_only=True)
    assert best["format_version"] == 2 and best["model_config"]["name"] == "toy_linear"
    result = validate.run(["--ckpt", str(tmp_path / "results/toy/best.pt"), "--split", "val"])
    toy = ToyModel(ToyConfig(), 16, 8)
    assert result["parameters"] == sum(p.numel() for p in toy.parameters())


def test_teacher_terms_need_the_dims_they_compare(tmp_path, capsys):
    data = write_tiny_dataset(tmp_path / "data")
    cfg = toy_config(tmp_path / "toy.yml", data, tmp_path / "results")
    assert train.main(["--cfg", str(cfg), "--teacher_ckpt", str(TEACHER), "model.module_dim=16"]) == 2
    assert "model.module_dim: checkpoint 32 vs this run 16" in capsys.readouterr().err
