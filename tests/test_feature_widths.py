"""Appearance and motion features of different widths (e.g. EfficientNet-Lite0's 1280 beside a 2048-d motion
stream): each stream's width comes from its feature file (model.appearance_dim / motion_dim null), is stored in the
checkpoints, and a stated width that does not match the file stops with the key's name. No zero-padding anywhere."""
import h5py
import pytest

import train
import validate
from train_fixtures import write_config, write_tiny_dataset
from training.checkpoint import load_checkpoint

pytestmark = pytest.mark.usefixtures("single_thread")
APPEARANCE_DIM, MOTION_DIM = 12, 7   # the tiny dataset's colour signal is in dims 0-2, its direction in dims 3-5


def narrow(path, key: str, width: int) -> None:
    """Keep the first ``width`` feature dimensions of an HDF5 feature file."""
    with h5py.File(path, "r+") as f:
        features = f[key][..., :width]
        del f[key]
        f.create_dataset(key, data=features)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, single_thread):
    root = tmp_path_factory.mktemp("widths")
    data = write_tiny_dataset(root / "data")
    narrow(data.appearance_path, "resnet_features", APPEARANCE_DIM)
    narrow(data.motion_path, "resnext_features", MOTION_DIM)
    cfg = write_config(root / "tiny.yml", data, root / "results", train={"max_epochs": 1})
    teacher = train.run(["--cfg", str(cfg), "--exp_name", "teacher"])
    student = train.run(["--cfg", str(cfg), "--exp_name", "student_kd", "--graph_layers", "1", "train.mode=kd",
                         "--teacher_ckpt", str(root / "results/teacher/best.pt")])
    return {"root": root, "cfg": cfg, "teacher": teacher, "student": student}


def test_each_stream_takes_its_files_width(runs):
    for name in ("teacher", "student_kd"):
        ckpt = load_checkpoint(runs["root"] / f"results/{name}/best.pt", "test")
        assert ckpt["model_config"]["appearance_dim"] == APPEARANCE_DIM
        assert ckpt["model_config"]["motion_dim"] == MOTION_DIM
        assert ckpt["appearance_dim"] == APPEARANCE_DIM and ckpt["motion_dim"] == MOTION_DIM
        state = ckpt["model"]
        assert state["appearance_encoder.lstm.weight_ih_l0"].shape[1] == APPEARANCE_DIM
        assert [t.shape[1] for k, t in state.items() if k.startswith("motion_encoder") and t.dim() == 2] == [MOTION_DIM]
    result = validate.run(["--ckpt", str(runs["root"] / "results/student_kd/best.pt"), "--split", "test"])
    assert result["accuracy"]["all"] == pytest.approx(runs["student"]["test"]["all"])


def test_a_stated_width_that_differs_from_the_file_names_the_key(runs, capsys):
    code = train.main(["--cfg", str(runs["cfg"]), "--exp_name", "wrong", f"model.motion_dim={MOTION_DIM + 1}"])
    err = capsys.readouterr().err
    assert code == 2 and f"model.motion_dim is {MOTION_DIM + 1}" in err and f"{MOTION_DIM}-d" in err
    assert not (runs["root"] / "results/wrong/last.pt").exists()
    assert train.main(["--cfg", str(runs["cfg"]), "--exp_name", "bad", "model.appearance_dim=0"]) == 2
    assert "model.appearance_dim" in capsys.readouterr().err


def test_a_model_built_without_the_keys_uses_vision_dim_for_both():
    from model import build_model
    from train_fixtures import TINY_MODEL
    from training.run_schema import load_config
    cfg = load_config(None, [f"model.{k}={v}" for k, v in TINY_MODEL.items()])
    model = build_model(cfg.model, 20, 5)
    assert model.appearance_dim == model.motion_dim == TINY_MODEL["vision_dim"]
    cfg.model.motion_dim = 5
    model = build_model(cfg.model, 20, 5)
    assert (model.appearance_dim, model.motion_dim) == (TINY_MODEL["vision_dim"], 5)
    widths = {k: t.shape[1] for k, t in model.state_dict().items() if t.dim() == 2 and k.startswith("motion_encoder")}
    assert list(widths.values()) == [5], widths
