"""predict.py end to end on a tiny demo-style dataset: synthetic videos (preprocess.synthetic.msvd_qa) -> question files
-> features from two toy backbones registered here (16-d, random init) -> a teacher (g = 2) and a distilled student
(g = 1). Checked: the checkpoint records the feature files' extraction settings; stored questions get exactly
validate.py's answers (every test question, both checkpoints); a video re-extracted by predict.py gives the stored
features' answer; the pictures; every bad input (one line, exit code 2); the old checkpoint fixture with explicit
extraction flags."""
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

import predict
import train
import validate
from layout_fixtures import DIM, write_glove
from preprocess.backbones import Backbone, register_backbone
from preprocess.preprocess_features import main as extract_main
from preprocess.preprocess_questions import main as questions_main
from preprocess.synthetic.msvd_qa import SyntheticSpec, generate
from preprocess.video import encode_video
from train_fixtures import register_tiny_datasets, write_tiny_dataset
from training.data import read_extraction_settings

pytestmark = pytest.mark.usefixtures("single_thread")
FIXTURE = Path(__file__).parent / "fixtures" / "checkpoint_v1_teacher.pt"
WIDTH = 16
CLIPS, FRAMES = 3, 4


@register_backbone
class ToyAppearance(Backbone):
    """(N, 3, h, w) -> 2 x 2 average colours -> a seeded random Linear to 16-d."""
    name = "toy_appearance16"
    kind = "appearance"
    feature_dim = WIDTH
    input_size = (16, 16)
    input_modes = {"unit": ((0.0, 0.0, 0.0), (255.0, 255.0, 255.0), "RGB/255")}
    bn_recalibration = False

    def build_network(self, size):
        return nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(12, WIDTH))


@register_backbone
class ToyMotion(Backbone):
    """(N, 3, T, h, w) -> average colour of each half of the clip in time -> a seeded random Linear to 16-d."""
    name = "toy_motion16"
    kind = "motion"
    feature_dim = WIDTH
    input_size = (16, 16)
    conv_dims = 3
    input_modes = {"unit": ((0.0, 0.0, 0.0), (255.0, 255.0, 255.0), "RGB/255")}
    bn_recalibration = False

    def build_network(self, size):
        return nn.Sequential(nn.AdaptiveAvgPool3d((2, 1, 1)), nn.Flatten(), nn.Linear(6, WIDTH))


EXTRACT = ["--random_init", "--num_clips", str(CLIPS), "--num_frames", str(FRAMES), "--device", "cpu",
           "--num_workers", "0"]
TINY_MODEL = ["model.module_dim=32", f"model.word_dim={DIM}", f"model.vision_dim={WIDTH}", "model.num_heads=4",
              "model.mfb_factor=2", "model.mfb_dim=16", "train.batch_size=32", "train.max_epochs=6", "train.lr=3e-3",
              "dataset.num_workers=0", "device=cpu", "model.graph_layers=2"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The tiny dataset, its feature files and the two checkpoints."""
    root = tmp_path_factory.mktemp("predict")
    raw, data, results = root / "raw", root / "data", root / "results"
    generate(raw, SyntheticSpec(num_videos=16, frames=12, size=32, questions_per_video=8), show_progress=False)
    write_glove(root / "glove.pkl")
    assert questions_main(["--dataset", "msvd-qa", "--dataset_dir", str(raw), "--mode", "all", "--glove_pt",
                           str(root / "glove.pkl"), "--output_dir", str(data)]) in (None, 0)
    for backbone, kind in (("toy_appearance16", "appearance"), ("toy_motion16", "motion")):
        assert extract_main(["--dataset", "msvd-qa", "--dataset_dir", str(raw), "--model", backbone,
                             "--out", str(data / f"msvd-qa_{kind}_feat.h5"), *EXTRACT]) == 0
    paths = [f"dataset.data_dir={data}", f"dataset.save_dir={results}"]
    assert train.main(["--cfg", "configs/msvd_qa_teacher.yml", *paths, *TINY_MODEL]) == 0
    teacher = results / "msvd_qa_teacher" / "best.pt"
    assert train.main(["--cfg", "configs/msvd_qa_student.yml", f"distill.teacher_ckpt={teacher}", *paths,
                       *TINY_MODEL, "model.graph_layers=1"]) == 0
    return {"root": root, "raw": raw, "data": data, "teacher": teacher,
            "student": results / "msvd_qa_student_kd" / "best.pt"}


def test_checkpoint_records_extraction_settings(demo):
    ckpt = torch.load(demo["teacher"], weights_only=True)
    data = demo["data"]
    assert ckpt["extraction"] == read_extraction_settings(data / "msvd-qa_appearance_feat.h5",
                                                          data / "msvd-qa_motion_feat.h5")
    appearance = ckpt["extraction"]["appearance"]
    assert (appearance["model"], appearance["feature_dim"], appearance["num_clips"], appearance["num_frames"],
            appearance["random_init"]) == ("toy_appearance16", WIDTH, CLIPS, FRAMES, True)
    assert ckpt["extraction"]["motion"]["model"] == "toy_motion16"


def test_stored_questions_equal_validate(demo, tmp_path):
    """Every test question, teacher and student: predict.py --split test gives validate.py's prediction."""
    expected = {}
    for name in ("teacher", "student"):
        preds = tmp_path / f"{name}.json"
        assert validate.main(["--ckpt", str(demo[name]), "--write_preds", str(preds)]) == 0
        expected[name] = {r["question_id"]: r["prediction"] for r in json.loads(preds.read_text())}
    ids = sorted(expected["teacher"])
    assert len(ids) > 20
    assert all(len(set(predictions.values())) > 1 for predictions in expected.values())  # not a constant answer
    out = tmp_path / "answers.jsonl"
    assert predict.main(["--ckpt", str(demo["teacher"]), "--ckpt", str(demo["student"]), "--names", "teacher",
                         "student", "--split", "test", "--question_id", *map(str, ids), "--out", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["question_id"] for line in lines] == ids
    for line in lines:
        for answer in line["answers"]:
            assert answer["prediction"] == expected[answer["model"]][line["question_id"]], line


def stored_question(demo) -> dict:
    """One test question as the question file holds it (id, text from its tokens, video id) with its video's path."""
    records = demo.get("records")
    if records is None:
        preds = demo["root"] / "student_preds.json"
        assert validate.main(["--ckpt", str(demo["student"]), "--write_preds", str(preds)]) == 0
        records = demo["records"] = json.loads(preds.read_text())
    mapping = dict(line.split()[::-1] for line in (demo["raw"] / "youtube_mapping.txt").read_text().splitlines())
    record = records[0]
    name = mapping[f"vid{record['video_id']}"]
    return {"id": record["question_id"], "question": record["question"] + "?", "video_id": record["video_id"],
            "path": demo["raw"] / "YouTubeClips" / f"{name}.avi"}


def test_video_is_extracted_as_the_stored_features(demo, tmp_path, capsys):
    """The same video through predict.py's extraction: the same answer distribution as from the stored features."""
    question = stored_question(demo)
    out_video, out_stored = tmp_path / "video.jsonl", tmp_path / "stored.jsonl"
    assert predict.main(["--ckpt", str(demo["student"]), "--video", str(question["path"]), "--question",
                         question["question"], "--top_k", "50", "--out", str(out_video)]) == 0
    printed = capsys.readouterr().out
    assert question["question"].lower()[:-1] in printed.lower() or "Q:" in printed
    assert predict.main(["--ckpt", str(demo["student"]), "--split", "test", "--question_id", str(question["id"]),
                         "--top_k", "50", "--out", str(out_stored)]) == 0
    from_video = json.loads(out_video.read_text())["answers"][0]["top"]
    from_stored = json.loads(out_stored.read_text())["answers"][0]["top"]
    assert [a["answer"] for a in from_video] == [a["answer"] for a in from_stored]
    assert np.allclose([a["probability"] for a in from_video], [a["probability"] for a in from_stored], atol=1e-5)


@pytest.mark.parametrize("channels_last,fold_norms", [(False, False), (True, False), (True, True)])
def test_video_features_equal_the_stored_rows(demo, channels_last, fold_norms):
    """predict.py's extraction of a dataset video with the settings its checkpoint recorded gives the rows the
    preprocessing stored for it (the same code: backbone registry + preprocess_features.video_features)."""
    from inference.extraction import VideoExtractor
    question = stored_question(demo)
    settings = torch.load(demo["teacher"], weights_only=True)["extraction"]
    features = VideoExtractor(settings, torch.device("cpu"), channels_last=channels_last,
                              fold_norms=fold_norms)(question["path"])
    for kind, key, got in (("appearance", "resnet_features", features.appearance),
                           ("motion", "resnext_features", features.motion)):
        with h5py.File(demo["data"] / f"msvd-qa_{kind}_feat.h5", "r") as f:
            row = int(np.flatnonzero(f["ids"][:] == question["video_id"])[0])
            stored = f[key][row]
        assert got.shape == (1, *stored.shape)
        np.testing.assert_allclose(got[0].numpy(), stored, rtol=1e-5, atol=1e-6)
    assert features.frames.shape[0] == CLIPS


def test_explain_pictures(demo, tmp_path):
    question = stored_question(demo)
    directory = tmp_path / "explain"
    assert predict.main(["--ckpt", str(demo["teacher"]), "--ckpt", str(demo["student"]), "--names", "Teacher",
                         "Student-KD", "--video", str(question["path"]), "--question", question["question"],
                         "--explain", str(directory)]) == 0
    png = directory / f"{question['path'].stem}.png"
    page = png.with_suffix(".html").read_text()
    assert png.stat().st_size < 400_000
    assert "data:image/png;base64," in page and "Student-KD" in page and "<script" not in page
    assert predict.main(["--ckpt", str(demo["student"]), "--split", "test", "--question_id", str(question["id"]),
                         "--explain", str(directory)]) == 0
    assert (directory / f"test_q{question['id']}.png").is_file()


def run_bad(argv, capsys, expected: str):
    assert predict.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err


def test_bad_inputs(demo, tmp_path, capsys):
    question = stored_question(demo)
    ckpt = ["--ckpt", str(demo["student"])]
    ask = ["--question", "what is moving?"]
    run_bad([*ckpt, "--video", str(tmp_path / "absent.avi"), *ask], capsys, "file not found")
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"not a video at all" * 100)
    run_bad([*ckpt, "--video", str(broken), *ask], capsys, "cannot be decoded")
    short = tmp_path / "short.avi"
    encode_video(short, np.full((2, 32, 32, 3), 90, dtype=np.uint8))
    run_bad([*ckpt, "--video", str(short), *ask], capsys, "too short")
    run_bad([*ckpt, "--video", str(question["path"]), "--question", "  "], capsys, "empty")
    vocab = json.loads((demo["data"] / "msvd-qa_vocab.json").read_text())
    vocab["question_token_to_idx"]["zebra"] = len(vocab["question_token_to_idx"])
    other = tmp_path / "other_vocab.json"
    other.write_text(json.dumps(vocab))
    run_bad([*ckpt, "--vocab", str(other), "--video", str(question["path"]), *ask], capsys, "another vocabulary")
    # features of another backbone given beside a checkpoint that records its own
    app = tmp_path / "other_appearance.h5"
    shutil.copy(demo["data"] / "msvd-qa_appearance_feat.h5", app)
    with h5py.File(app, "r+") as f:
        f.attrs["model"] = "resnet101"
    run_bad([*ckpt, "--video", str(question["path"]), *ask, "--appearance_feat", str(app), "--motion_feat",
             str(demo["data"] / "msvd-qa_motion_feat.h5")], capsys, "appearance model: 'toy_appearance16' vs 'resnet101'")
    # extraction flags naming another backbone width than the checkpoint reads
    run_bad([*ckpt, "--video", str(question["path"]), *ask, "--appearance_model", "toy_appearance16",
             "--motion_model", "toy_motion16", "--random_init", "--num_clips", "5", "--num_frames", str(FRAMES)],
            capsys, "num_clips")


def test_rows_file_gives_json_lines(demo, tmp_path, capsys):
    question = stored_question(demo)
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"video": str(question["path"]), "question": question["question"]}) + "\n"
                    + json.dumps({"video": "absent.avi", "question": "what is it?"}) + "\n")
    out = tmp_path / "answers.jsonl"
    assert predict.main(["--ckpt", str(demo["student"]), "--rows", str(rows), "--out", str(out)]) == 2
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[0]["line"] == 1 and lines[0]["answers"][0]["prediction"]
    assert lines[1]["line"] == 2 and "file not found" in lines[1]["error"]
    assert "rows.jsonl:2" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"video": "a.avi"}\n')
    run_bad(["--ckpt", str(demo["student"]), "--rows", str(bad)], capsys, f"{bad}:1")


def test_old_checkpoint_needs_and_takes_extraction_flags(tmp_path, capsys):
    """The format-1 fixture records no extraction: predict.py asks for flags or feature files, and answers with
    explicit flags (toy backbones of the fixture's width, 4 clips x 4 frames) and from its stored features."""
    register_tiny_datasets()
    data = write_tiny_dataset(tmp_path / "data")
    video = tmp_path / "clip.avi"
    encode_video(video, np.random.default_rng(0).integers(0, 255, (12, 32, 32, 3), dtype=np.uint8))
    base = ["--ckpt", str(FIXTURE), "--override", f"dataset.data_dir={data.data_dir}", "--video", str(video),
            "--question", "what color is it?"]
    run_bad(base, capsys, "does not record how its features were extracted")
    flags = ["--appearance_model", "toy_appearance16", "--motion_model", "toy_motion16", "--random_init",
             "--num_clips", "4", "--num_frames", "4"]
    assert predict.main([*base, *flags]) == 0
    assert "  fixtures: " in capsys.readouterr().out  # the run folder names the model
    preds = tmp_path / "preds.json"
    assert validate.main(["--ckpt", str(FIXTURE), f"dataset.data_dir={data.data_dir}", "--write_preds",
                          str(preds)]) == 0
    records = json.loads(preds.read_text())
    out = tmp_path / "stored.jsonl"
    assert predict.main(["--ckpt", str(FIXTURE), "--override", f"dataset.data_dir={data.data_dir}", "--split",
                         "test", "--question_id", *[str(r["question_id"]) for r in records], "--out", str(out)]) == 0
    got = [json.loads(line)["answers"][0]["prediction"] for line in out.read_text().splitlines()]
    assert got == [r["prediction"] for r in records]


def test_typed_question_is_tokenised_as_the_question_files():
    """A question mark is added where missing, so the last word is kept; the files drop the question's last
    character (preprocess/text.py)."""
    from inference.questions import question_tokens
    from preprocess.text import tokenize_question
    assert question_tokens("What is the man doing?") == tokenize_question("What is the man doing?") \
        == ["what", "is", "the", "man", "doing"]
    assert question_tokens("what is the man doing") == ["what", "is", "the", "man", "doing"]
    assert question_tokens("  who moves first ?  ") == tokenize_question("who moves first ?")


@pytest.mark.parametrize("answer_type", ["multiple_choice", "count"])
def test_other_heads_stored_and_typed(answer_type, tmp_path, capsys):
    """Multiple choice and count: stored questions equal validate.py; a typed question (the tiny dataset's files
    record no extraction, so the flags give it: the toy backbones of its width, 4 clips x 4 frames) is answered with
    --candidates (their scores) or with a count."""
    from train_fixtures import write_config
    data = write_tiny_dataset(tmp_path / "data", answer_type=answer_type, file_categories=answer_type != "count")
    cfg = write_config(tmp_path / "tiny.yml", data, tmp_path / "results", answer_type=answer_type,
                       train={"max_epochs": 2})
    assert train.main(["--cfg", str(cfg)]) == 0
    ckpt = tmp_path / "results" / "tiny" / "best.pt"
    preds = tmp_path / "preds.json"
    assert validate.main(["--ckpt", str(ckpt), "--write_preds", str(preds)]) == 0
    records = json.loads(preds.read_text())
    out = tmp_path / "stored.jsonl"
    assert predict.main(["--ckpt", str(ckpt), "--split", "test", "--question_id",
                         *[str(r["question_id"]) for r in records], "--out", str(out)]) == 0
    got = [json.loads(line)["answers"][0]["prediction"] for line in out.read_text().splitlines()]
    assert got == [r["prediction"] for r in records]
    video = tmp_path / "clip.avi"
    encode_video(video, np.random.default_rng(0).integers(0, 255, (12, 32, 32, 3), dtype=np.uint8))
    typed = ["--ckpt", str(ckpt), "--video", str(video), "--question", "what color is it?", "--appearance_model",
             "toy_appearance16", "--motion_model", "toy_motion16", "--random_init", "--num_clips", "4",
             "--num_frames", "4", "--out", str(tmp_path / "typed.jsonl")]
    if answer_type == "multiple_choice":
        run_bad(typed + ["--candidates", "red", "blue"], capsys, "give exactly 5")
        typed += ["--candidates", "red", "green", "blue", "left", "up it"]
    assert predict.main(typed) == 0
    assert torch.is_grad_enabled()  # predict.main leaves the process's autograd state alone
    answer = json.loads((tmp_path / "typed.jsonl").read_text())["answers"][0]
    if answer_type == "multiple_choice":
        assert [c["candidate"] for c in answer["candidates"]] == ["red", "green", "blue", "left", "up it"]
        assert sum(c["probability"] for c in answer["candidates"]) == pytest.approx(1, abs=1e-5)
        assert answer["prediction"] == max(answer["candidates"], key=lambda c: c["score"])["candidate"]
    else:
        assert 1 <= int(answer["prediction"]) <= 10
        assert int(answer["prediction"]) == min(10, max(1, round(answer["count_output"])))
