"""The README's recipes: a model or a loss term in a module named in MODEL_MODULES / LOSS_MODULES is found when the
config names it (the module is imported on the first look-up), and the registry a model module imports loads no
torch (every command sets the OpenMP policy before torch loads)."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from model import losses, registry
from training.run_schema import load_config

REPO_ROOT = Path(__file__).resolve().parent.parent

MODEL_MODULE = '''
from dataclasses import dataclass
from typing import NamedTuple

from model.registry import register_model


@dataclass
class ListedConfig:
    width: int = 3


class ListedOutput(NamedTuple):
    logits: object


@register_model("listed_toy", config=ListedConfig, outputs=ListedOutput)
def build(config, num_question_tokens, num_answers):
    import torch
    return torch.nn.Linear(config.width, num_answers)
'''

LOSS_MODULE = '''
from model.losses import register_loss


@register_loss("listed_term", student=("logits",))
def listed_term(params, student, answers, teacher):
    return student.logits.float().mean()
'''


@pytest.fixture
def module_dir(tmp_path, monkeypatch):
    """A folder on sys.path for the user's module; what it registers and imports is removed afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("listed_toy_model", "listed_toy_loss"):
        sys.modules.pop(name, None)
    registry._MODELS.pop("listed_toy", None)
    losses._TERMS.pop("listed_term", None)


def test_a_model_in_a_listed_module_is_found_by_its_config_name(module_dir, monkeypatch):
    (module_dir / "listed_toy_model.py").write_text(MODEL_MODULE)
    with pytest.raises(Exception, match="unknown model 'listed_toy'"):
        load_config(None, ["model.name=listed_toy"])
    monkeypatch.setattr(registry, "MODEL_MODULES", (*registry.MODEL_MODULES, "listed_toy_model"))
    cfg = load_config(None, ["model.name=listed_toy", "model.width=5"])
    assert cfg.model.name == "listed_toy" and cfg.model.width == 5
    assert registry.build_model(cfg.model, 10, 7).weight.shape == (7, 5)


def test_a_loss_term_in_a_listed_module_is_found_by_its_config_name(module_dir, monkeypatch):
    (module_dir / "listed_toy_loss.py").write_text(LOSS_MODULE)
    with pytest.raises(Exception, match="unknown loss term 'listed_term'"):
        load_config(None, ["losses.listed_term.weight=0.5"])
    monkeypatch.setattr(losses, "LOSS_MODULES", (*losses.LOSS_MODULES, "listed_toy_loss"))
    assert load_config(None, ["losses.listed_term.weight=0.5"]).losses.listed_term == {"weight": 0.5}


def test_registering_a_model_loads_no_torch():
    code = textwrap.dedent("""
        import sys
        from model.registry import register_model  # what a model module imports to register itself
        import model
        print("torch" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
