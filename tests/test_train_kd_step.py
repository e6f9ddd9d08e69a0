"""One distillation step: the KD terms reach the student's gradient, the frozen teacher gets none."""
import copy

import numpy as np
import pytest
import torch
from easydict import EasyDict

from model import build_model
from model.losses import build_objective
from train_fixtures import TINY_MODEL, write_config, write_tiny_dataset
from training.data import load_data
from training.engine import StepContext, train_step
from training.run_schema import load_config

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("kd_step")
    data = write_tiny_dataset(root / "data")
    cfg = load_config(write_config(root / "tiny.yml", data, root / "results"))
    bundle = load_data(cfg, splits=("train",))
    batch = bundle.dataset("train")[np.arange(12)]
    torch.manual_seed(0)
    teacher = build_model(EasyDict(TINY_MODEL, dropout=cfg.model.dropout, graph_layers=3), 16, 8)
    teacher.requires_grad_(False).eval()
    torch.manual_seed(1)
    student = build_model(EasyDict(TINY_MODEL, dropout=cfg.model.dropout, graph_layers=1), 16, 8)
    return cfg, batch, teacher, student


def _step(cfg, batch, student, teacher=None, lambdas=(1.0, 1.0), grad_clip=None):
    """A copy of ``student`` after one Adam step on ``batch`` (same dropout stream every call); its .grad
    attributes hold that step's gradients."""
    student = copy.deepcopy(student)
    distill = {name: dict(params, weight=weight) for (name, params), weight in zip(cfg.distill.losses.items(), lambdas)}
    objective = build_objective(cfg.losses, distill, teacher_given=teacher is not None)
    ctx = StepContext(model=student, teacher=teacher, optimizer=torch.optim.Adam(student.parameters(), lr=1e-2),
                      scaler=torch.amp.GradScaler("cuda", enabled=False), objective=objective,
                      device=torch.device("cpu"),
                      amp_dtype=None, grad_clip=cfg.train.grad_clip if grad_clip is None else grad_clip)
    student.train()
    torch.manual_seed(123)
    losses, _ = train_step(ctx, batch)
    return student, losses


def test_zero_kd_weights_give_the_plain_student_update(parts):
    cfg, batch, teacher, student = parts
    plain, plain_losses = _step(cfg, batch, student)
    zero_kd, kd_losses = _step(cfg, batch, student, teacher, lambdas=(0.0, 0.0))
    assert kd_losses["kd_motion"].item() > 0 and plain_losses["kd_motion"].item() == 0
    for (name, a), b in zip(plain.named_parameters(), zero_kd.parameters()):
        assert torch.allclose(a, b, rtol=0, atol=1e-7), name


def test_kd_weights_change_the_update_and_leave_the_teacher_alone(parts):
    cfg, batch, teacher, student = parts
    before = copy.deepcopy(teacher.state_dict())
    plain, _ = _step(cfg, batch, student, grad_clip=0.0)  # no clipping: gradients compare part by part
    for lambdas, reached, untouched in (((1.0, 0.0), "appearance_encoder", "motion_encoder"),
                                        ((0.0, 1.0), "motion_encoder", "appearance_encoder")):
        distilled, _ = _step(cfg, batch, student, teacher, lambdas=lambdas, grad_clip=0.0)
        changed = {name.split(".")[0] for (name, a), b in zip(plain.named_parameters(), distilled.parameters())
                   if not torch.allclose(a.grad, b.grad, rtol=1e-5, atol=1e-9)}
        moved = any(not torch.equal(a, b) for a, b in zip(plain.parameters(), distilled.parameters()))
        # L_a acts on V_a (appearance encoder + units), L_m on V_m; neither reaches the MFB or the classifier
        assert moved and reached in changed and "units" in changed and "question_encoder" in changed
        assert untouched not in changed and "classifier" not in changed and "mfb" not in changed
    assert all(p.grad is None for p in teacher.parameters()) and not teacher.training
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
