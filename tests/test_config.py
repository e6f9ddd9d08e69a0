"""Config loading: inheritance, overrides, and rejection of unknown keys and wrong types."""
import pytest

from utils.config import ConfigError, load_config, save_config


def test_paper_configs_resolve():
    teacher = load_config("configs/msvd_qa_teacher.yml")
    student = load_config("configs/msvd_qa_student.yml")
    assert teacher.model.graph_layers == 4 and student.model.graph_layers == 1
    assert student.train.mode == "kd" and student.distill.temperature_motion == 0.7
    assert student.dataset.name == "msvd-qa"  # inherited through _base_
    rtt = load_config("configs/msrvtt_qa_student.yml")
    assert rtt.dataset.name == "msrvtt-qa" and rtt.distill.lambda_motion == 1.0
    assert load_config("configs/msrvtt_qa_teacher.yml").model.graph_layers == 6


def test_overrides_are_typed():
    cfg = load_config("configs/msvd_qa_teacher.yml", ["model.mfb_factor=2", "train.lr=3e-4", "train.alpha=1"])
    assert cfg.model.mfb_factor == 2
    assert cfg.train.lr == pytest.approx(3e-4) and isinstance(cfg.train.lr, float)
    assert isinstance(cfg.train.alpha, float)
    cfg = load_config(None, ["distill.teacher_ckpt=some/path.pt"])
    assert cfg.distill.teacher_ckpt == "some/path.pt"


@pytest.mark.parametrize("override, message", [
    ("model.mfb_factr=2", "model.mfb_factr"),
    ("modle.mfb_factor=2", "modle"),
    ("model.mfb_factor=two", "model.mfb_factor"),
    ("model.glove=1", "model.glove"),
    ("model=3", "'model' is a section"),
    ("train.lr", "KEY=VALUE"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("configs/msvd_qa_teacher.yml", [override])


def test_typo_in_file_names_key_and_file(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text("model:\n  graph_layer: 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yml.*model\.graph_layer"):
        load_config(path)


def test_saved_config_round_trips(tmp_path):
    cfg = load_config("configs/msvd_qa_student.yml", ["seed=3"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg


def test_demo_student_is_the_demo_teacher_with_one_graph_layer():
    teacher = load_config("configs/demo.yml")
    student = load_config("configs/demo_student.yml")
    assert teacher.model.graph_layers == 4 and student.model.graph_layers == 1 and student.exp_name == "student"
    assert student.dataset == teacher.dataset and student.train == teacher.train
    assert teacher.dataset.questions_per_video > 0  # video-grouped batches: the demo's CPU speed option
