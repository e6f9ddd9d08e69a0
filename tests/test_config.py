"""Config loading: inheritance, overrides, and rejection of unknown keys, wrong types and out-of-range values."""
import re

import pytest

from training.run_checks import flatten
from utils.config import RANGES, REPO_ROOT, ConfigError, to_dict
from training.run_schema import load_config, save_config


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


@pytest.mark.parametrize("override, key", [
    ("train.batch_size=0", "train.batch_size"),
    ("train.batch_size=-4", "train.batch_size"),
    ("model.graph_layers=0", "model.graph_layers"),
    ("model.unit_layers=0", "model.unit_layers"),
    ("model.mfb_factor=0", "model.mfb_factor"),
    ("model.mfb_dim=-1", "model.mfb_dim"),
    ("model.module_dim=0", "model.module_dim"),
    ("model.module_dim=63", "model.module_dim"),
    ("model.word_dim=0", "model.word_dim"),
    ("model.vision_dim=0", "model.vision_dim"),
    ("model.num_heads=0", "model.num_heads"),
    ("model.num_heads=5", "model.num_heads"),  # does not divide module_dim 768
    ("model.dropout.word=1.0", "model.dropout.word"),
    ("model.dropout.classifier=-0.1", "model.dropout.classifier"),
    ("model.dropout.gat=.nan", "model.dropout.gat"),
    ("dataset.num_workers=-1", "dataset.num_workers"),
    ("dataset.questions_per_video=-2", "dataset.questions_per_video"),
    ("train.lr=.nan", "train.lr"),
    ("train.lr=.inf", "train.lr"),
    ("train.lr=0", "train.lr"),
    ("train.lr=-1e-4", "train.lr"),
    ("train.max_epochs=0", "train.max_epochs"),
    ("train.grad_clip=-1", "train.grad_clip"),
    ("train.lr_decay_every=-1", "train.lr_decay_every"),
    ("train.lr_decay_factor=0", "train.lr_decay_factor"),
    ("distill.temperature_appearance=0", "distill.temperature_appearance"),
    ("distill.temperature_motion=-0.7", "distill.temperature_motion"),
    ("distill.temperature_motion=.nan", "distill.temperature_motion"),
    ("distill.lambda_appearance=-1", "distill.lambda_appearance"),
    ("distill.lambda_motion=.nan", "distill.lambda_motion"),
    ("train.alpha=-100", "train.alpha"),
    ("train.beta=.nan", "train.beta"),
])
def test_out_of_range_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=rf"config key '{re.escape(key)}' must .*got") as error:
        load_config("configs/msvd_qa_teacher.yml", [override])
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("override", ["train.grad_clip=0", "model.dropout.word=0", "train.beta=0",
                                      "dataset.questions_per_video=0", "distill.lambda_motion=0"])
def test_boundary_values_are_accepted(override):
    load_config("configs/msvd_qa_teacher.yml", [override])


def test_every_range_rule_names_a_known_key():
    flat = flatten(to_dict(load_config(None)))
    for key in RANGES:
        prefix = key[:-1] if key.endswith("*") else None
        assert (prefix and any(k.startswith(prefix) for k in flat)) or key in flat, key


def test_out_of_range_flag_exits_2_before_any_data_is_read(tmp_path, capsys):
    import train
    cfg = load_config(None, ["dataset.data_dir=" + str(tmp_path / "no_data"), "device=cpu"])
    save_config(cfg, tmp_path / "c.yml")
    assert train.main(["--cfg", str(tmp_path / "c.yml"), "--graph_layers", "0",
                       "dataset.save_dir=" + str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err.strip()
    assert "model.graph_layers" in err and "no_data" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "results").exists()


def test_demo_student_is_the_demo_teacher_with_one_graph_layer():
    teacher = load_config("configs/demo.yml")
    student = load_config("configs/demo_student.yml")
    assert teacher.model.graph_layers == 4 and student.model.graph_layers == 1 and student.exp_name == "student"
    assert student.dataset == teacher.dataset and student.train == teacher.train
    assert teacher.dataset.questions_per_video > 0  # video-grouped batches: the demo's CPU speed option


CONFIG_FILES = sorted(p.name for p in (REPO_ROOT / "configs").glob("*.yml"))
# config file -> (dataset, task, head, file prefix, teacher config it distils from or None)
DATASET_CONFIGS = {
    "svqa_teacher.yml": ("svqa", None, "open_ended", "svqa", None),
    "svqa_student.yml": ("svqa", None, "open_ended", "svqa", "svqa_teacher.yml"),
    "nextqa_teacher.yml": ("nextqa", None, "multiple_choice", "nextqa", None),
    "nextqa_student.yml": ("nextqa", None, "multiple_choice", "nextqa", "nextqa_teacher.yml"),
    **{f"tgif_qa_{task}_{role}.yml": ("tgif-qa", task, head, f"tgif-qa_{task}",
                                      f"tgif_qa_{task}_teacher.yml" if role == "student" else None)
       for task, head in (("action", "multiple_choice"), ("transition", "multiple_choice"), ("count", "count"),
                          ("frameqa", "open_ended"))
       for role in ("teacher", "student")},
}


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_every_config_loads_and_resolves(name):
    from preprocess.datasets.files import data_dir, dataset_path, dataset_spec
    from training.run_settings import resolve_head
    cfg = load_config(f"configs/{name}")
    spec = dataset_spec(cfg)
    assert cfg.model.head == spec.answer_type == resolve_head(cfg)
    for key in ("vocab_json", "train_question_pt", "appearance_feat", "motion_feat"):
        assert dataset_path(cfg, key).parent == data_dir(cfg), key


def test_every_dataset_has_its_configs():
    assert set(DATASET_CONFIGS) <= set(CONFIG_FILES)


@pytest.mark.parametrize("name", sorted(DATASET_CONFIGS))
def test_dataset_configs_derive_the_dataset_files(name):
    from preprocess.datasets.files import dataset_path
    dataset, task, head, prefix, teacher = DATASET_CONFIGS[name]
    cfg = load_config(f"configs/{name}")
    assert (cfg.dataset.name, cfg.dataset.question_type, cfg.model.head) == (dataset, task, head)
    expected = {"vocab_json": f"{prefix}_vocab.json", "train_question_pt": f"{prefix}_train_questions.pt",
                "val_question_pt": f"{prefix}_val_questions.pt", "test_question_pt": f"{prefix}_test_questions.pt",
                "appearance_feat": f"{prefix}_appearance_feat.h5", "motion_feat": f"{prefix}_motion_feat.h5"}
    for key, file_name in expected.items():
        assert dataset_path(cfg, key).relative_to(REPO_ROOT).as_posix() == f"data/{dataset}/{file_name}", key
    assert ("mse" in cfg.losses and "ce" not in cfg.losses) == (head == "count")
    if teacher is None:
        assert cfg.model.graph_layers == 4 and cfg.train.mode == "teacher" and cfg.distill.teacher_ckpt is None
        assert cfg.exp_name == name[:-4]
    else:
        teacher_cfg = load_config(f"configs/{teacher}")
        assert cfg.model.graph_layers == 1 and cfg.train.mode == "kd" and cfg.exp_name == teacher_cfg.exp_name[
            :-len("teacher")] + "student_kd"
        assert cfg.distill.teacher_ckpt == f"results/{teacher_cfg.exp_name}/best.pt"
        assert cfg.dataset == teacher_cfg.dataset and cfg.train.batch_size == teacher_cfg.train.batch_size
    if dataset == "svqa":  # DualVGR's configs/svqa_DualVGR_20.yml
        assert (cfg.train.batch_size, cfg.train.lr, cfg.train.max_epochs) == (256, 1e-4, 25)
