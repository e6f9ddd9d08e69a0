"""Feature extraction end to end on tiny real videos in the MSVD-QA and MSRVTT-QA layouts, broken videos included.

Checks the HCRN/DualVGR HDF5 layout, the valid mask and failure report, features against an independent computation,
resuming after a hard kill, refusal of changed settings, and shards + merge equal to one run.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import av
import h5py
import numpy as np
import pytest
import torch
import torchvision
from PIL import Image, ImageFilter

from preprocess.backbones import build_extractor, recalibrate_batchnorm, resize_frames
from preprocess.backbones.resnet101 import IMAGENET_MEAN, IMAGENET_STD
from preprocess.backbones.resnext101 import KINETICS_MEAN
from preprocess.datasets import list_videos
from preprocess.merge_features import MergeError, merge
from preprocess.preprocess_features import main as extract_main
from preprocess.resnext3d import resnext101_3d
from preprocess.video import decode_clips, encode_video

REPO = Path(__file__).resolve().parent.parent
TINY = ["--image_height", "32", "--image_width", "32", "--num_frames", "4", "--device", "cpu"]


pytestmark = pytest.mark.usefixtures("single_thread")


def textured_frames(n: int, seed: int, height: int = 64, width: int = 64) -> np.ndarray:
    """uint8 (n, height, width, 3): a coloured background with a white square that moves one step per frame."""
    rng = np.random.default_rng(seed)
    frames = np.broadcast_to(rng.integers(0, 256, 3, dtype=np.uint8), (n, height, width, 3)).copy()
    for i in range(n):
        x = (3 * i) % 48
        frames[i, 20:36, x:x + 16] = 255
    return frames


def truncate_after_packets(path: Path, packets: int) -> None:
    """Cut a video file right after its first ``packets`` video packets (the header still claims every frame)."""
    with av.open(str(path)) as container:
        ends = [p.pos + p.size for p in container.demux(container.streams.video[0]) if p.size]
    path.write_bytes(path.read_bytes()[:ends[packets - 1]])


def write_qa(root: Path, split_ids: dict) -> None:
    for split, ids in split_ids.items():
        questions = [{"answer": "x", "id": i, "question": "what is it?", "video_id": v} for i, v in enumerate(ids)]
        (root / f"{split}_qa.json").write_text(json.dumps(questions))


# MSVD-QA: video_id -> (youtube name, what its file is). vid9 is mapped but no question uses it: not extracted.
# vid7 is 80x48, the others 64x64 (BatchNorm recalibration batches videos of different resolutions together).
MSVD_VIDEOS = {1: ("aaa_1_5", "ok 40"), 2: ("bbb_2_3", "ok 3"), 3: ("ccc_3_9", "truncated"), 4: ("ddd_4_1", "garbage"),
               5: ("eee_5_2", "empty"), 6: ("fff_6_7", "missing"), 7: ("ggg_7_7", "ok 25"), 9: ("iii_9_9", "ok 10")}
MSVD_VALID = [1, 1, 1, 0, 0, 0, 1, 0]  # ids 1..8; vid8 is asked about but absent from youtube_mapping.txt
MSVD_REASONS = {4: "not a video", 5: "empty file", 6: "missing file", 8: "missing file"}
MSVD_PARTIAL = {3: "partial: decoded 20 of 50 declared frames"}  # valid, but listed in the report


@pytest.fixture(scope="module")
def msvd_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("msvd")
    (root / "YouTubeClips").mkdir()
    for video_id, (name, kind) in MSVD_VIDEOS.items():
        path = root / "YouTubeClips" / f"{name}.avi"
        if kind.startswith("ok"):
            encode_video(path, textured_frames(int(kind.split()[1]), video_id, *([48, 80] if video_id == 7 else [])))
        elif kind == "truncated":
            encode_video(path, textured_frames(50, video_id))
            truncate_after_packets(path, 20)
        elif kind == "garbage":
            path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
        elif kind == "empty":
            path.write_bytes(b"")
    (root / "youtube_mapping.txt").write_text("".join(f"{name} vid{v}\n" for v, (name, _) in MSVD_VIDEOS.items()))
    write_qa(root, {"train": [1, 2, 3, 4, 1], "val": [5, 6, 8], "test": [7]})
    return root


@pytest.fixture(scope="module")
def msrvtt_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("msrvtt")
    (root / "TrainValVideo").mkdir()
    (root / "TestVideo").mkdir()
    for folder, video_id, n in [("TrainValVideo", 0, 30), ("TrainValVideo", 1, 12), ("TrainValVideo", 6513, 20),
                                ("TestVideo", 7010, 18)]:
        encode_video(root / folder / f"video{video_id}.mp4", textured_frames(n, video_id))
    write_qa(root, {"train": [0, 1], "val": [6513], "test": [7010, 7011]})  # video7011.mp4 does not exist
    return root


def shrink_to_32(frames: np.ndarray) -> torch.Tensor:
    """uint8 (N, 64, 64, 3) -> float (N, 3, 32, 32) 0-255: bicubic with antialiasing, rounded to integers."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    return torch.nn.functional.interpolate(x, size=(32, 32), mode="bicubic", antialias=True).clamp(0, 255).round()


def msvd_args(msvd_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["--dataset", "msvd", "--dataset_dir", str(msvd_dir), "--model", "resnet101", "--num_clips", "3",
            "--out", str(out), "--random_init", "--calibration_videos", "8", "--num_workers", "0", *TINY, *extra]


def read_file(path: Path) -> tuple[dict, dict]:
    """(datasets as arrays, attributes) of an HDF5 file."""
    with h5py.File(path, "r") as f:
        return {name: f[name][:] for name in f}, dict(f.attrs)


def assert_same_file(a: Path, b: Path) -> None:
    data_a, attrs_a = read_file(a)
    data_b, attrs_b = read_file(b)
    assert list(data_a) == list(data_b) and attrs_a.keys() == attrs_b.keys()
    for name in data_a:
        np.testing.assert_array_equal(data_a[name], data_b[name], err_msg=name)
    for key in attrs_a:
        assert attrs_a[key] == attrs_b[key], key


def test_dataset_listing(msvd_dir, msrvtt_dir):
    msvd = list_videos("msvd-qa", msvd_dir)
    assert [e.video_id for e in msvd] == list(range(1, 9))
    assert msvd[0].path == msvd_dir / "YouTubeClips" / "aaa_1_5.avi"
    msrvtt = list_videos("msrvtt", msrvtt_dir)
    assert [e.video_id for e in msrvtt] == [0, 1, 6513, 7010, 7011]
    assert msrvtt[2].path == msrvtt_dir / "TrainValVideo" / "video6513.mp4"
    assert msrvtt[3].path == msrvtt_dir / "TestVideo" / "video7010.mp4"
    assert msrvtt[4].path == msrvtt_dir / "TestVideo" / "video7011.mp4" and not msrvtt[4].path.exists()


def test_msvd_appearance_features_match_an_independent_computation(msvd_dir, tmp_path):
    torch.manual_seed(1)
    reference = torchvision.models.resnet101()
    torch.save(reference.state_dict(), tmp_path / "resnet101.pth")
    out = tmp_path / "app.h5"
    args = msvd_args(msvd_dir, out, "--num_workers", "1")
    args[args.index("--random_init")] = "--weights"
    args.insert(args.index("--weights") + 1, str(tmp_path / "resnet101.pth"))
    assert extract_main(args) == 0

    data, attrs = read_file(out)
    assert data["resnet_features"].shape == (8, 3, 4, 2048) and data["resnet_features"].dtype == np.float32
    assert data["ids"].tolist() == list(range(1, 9))
    assert data["valid"].tolist() == MSVD_VALID and data["done"].all()
    assert data["num_decoded_frames"].tolist() == [40, 3, 20, 0, 0, 0, 25, 0]  # vid3: 50 frames cut after 20
    assert attrs["model"] == "resnet101" and attrs["weights"] == "resnet101.pth" and not attrs["random_init"]
    assert len(attrs["weights_sha256"]) == 64 and not attrs["bn_recalibrated"] and attrs["complete"]
    assert (attrs["num_clips"], attrs["num_frames"], attrs["image_height"], attrs["image_width"]) == (3, 4, 32, 32)
    assert attrs["num_failed"] == 4 and attrs["num_partial"] == 1 and "ImageNet" in attrs["normalisation"]
    assert not data["resnet_features"][np.array(MSVD_VALID) == 0].any()  # failed rows are zeros, flagged invalid

    lines = (tmp_path / "app.h5.failed.tsv").read_text().splitlines()
    assert lines[0] == "video_id\tpath\treason\tstatus"
    report = {int(line.split("\t")[0]): line.split("\t") for line in lines[1:]}
    assert sorted(report) == sorted({**MSVD_REASONS, **MSVD_PARTIAL})
    for video_id, reason in MSVD_REASONS.items():
        assert report[video_id][2].startswith(reason) and report[video_id][3] == "failed"
    assert report[3][2:] == [MSVD_PARTIAL[3], "partial"]
    assert report[4][1] == str(msvd_dir / "YouTubeClips" / "ddd_4_1.avi")

    reference.fc = torch.nn.Identity()
    reference.eval()
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    for row, video_id in [(0, 1), (1, 2), (2, 3)]:  # a normal, a 3-frame and a truncated video
        clips = decode_clips(msvd_dir / "YouTubeClips" / f"{MSVD_VIDEOS[video_id][0]}.avi", 3, 4).clips()
        pixels = shrink_to_32(clips.reshape(12, 64, 64, 3))
        with torch.no_grad():
            expected = reference((pixels / 255 - mean) / std).reshape(3, 4, 2048).numpy()
        # float32 round-off of a 101-layer net at feature scale up to ~500: compare relative to that scale
        np.testing.assert_allclose(data["resnet_features"][row], expected, rtol=1e-4,
                                   atol=1e-5 * np.abs(expected).max())


def test_msrvtt_motion_features_match_an_independent_computation(msrvtt_dir, tmp_path):
    out = tmp_path / "motion.h5"
    assert extract_main(["--dataset", "msrvtt", "--dataset_dir", str(msrvtt_dir), "--model", "resnext101",
                         "--num_clips", "2", "--out", str(out), "--random_init", "--no_bn_recalibration",
                         "--seed", "3", "--num_workers", "0", *TINY]) == 0
    data, attrs = read_file(out)
    assert data["resnext_features"].shape == (5, 2, 2048)
    assert data["ids"].tolist() == [0, 1, 6513, 7010, 7011] and data["valid"].tolist() == [1, 1, 1, 1, 0]
    assert attrs["motion_input"] == "kinetics_mean" and attrs["weights"] == "random_init" and attrs["random_init"]
    assert not attrs["bn_recalibrated"]

    torch.manual_seed(3)
    reference = resnext101_3d().eval()
    clips = decode_clips(msrvtt_dir / "TestVideo" / "video7010.mp4", 2, 4).clips()  # (2, 4, 64, 64, 3)
    pixels = shrink_to_32(clips.reshape(8, 64, 64, 3)) - torch.tensor(KINETICS_MEAN).view(3, 1, 1)
    with torch.no_grad():
        expected = reference(pixels.reshape(2, 4, 3, 32, 32).transpose(1, 2)).numpy()
    np.testing.assert_allclose(data["resnext_features"][3], expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def test_resize_matches_pil_bicubic_when_shrinking():
    """HCRN/DualVGR resized with scipy's imresize, i.e. PIL bicubic; frames are normally shrunk to 224 or 112."""
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8))  # 240x320
    frame = np.array(Image.fromarray(smooth).filter(ImageFilter.GaussianBlur(2)))
    for height, width in [(224, 224), (112, 112), (32, 48)]:
        expected = np.asarray(Image.fromarray(frame).resize((width, height), Image.BICUBIC)).astype(int)
        ours = resize_frames(torch.from_numpy(frame)[None], (height, width))[0].permute(1, 2, 0).numpy()
        assert np.abs(ours - expected).max() <= 1, (height, width)
    assert torch.equal(resize_frames(torch.from_numpy(frame)[None], (240, 320))[0],  # same size: untouched
                       torch.from_numpy(frame).permute(2, 0, 1).float())


def test_bn_recalibration_makes_random_features_well_scaled():
    frames = torch.from_numpy(textured_frames(24, 0)[:, ::2, ::2].copy())  # (24, 32, 32, 3)
    extractor = build_extractor("resnet101", None, seed=0, size=(32, 32))
    with torch.no_grad():
        before = extractor(frames).abs().mean().item()
        assert recalibrate_batchnorm(extractor, frames.split(8)) == 24
        after = extractor(frames).abs().mean().item()
    assert before > 20 and 0.1 < after < 5, (before, after)
    assert not extractor.training


@pytest.fixture(scope="module")
def straight_run(msvd_dir, tmp_path_factory) -> Path:
    """One uninterrupted random-init run (BatchNorm recalibrated), decoding in a worker process."""
    out = tmp_path_factory.mktemp("straight") / "app.h5"
    assert extract_main(msvd_args(msvd_dir, out, "--num_workers", "1")) == 0
    return out


KILL_AFTER_3_VIDEOS = """
import os, sys
import torch
import preprocess.preprocess_features as extraction
torch.set_num_threads(1)  # as in this process: bit-identical features need the same thread count
extraction.FLUSH_INTERVAL_S = 0.0
commit, committed = extraction._RowWriter.commit, []
def commit_then_die(self):
    committed.extend(self.pending)
    commit(self)
    if len(committed) >= 3:
        os._exit(9)  # a hard kill: no cleanup, no file close
extraction._RowWriter.commit = commit_then_die
extraction.main(sys.argv[1:])
"""


def test_resume_after_a_hard_kill_equals_a_straight_run(msvd_dir, straight_run, tmp_path, capsys):
    out = tmp_path / "app.h5"
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_3_VIDEOS, *msvd_args(msvd_dir, out)], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == 9, killed.stderr
    with h5py.File(out, "r") as f:
        assert f["done"][:].tolist() == [1, 1, 1, 0, 0, 0, 0, 0] and not f.attrs["complete"]
    capsys.readouterr()
    assert extract_main(msvd_args(msvd_dir, out)) == 0
    assert "3 of 8 videos already done" in capsys.readouterr().err
    assert_same_file(out, straight_run)
    assert (tmp_path / "app.h5.failed.tsv").read_text() == Path(f"{straight_run}.failed.tsv").read_text()


def test_changed_settings_are_refused_unless_overwrite(msvd_dir, straight_run, tmp_path, capsys):
    out = tmp_path / "app.h5"
    out.write_bytes(straight_run.read_bytes())
    assert extract_main(msvd_args(msvd_dir, out, "--num_clips", "2")) == 2
    message = capsys.readouterr().err
    assert "num_clips: file has 3, this run 2" in message and "--overwrite" in message
    assert read_file(out)[0]["resnet_features"].shape[1] == 3  # untouched
    assert extract_main(msvd_args(msvd_dir, out, "--num_clips", "2", "--overwrite", "--limit", "1")) == 0
    data, attrs = read_file(out)
    assert data["resnet_features"].shape == (8, 2, 4, 2048) and data["done"].tolist() == [1] + [0] * 7
    assert not attrs["complete"]


def test_shards_merge_into_the_straight_run(msvd_dir, straight_run, tmp_path):
    out = tmp_path / "app.h5"
    for shard in ("0", "1"):
        assert extract_main(msvd_args(msvd_dir, out, "--shard", shard, "--num_shards", "2")) == 0
    shard0, shard1 = tmp_path / "app.shard0of2.h5", tmp_path / "app.shard1of2.h5"
    assert read_file(shard0)[0]["ids"].tolist() == [1, 3, 5, 7] and read_file(shard1)[0]["ids"].tolist() == [2, 4, 6, 8]
    merged = subprocess.run([sys.executable, "preprocess/merge_features.py", "--inputs",  # script mode, a glob
                             str(tmp_path / "app.shard*of2.h5")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert merged.returncode == 0, merged.stderr
    assert_same_file(out, straight_run)
    assert (tmp_path / "app.h5.failed.tsv").read_text() == Path(f"{straight_run}.failed.tsv").read_text()

    with pytest.raises(MergeError, match=r"missing shard\(s\) \[1\] of 2: expected .*app\.shard1of2\.h5"):
        merge([shard0], tmp_path / "merged.h5")
    partial = tmp_path / "partial" / "app.h5"
    assert extract_main(msvd_args(msvd_dir, partial, "--shard", "1", "--num_shards", "2", "--limit", "1")) == 0
    with pytest.raises(MergeError, match=r"shard 1 of 2 is incomplete \(1 of 4 videos done\)"):
        merge([shard0, tmp_path / "partial" / "app.shard1of2.h5"], tmp_path / "merged.h5")


def test_missing_weights_say_what_to_get_and_where(msvd_dir, tmp_path, capsys):
    args = msvd_args(msvd_dir, tmp_path / "app.h5")
    args[args.index("--random_init")] = "--weights"
    args.insert(args.index("--weights") + 1, str(tmp_path / "nowhere.pth"))
    assert extract_main(args) == 2
    message = capsys.readouterr().err
    assert "resnet101-63fe2227.pth" in message and os.path.join("data", "weights") in message
    assert "--random_init" in message and not (tmp_path / "app.h5").exists()


def test_extraction_script_runs_without_the_package_on_the_path():
    result = subprocess.run([sys.executable, "preprocess/preprocess_features.py", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=60,
                            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert result.returncode == 0 and "--shard" in result.stdout, result.stderr


def _partial_dataset(root: Path, with_partial: bool) -> Path:
    """MSVD layout: three good 64x64 videos (ids 1-3) and, if ``with_partial``, video 4: 24 frames declared, cut
    after its 4th packet (it decodes 4)."""
    (root / "YouTubeClips").mkdir(parents=True)
    names = {1: "good_1", 2: "good_2", 3: "good_3", 4: "cut_4"}
    for video_id in (1, 2, 3):
        encode_video(root / "YouTubeClips" / f"{names[video_id]}.avi", textured_frames(30, video_id))
    if with_partial:
        cut = root / "YouTubeClips" / f"{names[4]}.avi"
        encode_video(cut, 255 - textured_frames(24, 4))
        truncate_after_packets(cut, 4)
    ids = [1, 2, 3, 4] if with_partial else [1, 2, 3]
    (root / "youtube_mapping.txt").write_text("".join(f"{names[v]} vid{v}\n" for v in ids))
    write_qa(root, {"train": ids})
    return root


def test_partial_video_is_reported_and_kept_out_of_batchnorm_calibration(tmp_path, capsys):
    runs = {}
    for with_partial in (False, True):
        root = _partial_dataset(tmp_path / f"data_{with_partial}", with_partial)
        out = tmp_path / f"app_{with_partial}.h5"
        assert extract_main(msvd_args(root, out)) == 0
        runs[with_partial] = read_file(out)
    log = capsys.readouterr().err
    assert "video 4 (" in log and "partial: decoded 4 of 24 declared frames" in log and "1 partial" in log

    data, attrs = runs[True]
    assert data["valid"].tolist() == [1, 1, 1, 1] and data["num_decoded_frames"][3] == 4
    assert attrs["num_partial"] == 1 and attrs["num_failed"] == 0
    assert attrs["bn_calibration_ids"] in ("1,2,3", "1,3,2", "2,1,3", "2,3,1", "3,1,2", "3,2,1")
    assert attrs["bn_calibration_num_videos"] == 3
    report = (tmp_path / "app_True.h5.failed.tsv").read_text().splitlines()
    assert report[1].split("\t")[0] == "4" and report[1].split("\t")[2:] == [
        "partial: decoded 4 of 24 declared frames", "partial"]
    # The good videos' features do not depend on whether the partial video is in the dataset.
    np.testing.assert_allclose(data["resnet_features"][:3], runs[False][0]["resnet_features"], rtol=1e-4,
                               atol=1e-4 * np.abs(runs[False][0]["resnet_features"]).max())
