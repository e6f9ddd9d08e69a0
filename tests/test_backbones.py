"""The backbone registry: a backbone registered in this file extracts through preprocess_features untouched, with its
own feature width and settings recorded in the file; the built-in ones are listed without being imported."""
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from preprocess.backbones import Backbone, backbone_names, get_backbone, register_backbone
from preprocess.preprocess_features import main as extract_main
from preprocess.video import decode_clips, encode_video

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.usefixtures("single_thread")


class MeanColour(nn.Module):
    """(N, 3, h, w) -> (N, 3): each channel's mean."""

    def forward(self, x):
        return x.mean(dim=(2, 3))


class MeanAbsoluteChange(nn.Module):
    """(N, 3, T, h, w) -> (N, 2): mean |frame t+1 - frame t| and mean value."""

    def forward(self, x):
        return torch.stack([(x[:, :, 1:] - x[:, :, :-1]).abs().mean(dim=(1, 2, 3, 4)), x.mean(dim=(1, 2, 3, 4))], 1)


@register_backbone
class ToyColour(Backbone):
    name = "toy_colour"
    kind = "appearance"
    feature_dim = 3
    input_size = (16, 16)
    input_modes = {"unit": ((0.0, 0.0, 0.0), (255.0, 255.0, 255.0), "RGB/255")}
    weights_file = None
    bn_recalibration = False

    def build_network(self, size):
        return MeanColour()


@register_backbone
class ToyChange(Backbone):
    name = "toy_change"
    kind = "motion"
    feature_dim = 2
    input_size = (16, 16)
    conv_dims = 3
    input_modes = {"raw": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "RGB 0-255"),
                   "centred": ((128.0, 128.0, 128.0), (1.0, 1.0, 1.0), "RGB 0-255 minus 128")}
    bn_recalibration = False

    def build_network(self, size):
        return MeanAbsoluteChange()


def moving_square(num_frames: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frames = np.broadcast_to(rng.integers(0, 200, 3, dtype=np.uint8), (num_frames, 32, 32, 3)).copy()
    for t in range(num_frames):
        frames[t, 8:16, (2 * t) % 24:(2 * t) % 24 + 8] = 255
    return frames


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    (root / "YouTubeClips").mkdir()
    for video_id in (1, 2):
        encode_video(root / "YouTubeClips" / f"v{video_id}.avi", moving_square(20, video_id))
    (root / "youtube_mapping.txt").write_text("v1 vid1\nv2 vid2\n")
    for split, ids in {"train": [1], "val": [2], "test": [2]}.items():
        (root / f"{split}_qa.json").write_text(str([{"answer": "x", "id": i, "question": "what is it?",
                                                     "video_id": v} for i, v in enumerate(ids)]).replace("'", '"'))
    return root


def extract(dataset: Path, out: Path, model: str, *extra: str) -> tuple[dict, dict]:
    assert extract_main(["--dataset", "msvd-qa", "--dataset_dir", str(dataset), "--model", model, "--random_init",
                         "--num_clips", "2", "--num_frames", "3", "--image_height", "32", "--image_width", "32",
                         "--num_workers", "0", "--device", "cpu", "--out", str(out), *extra]) == 0
    with h5py.File(out, "r") as f:
        return {name: f[name][:] for name in f}, dict(f.attrs)


def test_a_backbone_registered_in_a_test_file_extracts_through_preprocess_features(dataset, tmp_path):
    data, attrs = extract(dataset, tmp_path / "app.h5", "toy_colour")
    assert data["resnet_features"].shape == (2, 2, 3, 3)  # (videos, C, F, D = 3): the backbone's own width
    assert attrs["model"] == "toy_colour" and attrs["kind"] == "appearance" and attrs["feature_dim"] == 3
    assert attrs["normalisation"] == "RGB/255" and attrs["frame_sampling"].startswith("every frame")
    assert not attrs["bn_recalibrated"] and attrs["weights"] == "random_init"
    for row, video_id in enumerate((1, 2)):  # each frame's channel means of the decoded pixels / 255
        clips = decode_clips(dataset / "YouTubeClips" / f"v{video_id}.avi", 2, 3).clips()  # (2, 3, 32, 32, 3)
        np.testing.assert_allclose(data["resnet_features"][row], clips.astype(np.float64).mean(axis=(2, 3)) / 255,
                                   rtol=1e-5)

    data, attrs = extract(dataset, tmp_path / "motion.h5", "toy_change", "--motion_input", "centred")
    assert data["resnext_features"].shape == (2, 2, 2) and attrs["feature_dim"] == 2 and attrs["kind"] == "motion"
    assert attrs["motion_input"] == "centred" and attrs["normalisation"] == "RGB 0-255 minus 128"
    clips = decode_clips(dataset / "YouTubeClips" / "v1.avi", 2, 3).clips().astype(np.float64)
    change = np.abs(np.diff(clips, axis=1)).mean(axis=(1, 2, 3, 4))
    np.testing.assert_allclose(data["resnext_features"][0], np.stack([change, clips.mean(axis=(1, 2, 3, 4)) - 128], 1),
                               rtol=1e-5)


def test_unknown_names_and_input_modes_are_refused(dataset, tmp_path, capsys):
    assert "toy_colour" in backbone_names() and "resnet101" in backbone_names()
    with pytest.raises(ValueError, match="unknown backbone 'nope': expected one of .*resnet101"):
        get_backbone("nope")
    assert extract_main(["--dataset", "msvd-qa", "--dataset_dir", str(dataset), "--model", "toy_change",
                         "--random_init", "--motion_input", "sideways", "--out", str(tmp_path / "m.h5")]) == 2
    assert "toy_change takes input normalisation raw, centred, got 'sideways'" in capsys.readouterr().err


def test_built_in_backbones_are_imported_on_first_use():
    code = ("import sys; import preprocess.backbones as b; names = b.backbone_names(); "
            "assert not any(m.startswith('preprocess.backbones.res') for m in sys.modules), sys.modules.keys(); "
            "r = b.get_backbone('resnext101'); assert r.kind == 'motion' and r.feature_dim == 2048; "
            "assert 'preprocess.backbones.resnet101' not in sys.modules; print(names)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "'resnet101', 'resnext101'" in result.stdout
